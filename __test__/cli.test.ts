// `fdpass run`: the supervisor restarts an app with zero downtime on
// SIGHUP and speaks the systemd notify protocol upwards.
import { spawn } from 'node:child_process'
import * as path from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { bind, type FdSocket } from '..'
import { cleanup, root, tmpPath } from './helpers'

afterEach(cleanup)

async function next(notifications: FdSocket, key: string): Promise<Record<string, string>> {
  for (;;) {
    const m = await notifications.receive({ signal: AbortSignal.timeout(15_000) })
    const fields = Object.fromEntries(m.data.toString().split('\n').map((l) => l.split('=')))
    if (key in fields) return fields
  }
}

describe('fdpass run', () => {
  test('SIGHUP restarts the app with no failed request; READY/RELOADING/STOPPING go to $NOTIFY_SOCKET', async () => {
    const notifyPath = tmpPath()
    const notifications = await bind(notifyPath)
    const port = 22000 + (process.pid % 5000)
    const supervisor = spawn(
      process.execPath,
      [path.join(root, 'bin/fdpass.js'), 'run', '--quiet', '--control', tmpPath(), '--', process.execPath, path.join(root, 'examples/hot-restart/server.js')],
      { env: { ...process.env, PORT: String(port), QUIET: '1', NOTIFY_SOCKET: notifyPath }, stdio: ['ignore', 'ignore', 'pipe'] },
    )
    const exited = new Promise<number | null>((r) => supervisor.on('exit', r))
    const ready = await next(notifications, 'READY')
    expect(ready.MAINPID).toBe(String(supervisor.pid))
    const first = await (await fetch(`http://127.0.0.1:${port}/`)).text()

    let failed = 0
    let ok = 0
    let running = true
    const loop = (async () => {
      while (running) {
        try {
          await (await fetch(`http://127.0.0.1:${port}/`)).text()
          ok++
        } catch {
          failed++
        }
      }
    })()
    for (let i = 0; i < 2; i++) {
      supervisor.kill('SIGHUP')
      await next(notifications, 'RELOADING')
      expect((await next(notifications, 'READY')).STATUS).toMatch(/^serving \(generation \d\)$/)
    }
    running = false
    await loop
    expect(failed).toBe(0)
    expect(ok).toBeGreaterThan(0)
    const last = await (await fetch(`http://127.0.0.1:${port}/`)).text()
    expect(last).not.toBe(first)

    supervisor.kill('SIGTERM')
    await next(notifications, 'STOPPING')
    expect(await exited).toBe(0)
    notifications.close()
  })
})
