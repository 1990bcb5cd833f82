// Lifecycle, bad inputs, and the shape of errors.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import { afterEach, describe, expect, test } from 'vitest'
import { FdpassError, adopt, adoptServer, bind, connect, listen, runtime, socketpair } from '..'
import { takeover } from '../handoff'
import { MESSAGE_TYPE, cleanup, closeAll, expectDelivered, openFdCount, openFdsTo, run, sleep, tempFile, tmpPath, waitFor } from './helpers'

afterEach(cleanup)

/** A descriptor number that was open a moment ago and is closed now. */
function closedFd(): number {
  const fd = fs.openSync('/dev/null', 'r')
  fs.closeSync(fd)
  return fd
}

describe('bad inputs get clear errors and leak nothing', () => {
  describe('descriptors', () => {
    test('a closed fd rejects with ERR_FDPASS_INVALID_FD naming it, and nothing is sent', async () => {
      const [a, b] = socketpair({ type: MESSAGE_TYPE })
      const before = openFdCount()
      const fd = closedFd()
      const err = await a.send('x', [fd]).catch((e) => e)
      expect(err).toBeInstanceOf(FdpassError)
      expect(err).toMatchObject({ code: 'ERR_FDPASS_INVALID_FD', fd })
      expect(err.message).toContain(`fd ${fd}`)
      // A good fd before a closed one: the whole message is refused.
      await expect(a.send('mixed', [0, fd])).rejects.toMatchObject({ code: 'ERR_FDPASS_INVALID_FD', fd })
      await expect(a.send('x', [999_999])).rejects.toMatchObject({ code: 'ERR_FDPASS_INVALID_FD', fd: 999_999 })
      // The socket is still usable, and none of the refused messages went out.
      await a.send('good', [0])
      const m = await b.receive()
      expect(m.data.toString()).toBe('good')
      m.fds[0].close()
      expect(openFdCount()).toBe(before)
      a.close()
      b.close()
    })

    test('-1 is ERR_OUT_OF_RANGE; 1.5, "3" and other things are ERR_INVALID_ARG_TYPE; all thrown synchronously', async () => {
      const address = tmpPath()
      const [a, b] = socketpair()
      const d = await bind(address)
      const before = openFdCount()
      for (const send of [(fds: unknown[]) => a.send('x', fds as number[]), (fds: unknown[]) => d.sendTo(address, 'x', fds as number[])]) {
        expect(() => send([-1])).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }))
        expect(() => send([1.5])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
        expect(() => send(['3'])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
        expect(() => send([{}])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
        expect(() => send([null])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
        expect(() => send([2 ** 31])).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }))
        expect(() => send(3 as unknown as unknown[])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
      }
      expect(() => a.send(42 as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
      expect(() => a.send('x', [-1])).toThrow(/fds\[0\]/)
      expect(() => adopt(-1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }))
      expect(() => adopt('3' as unknown as number)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
      expect(() => adopt(closedFd())).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_FD' }))
      expect(openFdCount()).toBe(before)
      for (const s of [a, b, d]) s.close()
    })

    test('adopt() refuses what is not a connected Unix socket', async () => {
      const fd = fs.openSync('/dev/null', 'r')
      expect(() => adopt(fd)).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_FD', fd }))
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

  describe('addresses', () => {
    test('connect to nothing: ENOENT with errno, syscall, address and a hint', async () => {
      const before = openFdCount()
      const nothing = tmpPath()
      const err = await connect(nothing).catch((e) => e)
      expect(err).toBeInstanceOf(FdpassError)
      expect(err).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'connect', address: nothing })
      expect(err.message).toMatch(new RegExp(`^connect ENOENT ${nothing}: `))
      await expect(connect(nothing, { type: 'seqpacket' })).rejects.toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'connect', address: nothing })
      expect(openFdCount()).toBe(before)
    })

    test('a socket path in a directory that does not exist: ENOENT that says so and what to do (listen, bind, takeover)', async () => {
      const dir = `${tmpPath('nodir')}.d`
      const expectMissingDirectory = (err: FdpassError, syscall: string, address: string) => {
        expect(err).toMatchObject({ code: 'ENOENT', errno: -2, syscall, address })
        expect(err.message).toMatch(new RegExp(`^${syscall} ENOENT ${address}: .*directory does not exist: create it first \\(mkdir -p`))
      }
      expectMissingDirectory(await listen(`${dir}/a.sock`).catch((e) => e), 'stat', dir)
      expectMissingDirectory(await listen(`${dir}/a.sock`, { checkDirectory: false }).catch((e) => e), 'bind', `${dir}/a.sock`)
      expectMissingDirectory(await bind(`${dir}/b.sock`).catch((e) => e), 'stat', dir)
      expectMissingDirectory(await takeover({ control: `${dir}/control.sock`, listeners: {}, log: false }).catch((e) => e), 'stat', dir)
      expect(fs.existsSync(dir)).toBe(false)
    })

    test('connect to a stale socket file (nobody listening): ECONNREFUSED', async () => {
      const stale = tmpPath()
      const server = await listen(stale, { type: 'seqpacket' })
      // Make it stale: close the listening descriptor but keep the file.
      fs.linkSync(stale, `${stale}.kept`)
      await server.close()
      fs.renameSync(`${stale}.kept`, stale)
      const before = openFdCount()
      await expect(connect(stale, { type: 'seqpacket' })).rejects.toMatchObject({ code: 'ECONNREFUSED', errno: -111, syscall: 'connect', address: stale })
      expect(openFdCount()).toBe(before)
    })

    test('a path that is not a socket: listen() is ERR_FDPASS_NOT_A_SOCKET, connect() is ECONNREFUSED; the file is untouched', async () => {
      const file = tmpPath()
      fs.writeFileSync(file, 'keep me')
      const before = openFdCount()
      await expect(listen(file)).rejects.toMatchObject({ code: 'ERR_FDPASS_NOT_A_SOCKET', address: file })
      await expect(connect(file)).rejects.toMatchObject({ code: 'ECONNREFUSED', errno: -111, syscall: 'connect', address: file })
      expect(fs.readFileSync(file, 'utf8')).toBe('keep me')
      expect(openFdCount()).toBe(before)
    })

    test('too long for sun_path: ERR_FDPASS_ADDRESS_TOO_LONG from listen, connect and bind, with length and limit', async () => {
      const long = `/tmp/${'x'.repeat(runtime.maxPathLength)}`
      const before = openFdCount()
      const shape = { code: 'ERR_FDPASS_ADDRESS_TOO_LONG', limit: runtime.maxPathLength, length: long.length }
      await expect(listen(long)).rejects.toMatchObject(shape)
      await expect(connect(long)).rejects.toMatchObject(shape)
      await expect(bind(long)).rejects.toMatchObject(shape)
      expect(openFdCount()).toBe(before)
      expect(fs.existsSync(long)).toBe(false)
    })

    test.runIf(runtime.supportsAbstract)('abstract names: EADDRINUSE and ECONNREFUSED name the address as @name', async () => {
      const name = `fdpass-api-abs-${process.pid}-${Date.now()}`
      const server = await listen({ abstract: name })
      await expect(listen({ abstract: name })).rejects.toMatchObject({ code: 'EADDRINUSE', errno: -98, syscall: 'bind', address: `@${name}` })
      await expect(connect({ abstract: `${name}-nobody` })).rejects.toMatchObject({
        code: 'ECONNREFUSED',
        errno: -111,
        syscall: 'connect',
        address: `@${name}-nobody`,
      })
      await server.close()
      // Closing frees an abstract name at once: nothing is left behind.
      const again = await listen({ abstract: name })
      await again.close()
    })

    test('a socket type that does not match the peer: EPROTOTYPE', async () => {
      const address = tmpPath()
      const server = await listen(address)
      await expect(connect(address, { type: 'seqpacket' })).rejects.toMatchObject({ code: 'EPROTOTYPE', errno: -91, syscall: 'connect', address })
      await server.close()
    })

    test('wrong types and values are thrown synchronously', () => {
      const before = openFdCount()
      expect(() => listen(42 as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
      expect(() => listen('')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
      expect(() => connect('a\0b')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
      expect(() => listen(tmpPath(), { type: 'dgram' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
      expect(() => listen(tmpPath(), { mode: 0o1777 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }))
      expect(() => socketpair({ type: 'bogus' as 'stream' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
      expect(() => socketpair({ highWaterMark: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }))
      expect(() => connect(tmpPath(), { bind: tmpPath() })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
      expect(openFdCount()).toBe(before)
    })

    test("a server's backlog that stays full: connect() gives up with ETIMEDOUT after `timeout`", async () => {
      const address = tmpPath()
      // Nobody takes connections: the server queues 128, then the kernel's backlog fills.
      const server = await listen(address, { backlog: 1 })
      const clients = []
      let err: FdpassError | undefined
      for (let i = 0; i < 300 && !err; i++) {
        try {
          clients.push(await connect(address, { timeout: 50 }))
        } catch (e) {
          err = e as FdpassError
        }
      }
      expect(clients.length).toBeGreaterThanOrEqual(128)
      expect(err).toMatchObject({ code: 'ETIMEDOUT', errno: -110, syscall: 'connect', address })
      for (const c of clients) c.close()
      // Taking the queued connections frees the backlog again.
      for (let i = 0; i < clients.length; i++) (await server.accept()).close()
      const late = await connect(address, { timeout: 5000 })
      late.close()
      await server.close()
    })
  })
})

describe('connect({ wait })', () => {
  test('waits for a server that starts later, and connects to it', async () => {
    const address = tmpPath()
    const connecting = connect(address, { wait: true, timeout: 15_000 })
    let settled = false
    connecting.then(
      () => (settled = true),
      () => (settled = true),
    )
    await sleep(300)
    expect(settled).toBe(false) // still waiting: no file at the path yet
    const server = await listen(address)
    const client = await connecting
    const accepted = await server.accept()
    await expectDelivered(client, accepted, 'hello')
    await closeAll(server, client, accepted)
  })

  test('waits past a stale socket file (ECONNREFUSED) until a server replaces it', async () => {
    const address = tmpPath()
    const first = await listen(address)
    fs.linkSync(address, `${address}.kept`)
    await first.close()
    fs.renameSync(`${address}.kept`, address)
    const connecting = connect(address, { wait: true, timeout: 15_000 })
    await sleep(200)
    const server = await listen(address) // replaces the stale file
    const client = await connecting
    const accepted = await server.accept()
    expect(client.readyState).toBe('open')
    client.close()
    accepted.close()
    await server.close()
  })

  test('gives up after timeout with ETIMEDOUT, the last error as cause, and nothing left open', async () => {
    const address = tmpPath()
    const before = openFdCount()
    const started = Date.now()
    const err = await connect(address, { wait: true, timeout: 300 }).catch((e) => e)
    expect(Date.now() - started).toBeGreaterThanOrEqual(250)
    expect(err).toBeInstanceOf(FdpassError)
    expect(err).toMatchObject({ code: 'ETIMEDOUT', syscall: 'connect', address })
    expect(err.cause).toMatchObject({ code: 'ENOENT', address })
    expect(err.message).toMatch(new RegExp(`^connect ETIMEDOUT ${address}: no server listened there within 300 ms \\(last attempt: ENOENT\\)`))
    expect(openFdCount()).toBe(before)
  })

  test('without wait, a missing server is ENOENT at once; other errors are not waited on', async () => {
    const address = tmpPath()
    await expect(connect(address)).rejects.toMatchObject({ code: 'ENOENT' })
    const file = tempFile('not a socket').path
    // A path that is not a socket is ECONNREFUSED, waited on; a path through a file is ENOTDIR, not waited on.
    await expect(connect(`${file}/x`, { wait: true, timeout: 10_000 })).rejects.toMatchObject({ code: 'ENOTDIR' })
    expect(() => connect(address, { type: 'dgram', wait: true })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
    expect(() => connect(address, { wait: 1 as unknown as boolean })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
  })
})

describe('what a send carries', () => {
  // Short strings and descriptor lists travel in arrays lent to the addon
  // once; anything else in arrays of its own. Each message must still be
  // exactly what its send was given, whichever way each part went.
  test('data and descriptors arrive intact through the shared arrays and through arrays of their own', async () => {
    const [a, b] = socketpair({ type: MESSAGE_TYPE })
    const [c, d] = socketpair({ type: MESSAGE_TYPE })
    const one = tempFile('one')
    const two = tempFile('two')
    const ino = (fd: number) => fs.fstatSync(fd).ino
    // An fd-like object whose getter sends too: the outer send's
    // descriptors then go in an array of their own.
    const sendsFromGetter = {
      get fd() {
        c.sendSync('from the getter', [one.fd])
        return one.fd
      },
    }
    const long = 'λ'.repeat(5000) // past the shared string buffer
    await a.send('short', [one.fd, two.fd])
    await a.send(Buffer.from('a buffer'), [two.fd])
    await a.send(long, [one.fd])
    await a.send('outer', [two.fd, sendsFromGetter])
    const expected = [
      ['short', [one.fd, two.fd]],
      ['a buffer', [two.fd]],
      [long, [one.fd]],
      ['outer', [two.fd, one.fd]],
    ] as const
    for (const [data, fds] of expected) {
      const m = await b.receive()
      expect(m.data.toString()).toBe(data)
      expect(m.fds.map((f) => f.fileStat().ino)).toEqual(fds.map(ino))
      for (const f of m.fds) f.close()
    }
    const inner = d.receiveSync({ timeout: 1000 })
    expect(inner.data.toString()).toBe('from the getter')
    expect(inner.fds.map((f) => f.fileStat().ino)).toEqual([ino(one.fd)])
    for (const f of inner.fds) f.close()
    for (const s of [a, b, c, d]) s.close()
    fs.closeSync(one.fd)
    fs.closeSync(two.fd)
  })
})

describe('FdSocket lifecycle', () => {
  test("close() is idempotent and emits 'close' once, without error", async () => {
    const [a, b] = socketpair()
    const closes: boolean[] = []
    a.on('close', (hadError) => closes.push(hadError))
    a.close()
    a.close()
    expect(a.readyState).toBe('closed')
    expect(a.fd).toBe(-1)
    await sleep(10)
    a.close()
    await sleep(10)
    expect(closes).toEqual([false])
    b.close()
  })

  test("a fatal error: 'error' then 'close' once with hadError true (a framed peer that breaks the framing)", async () => {
    const address = tmpPath()
    const server = await listen(address)
    const raw = await connect(address, { raw: true })
    const socket = await server.accept()
    const events: string[] = []
    const closed = waitFor<[boolean]>(socket, 'close')
    socket.on('error', (e: FdpassError) => events.push(`error ${e.code}`))
    socket.on('close', (hadError: boolean) => events.push(`close ${hadError}`))
    await raw.send('this is not an fdpass frame header at all')
    expect(await closed).toEqual([true])
    await sleep(10)
    expect(events).toEqual(['error ERR_FDPASS_PROTOCOL', 'close true'])
    expect(socket.readyState).toBe('closed')
    raw.close()
    await server.close()
  })

  test("a fatal error on a socket read only through 'message' is thrown (no 'error' listener), as Node's sockets do", () => {
    // In a child: the uncaught error ends it, and its stderr shows the error.
    const script = `
      const { connect, listen } = require(${JSON.stringify(require.resolve('..'))})
      const address = ${JSON.stringify(tmpPath())}
      ;(async () => {
        const server = await listen(address)
        const raw = await connect(address, { raw: true })
        const socket = await server.accept()
        socket.on('message', () => {})
        socket.on('close', (hadError) => process.stdout.write('close ' + hadError + '\\n'))
        await raw.send('this is not an fdpass frame header at all')
        setTimeout(() => process.stdout.write('still running\\n'), 5000).unref()
        setInterval(() => {}, 1000)
      })()
    `
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 15_000 })
    expect(r.stdout).not.toContain('still running')
    expect(r.stderr).toContain("code: 'ERR_FDPASS_PROTOCOL'")
    expect(r.stderr).toContain('FdpassError')
    expect(r.status).toBe(1)
  })

  test('a fatal error with no listener goes to the next receive()', async () => {
    const address = tmpPath()
    const server = await listen(address, { maxMessageSize: 1024 })
    const client = await connect(address)
    const socket = await server.accept()
    await client.send(Buffer.alloc(2048))
    await expect(socket.receive()).rejects.toMatchObject({ code: 'ERR_FDPASS_MESSAGE_TOO_LARGE', size: 2048, limit: 1024 })
    await expect(socket.receive()).rejects.toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED' })
    client.close()
    await server.close()
  })

  test('a pending send rejects ERR_FDPASS_SOCKET_CLOSED when the socket closes, and its duplicated fds are closed', async () => {
    const [a, b] = socketpair()
    b.pause()
    const fd = fs.openSync('/dev/null', 'r')
    const big = Buffer.alloc(1 << 20)
    const before = openFdCount()
    const sends = [a.send(big, [fd]), a.send(big, [fd, fd]), a.send(big, [fd, fd, fd])]
    expect(a.pendingSends).toBeGreaterThan(0)
    expect(openFdCount()).toBeGreaterThan(before) // duplicates held for the queued sends
    a.close()
    const results = await Promise.allSettled(sends)
    const rejected = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[]
    expect(rejected.length).toBeGreaterThanOrEqual(2)
    for (const r of rejected) expect(r.reason).toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED' })
    expect(a.pendingSends).toBe(0)
    expect(openFdCount()).toBe(before - 1) // a itself; every duplicate is gone
    b.close()
    expect(openFdCount()).toBe(before - 2)
    fs.closeSync(fd)
  })

  test('a receive() or accept() waiting when its socket or server closes rejects with ERR_FDPASS_SOCKET_CLOSED; iteration just ends', async () => {
    const [a, b] = socketpair()
    const waiting = b.receive()
    const iterated: string[] = []
    const iteration = (async () => {
      for await (const m of a) iterated.push(m.data.toString())
    })()
    await b.send('one')
    await new Promise((r) => setTimeout(r, 20))
    a.close() // b sees the end; a's own iteration ends
    await expect(waiting).rejects.toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED', message: expect.stringContaining('receive') })
    await iteration
    expect(iterated).toEqual(['one'])
    b.close()
    const server = await listen(tmpPath())
    const accepting = server.accept()
    await server.close()
    await expect(accepting).rejects.toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED', message: expect.stringContaining('accept') })
  })

  test('send() and receive() after close reject with ERR_FDPASS_SOCKET_CLOSED', async () => {
    const [a, b] = socketpair()
    a.close()
    await expect(a.send('late')).rejects.toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED' })
    await expect(a.receive()).rejects.toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED' })
    expect(() => a.peerCredentials()).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_SOCKET_CLOSED' }))
    b.close()
  })

  test('receive({ signal }) rejects with ABORT_ERR, before and while waiting; the next message still arrives', async () => {
    const [a, b] = socketpair()
    const ac = new AbortController()
    const pending = b.receive({ signal: ac.signal })
    ac.abort()
    await expect(pending).rejects.toMatchObject({ code: 'ABORT_ERR', name: 'AbortError' })
    await expect(b.receive({ signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORT_ERR' })
    expect(() => b.receive({ signal: 'no' as unknown as AbortSignal })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
    await a.send('after the aborts')
    expect((await b.receive()).data.toString()).toBe('after the aborts')
    b.close()
    await expect(b.receive()).rejects.toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED' })
    a.close()
  })

  test("messages sent just before the peer closes are received; then 'end', and the iteration ends", async () => {
    for (const type of ['stream', MESSAGE_TYPE] as const) {
      const [a, b] = socketpair({ type })
      const ended = waitFor(b, 'end')
      const closed = waitFor<[boolean]>(b, 'close')
      await a.send('one')
      await a.send('two', [0])
      a.close()
      await ended
      expect(await closed).toEqual([false])
      const got: string[] = []
      for await (const m of b) {
        got.push(`${m.data}:${m.fds.length}`)
        for (const f of m.fds) f.close()
      }
      expect(got).toEqual(['one:0', 'two:1'])
      await expect(b.receive()).rejects.toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED' })
    }
  })

  test('for await ends when a peer process exits', async () => {
    const address = tmpPath()
    const server = await listen(address)
    const child = run('peer.js', [{ address, mode: 'echo', count: 3 }])
    const socket = await server.accept()
    await child.next()
    for (let i = 0; i < 3; i++) await socket.send(`m${i}`)
    const got: string[] = []
    for await (const m of socket) got.push(m.data.toString())
    expect(got).toEqual(['m0', 'm1', 'm2'])
    expect((await child.exit).code).toBe(0)
    await server.close()
  })

  test('concurrent receive() calls are answered in order; one still waiting when the socket closes rejects', async () => {
    const [a, b] = socketpair()
    const waiting = [b.receive(), b.receive(), b.receive()]
    for (const text of ['1', '2', '3']) await a.send(text)
    expect((await Promise.all(waiting)).map((m) => m.data.toString())).toEqual(['1', '2', '3'])
    const last = b.receive()
    b.close()
    await expect(last).rejects.toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED' })
    a.close()
  })

  test('breaking out of for await does not close the socket', async () => {
    const [a, b] = socketpair()
    await a.send('first')
    await a.send('second')
    for await (const m of b) {
      expect(m.data.toString()).toBe('first')
      break
    }
    expect(b.readyState).toBe('open')
    expect((await b.receive()).data.toString()).toBe('second')
    a.close()
    b.close()
  })

  test('end() waits for queued sends, then closes', async () => {
    const [a, b] = socketpair()
    b.pause()
    const sends = Array.from({ length: 4 }, (_, i) => a.send(Buffer.alloc(512 << 10, i)))
    expect(a.pendingSends).toBeGreaterThan(0)
    const ending = a.end()
    b.resume()
    await ending
    await Promise.all(sends)
    expect(a.readyState).toBe('closed')
    const sizes: number[] = []
    for await (const m of b) sizes.push(m.data.length)
    expect(sizes).toEqual([512 << 10, 512 << 10, 512 << 10, 512 << 10])
  })

  test('ref() and unref() return this, on sockets and servers', async () => {
    const [a, b] = socketpair()
    expect(a.unref()).toBe(a)
    expect(a.ref()).toBe(a)
    expect(a.pause()).toBe(a)
    expect(a.resume()).toBe(a)
    const server = await listen(tmpPath())
    expect(server.unref()).toBe(server)
    expect(server.ref()).toBe(server)
    a.close()
    b.close()
    await server.close()
  })

  test('Symbol.asyncDispose closes sockets and servers', async () => {
    const [a, b] = socketpair()
    await a[Symbol.asyncDispose]()
    expect(a.readyState).toBe('closed')
    b.close()
    const address = tmpPath()
    const server = await listen(address)
    await server[Symbol.asyncDispose]()
    expect(server.listening).toBe(false)
    expect(fs.existsSync(address)).toBe(false)
  })
})

describe('FdServer', () => {
  test("'connection', accept() and for await; address; close() removes its socket file and emits 'close' once", async () => {
    const address = tmpPath()
    const server = await listen(address)
    expect(server).toMatchObject({ address, type: 'stream', listening: true })
    expect(server.fd).toBeGreaterThan(2)
    const c1 = await connect(address)
    const s1 = await server.accept()
    await c1.send('hi')
    expect((await s1.receive()).data.toString()).toBe('hi')
    const viaEvent = waitFor<[unknown]>(server, 'connection')
    const c2 = await connect(address)
    const [s2] = await viaEvent
    await c2.send('via the event')
    expect((await (s2 as typeof s1).receive()).data.toString()).toBe('via the event')
    server.removeAllListeners('connection')
    const c3 = await connect(address)
    for await (const s of server) {
      await c3.send('via for await')
      expect((await s.receive()).data.toString()).toBe('via for await')
      s.close()
      break
    }
    const closes: number[] = []
    server.on('close', () => closes.push(1))
    for (const s of [c1, c2, c3, s1, s2 as typeof s1]) s.close()
    await server.close()
    await server.close()
    expect(closes).toEqual([1])
    expect(server.listening).toBe(false)
    expect(server.fd).toBe(-1)
    expect(fs.existsSync(address)).toBe(false)
    await expect(server.accept()).rejects.toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED' })
    await expect(connect(address)).rejects.toMatchObject({ code: 'ENOENT' })
  })

  test("connections nobody took are closed with the server: the client sees 'end'", async () => {
    const address = tmpPath()
    const server = await listen(address)
    const client = await connect(address)
    const ended = waitFor(client, 'end')
    await sleep(20) // accepted into the server's queue by now
    await server.close()
    await ended
    expect(client.readyState).toBe('closed')
  })

  test('a pending accept() ends when the server closes; accept({ signal }) aborts', async () => {
    const server = await listen(tmpPath())
    const ac = new AbortController()
    const aborted = server.accept({ signal: ac.signal })
    ac.abort()
    await expect(aborted).rejects.toMatchObject({ code: 'ABORT_ERR' })
    const waiting = server.accept()
    const iterating = (async () => {
      const got = []
      for await (const s of server) got.push(s)
      return got
    })()
    await server.close()
    await expect(waiting).rejects.toMatchObject({ code: 'ERR_FDPASS_SOCKET_CLOSED' })
    expect(await iterating).toEqual([])
  })

  test('seqpacket servers, and abstract addresses leave no file', async () => {
    const address = { abstract: `fdpass-api-${process.pid}-${Date.now()}` }
    const server = await listen(address, { type: 'seqpacket' })
    expect(server).toMatchObject({ address, type: 'seqpacket' })
    const client = await connect(address, { type: 'seqpacket' })
    const socket = await server.accept()
    expect(socket.localAddress).toEqual(address)
    await expectDelivered(client, socket, 'abstract')
    await closeAll(server, client, socket)
  })

  test("peerCredentials() equals the child's pid, uid and gid", async () => {
    const address = tmpPath()
    const server = await listen(address)
    const child = run('peer.js', [{ address, mode: 'echo' }])
    const socket = await server.accept()
    const ready = await child.next()
    expect(socket.peerCredentials()).toEqual({ pid: child.proc.pid, uid: ready.uid, gid: ready.gid })
    expect(ready.uid).toBe(process.getuid!())
    expect(ready.gid).toBe(process.getgid!())
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

describe('backpressure', () => {
  test("'message' events deliver in order, and sends queued behind a full buffer keep their order", async () => {
    const [a, b] = socketpair({ type: MESSAGE_TYPE })
    b.pause()
    const sends: Promise<void>[] = []
    for (let i = 0; i < 2000; i++) sends.push(a.send(`#${i}`.padEnd(200, '.')))
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

  test('many large messages with fds to a paused receiver process: the sender waits, then nothing is lost, in order', async () => {
    const address = tmpPath()
    const server = await listen(address)
    const { path: file, fd } = tempFile('backpressure')
    const N = 200
    const child = run('paused-receiver.js', [address, String(N), file], { stdio: ['pipe', 'pipe', 'pipe'] })
    const socket = await server.accept()
    await child.next()
    const sends: Promise<void>[] = []
    for (let i = 0; i < N; i++) {
      const header = Buffer.from(`#${i}:`)
      sends.push(socket.send(Buffer.concat([header, Buffer.alloc(256 << 10, i & 0xff)]), [fd]))
    }
    expect(socket.pendingSends).toBeGreaterThan(N / 2)
    expect(openFdsTo(file)).toBeGreaterThan(1) // queued sends hold duplicates of the file...
    fs.closeSync(fd) // ...so closing ours early is safe
    let settled = 0
    for (const s of sends) s.then(() => settled++)
    await sleep(50)
    expect(settled).toBeLessThan(N) // the receiver is paused: the sends wait
    child.proc.stdin!.write('resume\n')
    await Promise.all(sends)
    expect(socket.pendingSends).toBe(0)
    expect(openFdsTo(file)).toBe(0) // every duplicate was closed once its message was in the kernel
    expect(await child.next()).toMatchObject({ done: true, got: N, problems: [], leaked: 0 })
    socket.close()
    await server.close()
  })

  test('a small highWaterMark pauses reading; receive() resumes it', async () => {
    const [a, b] = socketpair({ type: MESSAGE_TYPE, highWaterMark: 2 })
    const sends = Array.from({ length: 500 }, (_, i) => a.send(`${i}`.padEnd(1000)))
    await sleep(30)
    expect(a.pendingSends).toBeGreaterThan(0)
    for (let i = 0; i < 500; i++) expect((await b.receive()).data.toString().trim()).toBe(String(i))
    await Promise.all(sends)
    a.close()
    b.close()
  })
})

describe('datagrams', () => {
  test('a connected dgram socket sends to its peer; from is the sender; sendTo is for dgram only', async () => {
    const address = tmpPath()
    const receiver = await bind(address)
    const me = tmpPath()
    const sender = await connect(address, { type: 'dgram', bind: me })
    expect(sender).toMatchObject({ type: 'dgram', localAddress: me, remoteAddress: address })
    await sender.send('dgram!', [0])
    const m = await receiver.receive()
    expect(m).toMatchObject({ from: me })
    expect(m.data.toString()).toBe('dgram!')
    m.fds[0].close()
    const [s1, s2] = socketpair()
    expect(() => s1.sendTo(address, 'x')).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_UNSUPPORTED' }))
    for (const s of [sender, receiver, s1, s2]) s.close()
  })

  test('a datagram longer than maxMessageSize is ERR_FDPASS_TRUNCATED (dataTruncated), its fds closed; the socket goes on', async () => {
    const address = tmpPath()
    const receiver = await bind(address, { maxMessageSize: 16 })
    const sender = await connect(address, { type: 'dgram' })
    const before = openFdCount()
    await sender.send(Buffer.alloc(100, 1), [0, 0])
    await sender.send('fits')
    const err = await receiver.receive().catch((e) => e)
    expect(err).toMatchObject({ code: 'ERR_FDPASS_TRUNCATED', dataTruncated: true, fdsReceived: 2 })
    expect(err.data).toEqual(Buffer.alloc(16, 1))
    expect(openFdCount()).toBe(before)
    expect((await receiver.receive()).data.toString()).toBe('fits')
    sender.close()
    receiver.close()
  })

  test('sending to a dgram address nobody is bound to: ECONNREFUSED or ENOENT, with the address', async () => {
    const d = await bind(null)
    const nowhere = tmpPath()
    await expect(d.sendTo(nowhere, 'x')).rejects.toMatchObject({ code: 'ENOENT', syscall: 'sendmsg', address: nowhere })
    d.close()
  })
})
