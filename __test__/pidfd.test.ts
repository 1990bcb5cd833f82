// takeFd(): pidfd_getfd from another process, and its refusal.
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { runtime, takeFd } from '..'
import { cleanup, identity, root, tmpPath, wrap } from './helpers'

afterEach(cleanup)

describe.runIf(runtime.supportsPidfd)('takeFd (pidfd_getfd)', () => {
  test('takes a descriptor that another process has open', async () => {
    const file = tmpPath('file')
    fs.writeFileSync(file, 'owned by the child')
    const child = wrap(
      spawn(
        process.execPath,
        ['-e', `const fd = require('fs').openSync(${JSON.stringify(file)}, 'r'); console.log(JSON.stringify({ fd })); setInterval(() => {}, 1000)`],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      ),
    )
    const { fd } = await child.next()
    const taken = takeFd(child.proc.pid!, fd)
    expect(identity(taken.fd)).toEqual(identity(fs.openSync(file, 'r')))
    expect(taken.stat().cloexec).toBe(true)
    expect(() => takeFd(child.proc.pid!, 999_999)).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_FD' }))
    taken.close()
    child.proc.kill()
  })

  // The taker runs as uid 65534, so it needs root here, a Node binary that
  // other users can reach (not one under root's 0700 home, as Node 22/24
  // from scripts/node-versions.sh are) and a checkout they can reach (not
  // one in a 0700 directory such as mktemp -d makes).
  /** Whether others may search every directory above `target` and have `bit` (0o1 run, 0o4 read) on it. */
  const othersCan = (target: string, bit: number) => {
    for (let p = path.dirname(target); p !== path.dirname(p); p = path.dirname(p)) {
      if ((fs.statSync(p).mode & 0o001) === 0) return false
    }
    return (fs.statSync(target).mode & bit) !== 0
  }
  const othersCanRun = othersCan(process.execPath, 0o001) && othersCan(path.join(root, 'package.json'), 0o004)
  test.runIf(process.getuid?.() === 0 && othersCanRun)(
    `another uid is refused with EPERM that says why${othersCanRun ? '' : ' (not run: other users cannot reach this Node binary or this checkout)'}`,
    () => {
      const script = `try { require(${JSON.stringify(root)}).takeFd(${process.pid}, 0) } catch (e) { console.log(JSON.stringify({ code: e.code, syscall: e.syscall, message: e.message })) }`
      const r = spawnSync(process.execPath, ['-e', script], { uid: 65534, gid: 65534, encoding: 'utf8' })
      const out = JSON.parse(r.stdout)
      expect(out).toMatchObject({ code: 'EPERM', syscall: 'pidfd_getfd' })
      expect(out.message).toMatch(/ptrace/)
    },
  )
})
