// The demos (npm run demo) as users run them: plain text into files and
// pipes, colour only on a terminal that did not ask for none (NO_COLOR).
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { describe, expect, test } from 'vitest'
import { root } from './helpers'

const ESC = '\x1b'
const demo = path.join(root, 'examples/demo.js')
const hotRestart = path.join(root, 'examples/hot-restart/demo.js')
const env = (extra: Record<string, string> = {}) => {
  const e: Record<string, string | undefined> = { ...process.env, ...extra }
  if (!('NO_COLOR' in extra)) delete e.NO_COLOR
  return e as NodeJS.ProcessEnv
}
// util-linux script(1) runs a command on a pseudo-terminal (its macOS namesake takes other arguments).
const hasScript = process.platform === 'linux' && spawnSync('script', ['--version']).status === 0
const onTerminal = (command: string, extra: Record<string, string> = {}) =>
  spawnSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8', env: env(extra), timeout: 60_000 })

describe('demos', () => {
  test('examples/demo.js into a pipe: no colour codes', () => {
    const r = spawnSync(process.execPath, [demo], { encoding: 'utf8', env: env(), timeout: 60_000 })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toContain('[parent] ')
    expect(r.stdout).toContain('[child] ')
    expect(r.stdout).not.toContain(ESC)
  })

  test.runIf(hasScript)(`examples/demo.js on a terminal: coloured, unless NO_COLOR is set${hasScript ? '' : ' (skipped: needs util-linux script)'}`, () => {
    const coloured = onTerminal(`"${process.execPath}" "${demo}"`)
    expect(coloured.status, coloured.stdout).toBe(0)
    expect(coloured.stdout).toContain(`${ESC}[36m[parent]${ESC}[0m`)
    expect(coloured.stdout).toContain(`${ESC}[35m[child] ${ESC}[0m`)
    const plain = onTerminal(`"${process.execPath}" "${demo}"`, { NO_COLOR: '1' })
    expect(plain.status, plain.stdout).toBe(0)
    expect(plain.stdout).toContain('[parent] ')
    expect(plain.stdout).not.toContain(ESC)
  })

  test('examples/hot-restart/demo.js into a pipe: one line per update, no terminal codes', () => {
    const r = spawnSync(process.execPath, [hotRestart], { encoding: 'utf8', env: env({ RESTARTS: '2', CLIENTS: '2' }), timeout: 60_000 })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/restarts 2\/2 /)
    expect(r.stdout).toMatch(/failed +0\n/)
    expect(r.stdout).not.toContain(ESC)
    expect(r.stdout).not.toContain('\r')
  }, 90_000)
})
