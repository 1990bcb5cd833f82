// The package as users get it, and the CI workflows that build it.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { describe, expect, test } from 'vitest'
import { root } from './helpers'

describe('packaging', () => {
  // verify-pack.sh packs this machine's linux-x64-gnu binary package.
  const glibcX64 = process.platform === 'linux' && process.arch === 'x64' && Boolean((process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime)
  test.runIf(glibcX64)(`packed tarballs install outside the repo, without Rust, and pass an fd between processes${glibcX64 ? '' : ' (skipped: packs linux-x64-gnu only)'}`, () => {
    const r = spawnSync('bash', [path.join(root, 'scripts/verify-pack.sh')], { encoding: 'utf8', timeout: 120_000 })
    expect(r.stderr.replace(/npm warn[^\n]*\n/g, '')).toBe('')
    expect(r.stdout).toContain('verify-pack: ok (passed between processes)')
    expect(r.status).toBe(0)
  }, 150_000)

  test('every platform package names its os, cpu and libc', () => {
    const dirs = fs.readdirSync(path.join(root, 'npm'))
    expect(dirs.sort()).toEqual(['darwin-arm64', 'darwin-x64', 'linux-arm64-gnu', 'linux-arm64-musl', 'linux-x64-gnu', 'linux-x64-musl'])
    for (const d of dirs) {
      const pkg = JSON.parse(fs.readFileSync(path.join(root, 'npm', d, 'package.json'), 'utf8'))
      expect(pkg.name).toBe(`fdpass-${d}`)
      expect(pkg.main).toBe(`fdpass.${d}.node`)
      expect(pkg.os).toEqual([d.startsWith('linux') ? 'linux' : 'darwin'])
      expect(pkg.cpu).toEqual([d.includes('arm64') ? 'arm64' : 'x64'])
      if (d.startsWith('linux')) expect(pkg.libc).toEqual([d.endsWith('musl') ? 'musl' : 'glibc'])
    }
  })
})

describe('workflows', () => {
  test('.github/workflows pass actionlint', () => {
    const r = spawnSync('bash', [path.join(root, 'scripts/lint-workflows.sh')], { encoding: 'utf8', timeout: 240_000 })
    expect(r.status, r.stdout + r.stderr).toBe(0)
  }, 250_000)

  test('and actionlint does fail a broken workflow', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-wf-'))
    const file = path.join(dir, 'broken.yml')
    fs.writeFileSync(file, 'on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n        run: echo both\n')
    const bin = path.join(process.env.FDPASS_TOOLS ?? path.join(os.homedir(), '.cache/fdpass/bin'), 'actionlint')
    const r = spawnSync(bin, ['-shellcheck=', file], { encoding: 'utf8' })
    expect(r.status).toBe(1)
    expect(r.stdout).toMatch(/broken\.yml/)
    fs.rmSync(dir, { recursive: true })
  })
})

describe('loader errors', () => {
  test('a missing binary names the package to install and why it may be missing', () => {
    // A copy of the package without its .node file.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-nobin-'))
    for (const f of ['index.js', 'binding.js', 'package.json']) fs.copyFileSync(path.join(root, f), path.join(dir, f))
    fs.cpSync(path.join(root, 'dist'), path.join(dir, 'dist'), { recursive: true })
    const r = spawnSync(process.execPath, ['-e', `try { require(${JSON.stringify(dir)}) } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`], {
      encoding: 'utf8',
    })
    const out = JSON.parse(r.stdout)
    expect(out.code).toBe('ERR_FDPASS_BINARY_MISSING')
    // The package for the platform this runs on, as the loader names it.
    const glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime
    const target = process.platform === 'linux' ? `linux-${process.arch}-${glibc ? 'gnu' : 'musl'}` : `${process.platform}-${process.arch}`
    expect(out.message).toContain(`npm install fdpass-${target}`)
    expect(out.message).toMatch(/npm\/cli#4828/)
    expect(out.message).toMatch(/asarUnpack/)
    fs.rmSync(dir, { recursive: true })
  })

  test('on Windows it says that SCM_RIGHTS does not exist there', () => {
    const preload = "Object.defineProperty(process, 'platform', { value: 'win32' })"
    const r = spawnSync(process.execPath, ['-e', `${preload}; try { require(${JSON.stringify(root)}) } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`], {
      encoding: 'utf8',
    })
    const out = JSON.parse(r.stdout)
    expect(out.code).toBe('ERR_FDPASS_UNSUPPORTED_PLATFORM')
    expect(out.message).toMatch(/SCM_RIGHTS/)
    expect(out.message).toMatch(/Windows/)
  })

  test('an unsupported platform lists the supported ones', () => {
    const preload = "Object.defineProperty(process, 'arch', { value: 'riscv64' })"
    const r = spawnSync(process.execPath, ['-e', `${preload}; try { require(${JSON.stringify(root)}) } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`], {
      encoding: 'utf8',
    })
    const out = JSON.parse(r.stdout)
    expect(out.code).toBe('ERR_FDPASS_UNSUPPORTED_PLATFORM')
    expect(out.message).toMatch(/linux-x64-gnu.*darwin-arm64/)
  })
})

describe('module structure', () => {
  const checker = path.join(root, 'scripts/check-import-cycles.js')

  test('the modules of ts/ import each other in no cycle', () => {
    const r = spawnSync(process.execPath, [checker], { cwd: root, encoding: 'utf8' })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
  })

  test('and the check does find a cycle, type-only imports included', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-cycle-'))
    try {
      fs.writeFileSync(path.join(dir, 'a.ts'), "import { b } from './b'\nexport const a = b\n")
      fs.writeFileSync(path.join(dir, 'b.ts'), "import type { C } from './c'\nexport const b: C = 1\n")
      fs.writeFileSync(path.join(dir, 'c.ts'), "export type C = number\nexport { a } from './a'\n")
      const r = spawnSync(process.execPath, [checker, dir], { encoding: 'utf8' })
      expect(r.status).toBe(1)
      expect(r.stderr).toMatch(/import cycle: .*a\.ts -> .*b\.ts -> .*c\.ts -> .*a\.ts/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('index.ts only re-exports', () => {
    const source = fs.readFileSync(path.join(root, 'ts/index.ts'), 'utf8')
    const statements = source
      .replace(/\/\/[^\n]*/g, '')
      .split(/\n(?=\S)/)
      .map((s) => s.trim())
      .filter((s) => s !== '')
    expect(statements.length).toBeGreaterThan(0)
    for (const s of statements) expect(s).toMatch(/^export (type )?\{[^}]*\} from '\.\/[\w-]+'$/s)
  })
})
