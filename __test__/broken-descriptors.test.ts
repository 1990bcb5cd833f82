// A socket whose descriptor was closed or taken over behind its back says
// so: 'error' when the reactor can no longer watch it (instead of waiting
// forever for readiness that cannot come), a thrown system error when its
// address is asked. Each case runs in a child process: it breaks the rule
// that one owner holds a descriptor number, which must not leak into the
// test runner.
import { spawnSync } from 'node:child_process'
import { describe, expect, test } from 'vitest'
import { root } from './helpers'

/** Run `body` in a child with fdpass as `f`; it prints one JSON line and exits. */
function runChild(reactor: 'uv' | 'thread' | undefined, body: string): Record<string, unknown> {
  const script = `
    const f = require(${JSON.stringify(root)}); const fs = require('fs'); const net = require('net')
    const report = (r) => { process.stdout.write(JSON.stringify(r) + '\\n'); process.exit(0) }
    // Without the fix the socket waits silently: say so instead of hanging.
    setTimeout(() => report({ stalled: true }), 20_000).unref()
    ${body}`
  const r = spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, FDPASS_REACTOR: reactor ?? process.env.FDPASS_REACTOR },
  })
  const line = r.stdout.trim().split('\n').pop()
  expect(line, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBeTruthy()
  return JSON.parse(line!)
}

// A 'message' listener makes the socket watch for readability: that is
// where it fails, and reports it, then closes with hadError.
const failOnRead = `
    a.on('message', (m) => report({ message: m.data.toString() }))
    a.on('error', (e) => a.once('close', (hadError) => report({ code: e.code, errno: e.errno, syscall: e.syscall, name: e.name, hadError })))`

// Each case chooses its reactor in the child: run it in that reactor's project only.
const project = process.env.FDPASS_REACTOR

/**
 * A case that runs `body` in a child on `reactor`, in that reactor's
 * project only (uv's cases: Linux only, where libuv's one watcher per
 * descriptor number makes uv_poll_start say EEXIST), and checks its report.
 */
function reactorCase(reactor: 'uv' | 'thread', title: string, body: string, check: (result: Record<string, unknown>) => void): void {
  test.skipIf(project !== reactor || (reactor === 'uv' && process.platform !== 'linux'))(title, () => check(runChild(reactor, body)), 70_000)
}

/** The thread reactor's poller refused a change for a descriptor closed behind it: `result` says so like a system error. */
function expectPollerRefused(result: Record<string, unknown>, fields: Record<string, unknown>): void {
  expect(result).toMatchObject({ ...fields, syscall: process.platform === 'linux' ? 'epoll_ctl' : 'kevent' })
  // epoll says ENOENT once the number is free of its registration, EBADF for a number not open.
  expect(['EBADF', 'ENOENT']).toContain(result.code)
  expect(typeof result.errno).toBe('number')
}

describe('a socket the reactor cannot watch emits error', () => {
  reactorCase(
    'uv',
    'uv: another libuv handle watches the same number (uv_poll_start says EEXIST)',
    `
      const [a, b] = f.socketpair()
      // Paused, a stops its uv_poll handle; then a net.Socket on the same
      // number starts reading. libuv keeps one watcher per descriptor
      // number, so fdpass's uv_poll_start is refused when a reads again.
      a.pause()
      const other = new net.Socket({ fd: a.fd, readable: true, writable: false })
      other.on('error', () => {})
      a.resume()
      ${failOnRead}`,
    (result) => expect(result).toEqual({ code: 'EEXIST', errno: -17, syscall: 'uv_poll_start', name: 'FdpassError', hadError: true }),
  )

  reactorCase(
    'thread',
    'thread: the descriptor was closed behind the socket (the poller refuses the change)',
    `
      const [a, b] = f.socketpair()
      // Paused, then closed: reading again asks the poller for interest in
      // a descriptor it no longer has.
      a.pause()
      fs.closeSync(a.fd)
      a.resume()
      ${failOnRead}`,
    (result) => expectPollerRefused(result, { name: 'FdpassError', hadError: true }),
  )
})

// The addon's listening socket, below FdServer (which turns EV_ERROR into
// 'error' and a retry): stopping and restarting accepting re-arms the watch.
const failOnAccept = (breakIt: string) => `
    const { binding } = require(${JSON.stringify(`${root}/dist/native`)}); const os = require('os'); const path = require('path')
    const file = path.join(os.tmpdir(), 'fdpass-watch-' + process.pid + '.sock')
    const server = binding.listen('stream', { path: file }, 16, {}, false, 1024)
    fs.unlinkSync(file)
    server.start((event, error) => report({ error: event === binding.EV_ERROR, code: error?.code, errno: error?.errno, syscall: error?.syscall }))
    server.setAccepting(true)
    server.setAccepting(false)
    ${breakIt}
    setImmediate(() => server.setAccepting(true))`

describe('a listening socket the reactor cannot watch reports the error to its callback', () => {
  reactorCase(
    'uv',
    'uv: a net.Server listens on the same number (uv_poll_start says EEXIST)',
    failOnAccept(`net.createServer().on('error', () => {}).listen({ fd: server.fd })`),
    (result) => expect(result).toEqual({ error: true, code: 'EEXIST', errno: -17, syscall: 'uv_poll_start' }),
  )

  reactorCase(
    'thread',
    'thread: the descriptor was closed behind the server (the poller refuses the change)',
    failOnAccept('fs.closeSync(server.fd)'),
    (result) => expectPollerRefused(result, { error: true }),
  )
})

describe('addresses', () => {
  test('of a socket whose descriptor was closed behind it: the system error is thrown, not null', () => {
    const result = runChild(
      undefined,
      `
      const [a, b] = f.socketpair()
      a.pause()
      fs.closeSync(a.fd)
      const errors = []
      for (const ask of [() => a.localAddress, () => a.remoteAddress]) {
        try { errors.push({ value: ask() }) } catch (e) { errors.push({ code: e.code, syscall: e.syscall, name: e.name }) }
      }
      report(errors)`,
    )
    expect(result).toEqual([
      { code: 'EBADF', syscall: 'getsockname', name: 'FdpassError' },
      { code: 'EBADF', syscall: 'getpeername', name: 'FdpassError' },
    ])
  })

  test('null is kept for what has no address: an unbound end, a datagram socket without a peer, a closed socket', async () => {
    const { bind, socketpair } = await import('..')
    const [a, b] = socketpair()
    expect([a.localAddress, a.remoteAddress]).toEqual([null, null])
    const d = await bind(null)
    expect(d.remoteAddress).toBeNull() // ENOTCONN: no peer
    a.close()
    b.close()
    d.close()
    expect([a.localAddress, a.remoteAddress, d.remoteAddress]).toEqual([null, null, null])
  })
})
