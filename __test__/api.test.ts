// Lifecycle, bad inputs, and the shape of errors.
import * as fs from 'node:fs'
import { afterEach, describe, expect, test } from 'vitest'
import { FdpassError, adopt, adoptServer, bind, connect, listen, socketpair } from '..'
import { MESSAGE_TYPE, cleanup, openFdCount, run, sleep, tmpPath } from './helpers'

afterEach(cleanup)

describe('bad inputs get clear errors and leak nothing', () => {
  test('descriptors: closed, negative, not an integer, not an fd-owning object', async () => {
    const [a, b] = socketpair()
    const before = openFdCount()
    await expect(a.send('x', [999_999])).rejects.toMatchObject({ code: 'ERR_FDPASS_INVALID_FD', fd: 999_999 })
    expect(() => a.send('x', [-1])).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }))
    expect(() => a.send('x', [1.5])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
    expect(() => a.send('x', ['3' as unknown as number])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
    expect(() => a.send('x', [{} as unknown as number])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
    expect(() => a.send(42 as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
    expect(openFdCount()).toBe(before)
    a.close()
    b.close()
  })

  test('addresses: nothing there, not a socket, wrong types', async () => {
    const before = openFdCount()
    const nothing = tmpPath()
    const err = await connect(nothing).catch((e) => e)
    expect(err).toBeInstanceOf(FdpassError)
    expect(err).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'connect', address: nothing })
    expect(err.message).toMatch(new RegExp(`^connect ENOENT ${nothing}: `))
    const file = tmpPath()
    fs.writeFileSync(file, '')
    await expect(connect(file)).rejects.toMatchObject({ code: 'ECONNREFUSED', syscall: 'connect' })
    expect(() => listen(42 as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
    expect(() => listen('')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
    expect(() => listen(tmpPath(), { type: 'dgram' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
    expect(() => socketpair({ type: 'bogus' as 'stream' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
    expect(openFdCount()).toBe(before)
  })

  test('adopt() refuses what is not a connected Unix socket', async () => {
    const fd = fs.openSync('/dev/null', 'r')
    expect(() => adopt(fd)).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_FD' }))
    fs.closeSync(fd)
    const server = await listen(tmpPath())
    expect(() => adopt(server.fd)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
    const [a, b] = socketpair()
    expect(() => adoptServer(a.fd)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
    a.close()
    b.close()
    await server.close()
  })
})

describe('FdSocket lifecycle', () => {
  test('close() is idempotent and emits close once, without error', async () => {
    const [a, b] = socketpair()
    const closes: boolean[] = []
    a.on('close', (hadError) => closes.push(hadError))
    a.close()
    a.close()
    expect(a.readyState).toBe('closed')
    expect(a.fd).toBe(-1)
    await sleep(10)
    expect(closes).toEqual([false])
    b.close()
  })

  test('a pending send rejects when the socket closes, and its duplicated fds are closed', async () => {
    const [a, b] = socketpair()
    b.pause()
    const fd = fs.openSync('/dev/null', 'r')
    const big = Buffer.alloc(1 << 20)
    const before = openFdCount()
    const sends = [a.send(big, [fd]), a.send(big, [fd]), a.send(big, [fd])]
    await sleep(10)
    expect(a.pendingSends).toBeGreaterThan(0)
    a.close()
    const results = await Promise.allSettled(sends)
    const rejected = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[]
    expect(rejected.length).toBeGreaterThan(0)
    for (const r of rejected) expect(r.reason).toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED' })
    b.close()
    await sleep(10)
    expect(openFdCount()).toBeLessThan(before)
    fs.closeSync(fd)
  })

  test('receive() after close rejects; receive({ signal }) aborts', async () => {
    const [a, b] = socketpair()
    const ac = new AbortController()
    const pending = b.receive({ signal: ac.signal })
    ac.abort()
    await expect(pending).rejects.toMatchObject({ code: 'ABORT_ERR', name: 'AbortError' })
    b.close()
    await expect(b.receive()).rejects.toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED' })
    a.close()
  })

  test("messages sent just before the peer closes are received; then 'end' and the iteration ends", async () => {
    const [a, b] = socketpair()
    const ended = new Promise((r) => b.once('end', r))
    await a.send('one')
    await a.send('two', [0])
    a.close()
    await ended
    const got: string[] = []
    for await (const m of b) {
      got.push(m.data.toString())
      for (const f of m.fds) f.close()
    }
    expect(got).toEqual(['one', 'two'])
    await expect(b.receive()).rejects.toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED' })
  })

  test("'message' events deliver in order, and sends queued behind a full buffer keep their order", async () => {
    const [a, b] = socketpair({ type: MESSAGE_TYPE })
    b.pause()
    const sends: Promise<void>[] = []
    for (let i = 0; i < 2000; i++) sends.push(a.send(`#${i}`.padEnd(200, '.')))
    await sleep(10)
    expect(a.pendingSends).toBeGreaterThan(0)
    const got: number[] = []
    const all = new Promise<void>((resolve) =>
      b.on('message', (m) => {
        got.push(Number(m.data.toString().slice(1).replace(/\.+$/, '')))
        if (got.length === 2000) resolve()
      }),
    )
    b.resume()
    await all
    await Promise.all(sends)
    expect(got).toEqual([...Array(2000).keys()])
    a.close()
    b.close()
  })

  test('ref() and unref() return this', () => {
    const [a, b] = socketpair()
    expect(a.unref()).toBe(a)
    expect(a.ref()).toBe(a)
    a.close()
    b.close()
  })

  test('Symbol.asyncDispose closes', async () => {
    const [a, b] = socketpair()
    await a[Symbol.asyncDispose]()
    expect(a.readyState).toBe('closed')
    b.close()
  })
})

describe('FdServer', () => {
  test("'connection', accept() and for-await; close() removes its socket file", async () => {
    const address = tmpPath()
    const server = await listen(address)
    expect(server.address).toBe(address)
    const c1 = await connect(address)
    const s1 = await server.accept()
    await c1.send('hi')
    expect((await s1.receive()).data.toString()).toBe('hi')
    const viaEvent = new Promise((r) => server.once('connection', r))
    const c2 = await connect(address)
    expect(await viaEvent).toBeTruthy()
    server.removeAllListeners('connection')
    const c3 = await connect(address)
    for await (const s of server) {
      s.close()
      break
    }
    for (const s of [c1, c2, c3, s1]) s.close()
    await server.close()
    expect(fs.existsSync(address)).toBe(false)
    await expect(server.accept()).rejects.toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED' })
  })

  test('peerCredentials() names the other process', async () => {
    const address = tmpPath()
    const server = await listen(address)
    const child = run('peer.js', [{ address, mode: 'echo' }])
    const socket = await server.accept()
    const ready = await child.next()
    expect(socket.peerCredentials()).toEqual({ pid: ready.pid, uid: process.getuid!(), gid: process.getgid!() })
    socket.close()
    await child.exit
    await server.close()
  })
})

describe('the event loop', () => {
  test('unref()ed sockets and servers let the process exit by itself', async () => {
    const child = run('exits-by-itself.js', ['unref', tmpPath()])
    expect(await child.next()).toEqual({ opened: true })
    expect(await child.exit).toEqual({ code: 0, signal: null })
  })

  test('closing everything lets the process exit by itself', async () => {
    const child = run('exits-by-itself.js', ['close', tmpPath()])
    expect(await child.next()).toEqual({ opened: true })
    expect(await child.exit).toEqual({ code: 0, signal: null })
  })

  test('open, referenced sockets keep the process alive', async () => {
    const child = run('exits-by-itself.js', ['keep', tmpPath()])
    expect(await child.next()).toEqual({ opened: true })
    const exited = await Promise.race([child.exit, sleep(500).then(() => 'alive')])
    expect(exited).toBe('alive')
    child.proc.kill()
    await child.exit
  })
})

describe('datagrams', () => {
  test('a connected dgram socket sends to its peer; from is the sender', async () => {
    const address = tmpPath()
    const receiver = await bind(address)
    const me = tmpPath()
    const sender = await connect(address, { type: 'dgram', bind: me })
    await sender.send('dgram!', [0])
    const m = await receiver.receive()
    expect(m).toMatchObject({ from: me })
    expect(m.data.toString()).toBe('dgram!')
    m.fds[0].close()
    const [s1, s2] = socketpair()
    expect(() => s1.sendTo(address, 'x')).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_UNSUPPORTED' }))
    for (const s of [sender, receiver, s1, s2]) s.close()
  })
})
