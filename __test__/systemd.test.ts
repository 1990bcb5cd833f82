// systemd: socket activation for real (systemd-socket-activate), and the
// notify protocol against a fake notify socket that parses as systemd does.
import { spawn, spawnSync } from 'node:child_process'
import * as net from 'node:net'
import { once } from 'node:events'
import { afterEach, describe, expect, test } from 'vitest'
import { bind, formatNotifyState, listenFds, notify, notifySocketAddress, runtime } from '..'
import { cleanup, fixture, sleep, tmpPath } from './helpers'

afterEach(cleanup)

// systemd-socket-activate (Debian's systemd package) starts a process with
// LISTEN_FDS set for real. Where it is missing (Alpine, macOS) those tests
// are skipped and say why.
const activator = spawnSync('systemd-socket-activate', ['--help']).status === 0
const needsActivator = activator ? '' : ' (skipped: systemd-socket-activate is not installed)'

describe('notify', () => {
  test('READY=1 and STATUS= arrive as one datagram of KEY=VALUE lines', async () => {
    const path = tmpPath()
    const fake = await bind(path)
    const env = { NOTIFY_SOCKET: path }
    expect(await notify({ READY: 1, STATUS: 'serving 3 listeners' }, [], env)).toBe(true)
    const m = await fake.receive()
    expect(m.data.toString()).toBe('READY=1\nSTATUS=serving 3 listeners')
    fake.close()
  })

  test.runIf(runtime.supportsAbstract)('FDSTORE=1 with FDNAME= carries the descriptors; abstract @ addresses work', async () => {
    const name = `fdpass-notify-${process.pid}`
    const fake = await bind({ abstract: name })
    const server = net.createServer().listen(0, '127.0.0.1')
    await once(server, 'listening')
    expect(await notify({ FDSTORE: 1, FDNAME: 'http' }, [server], { NOTIFY_SOCKET: `@${name}` })).toBe(true)
    const m = await fake.receive()
    expect(m.data.toString()).toBe('FDSTORE=1\nFDNAME=http')
    expect(m.fds).toHaveLength(1)
    expect(m.fds[0].kind()).toBe('socket')
    m.fds[0].close()
    server.close()
    fake.close()
  })

  test('without NOTIFY_SOCKET it does nothing and says so; bad states are refused', async () => {
    expect(await notify({ READY: 1 }, [], {})).toBe(false)
    expect(notifySocketAddress({ NOTIFY_SOCKET: '@x' })).toEqual({ abstract: 'x' })
    expect(() => formatNotifyState({ STATUS: 'two\nlines' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
    expect(formatNotifyState({ FDSTOREREMOVE: true, FDNAME: 'http' })).toBe('FDSTOREREMOVE=1\nFDNAME=http')
  })
})

describe('socket activation', () => {
  test('listenFds() reads LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES only for this pid, and unsets them', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_FDS: '1', LISTEN_PID: String(process.pid + 1), LISTEN_FDNAMES: 'x' }
    expect(listenFds({ env })).toEqual([])
    expect(env.LISTEN_FDS).toBeUndefined()
    const keep: NodeJS.ProcessEnv = { LISTEN_FDS: '0', LISTEN_PID: String(process.pid) }
    expect(listenFds({ env: keep, unsetEnvironment: false })).toEqual([])
    expect(keep.LISTEN_FDS).toBe('0')
  })

  test.runIf(activator)(`for real: systemd-socket-activate starts a process whose listenFds() serves HTTP${needsActivator}`, async () => {
    const port = 21000 + (process.pid % 5000)
    const proc = spawn('systemd-socket-activate', ['-l', `127.0.0.1:${port}`, '--fdname=http', '-E', 'PATH', process.execPath, fixture('activated.js')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    proc.stderr.on('data', (d) => (stderr += d))
    while (!stderr.includes('Listening on')) await sleep(20)
    const res = await fetch(`http://127.0.0.1:${port}/`)
    const body = (await res.json()) as { fds: unknown; sockets: unknown; env: unknown }
    expect(body.fds).toEqual([{ fd: 3, name: 'http' }])
    expect(body.sockets).toEqual([true]) // a socket, made close-on-exec
    expect(body.env).toEqual([null, null, null]) // unset after reading
    proc.kill()
  })
})

describe('socket activation and handoff', () => {
  test.runIf(activator)(`a { systemd: name } handoff listener serves on the activated socket${needsActivator}`, async () => {
    const port = 23000 + (process.pid % 5000)
    const proc = spawn(
      'systemd-socket-activate',
      ['-l', `127.0.0.1:${port}`, '--fdname=http', '-E', 'PATH', process.execPath, fixture('activated-handoff.js'), tmpPath()],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    )
    let stderr = ''
    proc.stderr.on('data', (d) => (stderr += d))
    while (!stderr.includes('Listening on')) await sleep(20)
    const res = await fetch(`http://127.0.0.1:${port}/`)
    expect(await res.text()).toMatch(/^handoff over the activated socket, fd \d+$/)
    proc.kill()
  })
})
