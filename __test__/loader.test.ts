// The loader picks the binary for the libc of the running process, not the host's.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { describe, expect, test } from 'vitest'
import { libcOfMaps, processLibc } from '../ts/native'
import { linuxOnly, root } from './helpers'

// Lines of /proc/<pid>/maps as each kind of process shows them.
const GLIBC_NODE = `
55d0c0a00000-55d0c0e00000 r--p 00000000 08:01 1234 /usr/bin/node
7f0000000000-7f0000028000 r--p 00000000 08:01 2345 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000100000-7f0000102000 r--p 00000000 08:01 3456 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]`
const ALPINE_NODE = `
5600000000-5600400000 r--p 00000000 00:2f 11 /usr/local/bin/node
7f1000000000-7f1000010000 r--p 00000000 00:2f 12 /usr/lib/libstdc++.so.6.0.33
7f1000200000-7f1000214000 r--p 00000000 00:2f 13 /lib/ld-musl-x86_64.so.1`
// Bun's musl build started by Debian's musl loader on a glibc host: /usr/bin/ldd there says glibc.
const DEBIAN_MUSL_BUN = `
7f2000000000-7f2000010000 r--p 00000000 08:01 21 /root/.cache/fdpass/musl-x64/node_modules/@oven/bun-linux-x64-musl/bin/bun
7f2000200000-7f2000214000 r--p 00000000 08:01 22 /root/.cache/fdpass/musl-x64/root/usr/lib/x86_64-linux-musl/libc.so
7f2000300000-7f2000310000 r--p 00000000 08:01 23 /root/.cache/fdpass/musl-x64/lib/libstdc++.so.6`
const OLD_GLIBC = `7f3000000000-7f3000010000 r-xp 00000000 08:01 31 /lib/x86_64-linux-gnu/libc-2.31.so`
/** Whether this process runs on glibc, as Node's own report says (excludeNetwork: no DNS lookups). */
function reportSaysGlibc(): boolean {
  if (!process.report) return false
  ;(process.report as { excludeNetwork?: boolean }).excludeNetwork = true
  return Boolean((process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime)
}

const STATIC = `00400000-00500000 r-xp 00000000 08:01 41 /usr/local/bin/static-thing
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]`

describe('which libc the process runs on', () => {
  test('is read from the libc mapped into it', () => {
    expect(libcOfMaps(GLIBC_NODE)).toBe('gnu')
    expect(libcOfMaps(OLD_GLIBC)).toBe('gnu')
    expect(libcOfMaps(ALPINE_NODE)).toBe('musl')
    expect(libcOfMaps(DEBIAN_MUSL_BUN)).toBe('musl')
    expect(libcOfMaps(STATIC)).toBe(null)
  })

  test('without /proc it comes from the process report, which has a glibc version only in a glibc process', () => {
    const noProc = () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' })
    }
    const glibc = reportSaysGlibc()
    expect(processLibc(noProc)).toBe(process.platform !== 'linux' ? null : glibc ? 'gnu' : 'musl')
  })

  test.runIf(process.platform === 'linux')(`this process's own maps name the libc it runs on${linuxOnly}`, () => {
    const glibc = reportSaysGlibc()
    expect(processLibc()).toBe(glibc ? 'gnu' : 'musl')
  })
})

describe('the binary loaded', () => {
  // A glibc process on a host whose /usr/bin/ldd says musl (glibc Node on
  // Alpine through gcompat): napi-rs's loader would pick the musl binary.
  const glibc = process.platform === 'linux' && reportSaysGlibc()
  test.runIf(glibc)(`a glibc process loads the gnu binary even where the host looks musl${glibc ? '' : ' (skipped: needs a glibc Linux process)'}`, () => {
    const target = `linux-${process.arch}`
    const gnu = path.join(root, `fdpass.${target}-gnu.node`)
    expect(fs.existsSync(gnu), `${gnu}: run npm run build first`).toBe(true)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-libc-'))
    for (const f of ['index.js', 'binding.js', 'package.json']) fs.copyFileSync(path.join(root, f), path.join(dir, f))
    fs.cpSync(path.join(root, 'dist'), path.join(dir, 'dist'), { recursive: true })
    fs.copyFileSync(gnu, path.join(dir, path.basename(gnu)))
    // The musl binary beside it too, when scripts/musl-build.sh has built it: it must stay unloaded.
    const musl = path.join(root, `fdpass.${target}-musl.node`)
    if (fs.existsSync(musl)) fs.copyFileSync(musl, path.join(dir, path.basename(musl)))
    const preload = path.join(dir, 'musl-host.cjs')
    fs.writeFileSync(
      preload,
      `const fs = require('fs'), cp = require('child_process')
const readFileSync = fs.readFileSync
fs.readFileSync = function (file, ...rest) {
  return file === '/usr/bin/ldd' ? 'musl libc (x86_64)\\nVersion 1.2.5\\n' : readFileSync.call(this, file, ...rest)
}
const execSync = cp.execSync
cp.execSync = function (cmd, ...rest) { return /^ldd/.test(cmd) ? 'musl libc (x86_64)\\n' : execSync.call(this, cmd, ...rest) }
`,
    )
    const script = `const { socketpair } = require(${JSON.stringify(dir)})
const fs = require('fs')
const [a, b] = socketpair()
const file = fs.openSync(${JSON.stringify(path.join(dir, 'package.json'))}, 'r')
a.sendSync('x', [file])
const m = b.receiveSync()
const addons = fs.readFileSync('/proc/self/maps', 'latin1').split('\\n').filter((l) => l.endsWith('.node')).map((l) => l.slice(l.lastIndexOf('/') + 1))
console.log(JSON.stringify({ addons: [...new Set(addons)], fds: m.fds.length }))
for (const f of m.fds) f.close()
fs.closeSync(file)
a.close()
b.close()`
    const env = { ...process.env }
    delete env.NAPI_RS_NATIVE_LIBRARY_PATH
    const r = spawnSync(process.execPath, ['-r', preload, '-e', script], { encoding: 'utf8', env, timeout: 60_000 })
    fs.rmSync(dir, { recursive: true })
    expect(r.stderr).toBe('')
    expect(JSON.parse(r.stdout)).toEqual({ addons: [`fdpass.${target}-gnu.node`], fds: 1 })
  })
})
