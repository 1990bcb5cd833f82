// The synchronous API (sendSync/receiveSync) and the batch calls on a
// message's descriptors (ReceivedFd.statAll/closeAll).
import * as fs from 'node:fs'
import * as os from 'node:os'
import { afterEach, describe, expect, test } from 'vitest'
import { bind, connect, listen, ReceivedFd, socketpair, type SocketType } from '..'
import { cleanup, identity, linuxOnly, makePipe, MESSAGE_TYPE, openFdCount, run, tmpPath } from './helpers'

afterEach(cleanup)

function tmpFile(content: string): string {
  const p = tmpPath('file')
  fs.writeFileSync(p, content)
  return p
}

/** `count` received descriptors, all for `file`, in messages of at most 200. */
async function receivedCopies(file: string, count: number): Promise<ReceivedFd[]> {
  const [a, b] = socketpair({ type: MESSAGE_TYPE })
  const fd = fs.openSync(file, 'r')
  const out: ReceivedFd[] = []
  for (let left = count; left > 0; left -= 200) {
    await a.send('x', Array(Math.min(200, left)).fill(fd))
    out.push(...(await b.receive()).fds)
  }
  fs.closeSync(fd)
  a.close()
  b.close()
  return out
}

const isOpen = (fd: number) => {
  try {
    fs.fstatSync(fd)
    return true
  } catch {
    return false
  }
}

describe('ReceivedFd.statAll / closeAll', () => {
  test('statAll and fileStat() give what stat() gives, without cloexec, in order, for every kind', async () => {
    const file = tmpFile('twelve bytes')
    const f = fs.openSync(file, 'r')
    const dir = fs.openSync(os.tmpdir(), 'r')
    const nul = fs.openSync('/dev/null', 'r')
    const p = makePipe()
    const [s1, s2] = socketpair()
    const [a, b] = socketpair({ type: MESSAGE_TYPE })
    await a.send('kinds', [f, dir, nul, p.readEnd, s1])
    const { fds } = await b.receive()
    const all = ReceivedFd.statAll(new Set(fds))
    expect(all.map((s) => s.kind)).toEqual(['file', 'directory', 'character-device', 'pipe', 'socket'])
    for (let i = 0; i < fds.length; i++) {
      const { cloexec, ...rest } = fds[i].stat()
      expect(cloexec).toBe(true)
      expect(all[i]).toEqual(rest)
      expect(fds[i].fileStat()).toEqual(rest)
      expect(fds[i].kind()).toBe(rest.kind)
    }
    expect(all[0]).toMatchObject({ size: 12, ...identity(f) })
    fs.closeSync(fds[0].fd) // behind the ReceivedFd's back: both say which number
    for (const call of [() => fds[0].stat(), () => fds[0].fileStat()]) {
      expect(call).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_FD', fd: fds[0].fd }))
    }
    fds[0].release()
    expect(() => fds[0].fileStat()).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_FD_CLOSED' }))
    ReceivedFd.closeAll(fds)
    for (const x of [f, dir, nul, p.readEnd, p.writeEnd]) fs.closeSync(x)
    for (const s of [s1, s2, a, b]) s.close()
  })

  test('statAll and closeAll work past one batch (600 descriptors)', async () => {
    const file = tmpFile('many')
    const before = openFdCount()
    const fds = await receivedCopies(file, 600)
    expect(openFdCount()).toBe(before + 600)
    const stats = ReceivedFd.statAll(fds)
    expect(stats).toHaveLength(600)
    expect(stats.every((s) => s.ino === fs.statSync(file).ino && s.kind === 'file')).toBe(true)
    const numbers = fds.map((r) => r.fd)
    ReceivedFd.closeAll(fds)
    expect(openFdCount()).toBe(before)
    expect(fds.every((r) => r.closed)).toBe(true)
    expect(numbers.some(isOpen)).toBe(false)
    ReceivedFd.closeAll(fds) // idempotent, like close()
  })

  test('closeAll skips the closed and released ones and closes the rest', async () => {
    const fds = await receivedCopies(tmpFile('x'), 4)
    fds[0].close()
    const kept = fds[1].release()
    const [n2, n3] = [fds[2].fd, fds[3].fd]
    ReceivedFd.closeAll(fds)
    expect(isOpen(kept)).toBe(true)
    expect([isOpen(n2), isOpen(n3)]).toEqual([false, false])
    fs.closeSync(kept)
  })

  test('closeAll closes every descriptor even when one fails, then throws that failure', async () => {
    const fds = await receivedCopies(tmpFile('x'), 3)
    const numbers = fds.map((r) => r.fd)
    fs.closeSync(numbers[1]) // closed behind the ReceivedFd's back
    expect(() => ReceivedFd.closeAll(fds)).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_FD', fd: numbers[1] }))
    expect(numbers.some(isOpen)).toBe(false)
    expect(fds.every((r) => r.closed)).toBe(true)
  })

  test('bad arguments throw before any descriptor is touched', async () => {
    const fds = await receivedCopies(tmpFile('x'), 2)
    const numbers = fds.map((r) => r.fd)
    expect(() => ReceivedFd.closeAll([fds[0], 3 as never, fds[1]])).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('fds[1]') }),
    )
    expect(() => ReceivedFd.statAll(42 as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
    expect(numbers.every(isOpen)).toBe(true)
    expect(fds.some((r) => r.closed)).toBe(false)
    fds[1].close()
    expect(() => ReceivedFd.statAll(fds)).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_FD_CLOSED' }))
    ReceivedFd.closeAll(fds)
    expect(isOpen(numbers[0])).toBe(false)
  })
})

const TYPES: Array<{ type: SocketType; raw?: boolean }> = [{ type: MESSAGE_TYPE }, { type: 'stream' }]

/** A server and a child running fixtures/sync-peer.js `mode` against it (with `n` and a file), accepted. */
async function syncPeer(mode: 'send' | 'reply' | 'drain', n: number) {
  const address = tmpPath()
  const server = await listen(address, { type: MESSAGE_TYPE })
  const file = tmpFile('from the other process')
  const child = run('sync-peer.js', [mode, address, MESSAGE_TYPE, String(n), file])
  const socket = await server.accept()
  return { server, file, child, socket }
}

describe('sendSync / receiveSync', () => {
  test.each(TYPES)('a round trip with descriptors ($type)', ({ type }) => {
    const file = tmpFile('sync')
    const fd = fs.openSync(file, 'r')
    const [a, b] = socketpair({ type })
    a.sendSync('one', [fd, fd])
    a.sendSync(Buffer.from('two'))
    fs.closeSync(fd) // the kernel holds its own references once sendSync returned
    const m1 = b.receiveSync()
    const m2 = b.receiveSync()
    expect(m1.data.toString()).toBe('one')
    expect(m1.fds.map((r) => r.stat().ino)).toEqual([fs.statSync(file).ino, fs.statSync(file).ino])
    expect(m2.data.toString()).toBe('two')
    expect(m2.fds).toEqual([])
    b.sendSync('back', m1.fds)
    const back = a.receiveSync()
    expect(ReceivedFd.statAll(back.fds).map((s) => s.ino)).toEqual([fs.statSync(file).ino, fs.statSync(file).ino])
    ReceivedFd.closeAll([...m1.fds, ...back.fds])
    a.close()
    b.close()
  })

  test('strings arrive as their UTF-8, short or long, ASCII or not, through send() and sendSync()', async () => {
    const [a, b] = socketpair({ type: MESSAGE_TYPE })
    const strings = ['x', 'é', 'a→b', '😀', 'ab\u0000c', 'x'.repeat(32), 'x'.repeat(31) + 'é', 'y'.repeat(33), 'z'.repeat(5000), 'ü'.repeat(4096)]
    for (const s of strings) {
      a.sendSync(s)
      expect(b.receiveSync({ timeout: 1000 }).data.equals(Buffer.from(s, 'utf8'))).toBe(true)
      await a.send(s)
      expect((await b.receive()).data.equals(Buffer.from(s, 'utf8'))).toBe(true)
    }
    a.close()
    b.close()
  })

  test('receiveSync takes buffered messages first, then times out with ETIMEDOUT', async () => {
    const [a, b] = socketpair({ type: MESSAGE_TYPE })
    await a.send('buffered')
    await new Promise((r) => setImmediate(r)) // read by the event loop into b's queue
    a.sendSync('in the kernel')
    expect(b.receiveSync({ timeout: 0 }).data.toString()).toBe('buffered')
    expect(b.receiveSync({ timeout: 0 }).data.toString()).toBe('in the kernel')
    const t0 = Date.now()
    let err: any
    try {
      b.receiveSync({ timeout: 30 })
    } catch (e) {
      err = e
    }
    expect(Date.now() - t0).toBeGreaterThanOrEqual(29)
    expect(err).toMatchObject({ code: 'ETIMEDOUT', errno: -os.constants.errno.ETIMEDOUT, syscall: 'recvmsg' })
    a.sendSync('still usable')
    expect(b.receiveSync({ timeout: 1000 }).data.toString()).toBe('still usable')
    expect(() => b.receiveSync({ timeout: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }))
    expect(() => b.receiveSync({ timeout: '1' as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
    a.close()
    b.close()
  })

  test.each(TYPES)('after a wait, receiveSync still finds a message that is already there ($type)', ({ type }) => {
    const [a, b] = socketpair({ type })
    expect(() => b.receiveSync({ timeout: 5 })).toThrow(expect.objectContaining({ code: 'ETIMEDOUT' }))
    a.sendSync('one')
    expect(b.receiveSync({ timeout: 0 }).data.toString()).toBe('one') // timeout 0 still reads
    expect(() => b.receiveSync({ timeout: 5 })).toThrow(expect.objectContaining({ code: 'ETIMEDOUT' }))
    a.sendSync('two')
    a.sendSync('three')
    a.sendSync('four')
    expect(b.receiveSync({ timeout: 1000 }).data.toString()).toBe('two') // waits first: returns at once
    expect(b.receiveSync().data.toString()).toBe('three')
    expect(b.receiveSync({ timeout: 0 }).data.toString()).toBe('four')
    a.close()
    b.close()
  })

  // receiveSync hands a message that fits the lent delivery buffers back as
  // the call's result, and anything else through the socket's callback: each
  // kind of item is checked on both paths.
  test('receiveSync throws a truncated or refused message as receive() rejects, closing its descriptors; the socket goes on', () => {
    const file = tmpFile('checked')
    const fd = fs.openSync(file, 'r')
    const [a, b] = socketpair({ type: MESSAGE_TYPE, maxMessageSize: 16 })
    a.sendSync(Buffer.alloc(100, 1), [fd, fd])
    a.sendSync('fits', [fd])
    const before = openFdCount()
    let err: any
    try {
      b.receiveSync({ timeout: 1000 })
    } catch (e) {
      err = e
    }
    expect(err).toMatchObject({ code: 'ERR_FDPASS_TRUNCATED', dataTruncated: true, fdsReceived: 2 })
    expect(err.data).toEqual(Buffer.alloc(16, 1))
    expect(openFdCount()).toBe(before)
    const fits = b.receiveSync({ timeout: 1000 })
    expect(fits.data.toString()).toBe('fits')
    expect(fits.fds[0].stat()).toMatchObject(identity(fd))
    fits.fds[0].close()

    const pipe = makePipe()
    const [c, d] = socketpair({ type: MESSAGE_TYPE, acceptFds: ['file'] })
    c.sendSync('a pipe', [pipe.readEnd])
    c.sendSync('a file', [fd])
    const before2 = openFdCount()
    expect(() => d.receiveSync({ timeout: 1000 })).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_FD_KIND_REJECTED', kinds: ['pipe'] }))
    expect(openFdCount()).toBe(before2)
    const ok = d.receiveSync({ timeout: 1000 })
    expect(ok.data.toString()).toBe('a file')
    ok.fds[0].close()
    for (const s of [a, b, c, d]) s.close()
    fs.closeSync(pipe.readEnd)
    fs.closeSync(pipe.writeEnd)
    fs.closeSync(fd)
  })

  test.runIf(process.platform === 'linux').each(TYPES)(
    `a message larger than the lent buffer (64 KiB) comes back whole, in order ($type)${linuxOnly}`,
    ({ type }) => {
      const [a, b] = socketpair({ type })
      const nul = fs.openSync('/dev/null', 'r')
      const big = Buffer.alloc(100 * 1024)
      for (let i = 0; i < big.length; i++) big[i] = i % 251
      a.sendSync('small', [nul])
      a.sendSync(big, [nul, nul])
      a.sendSync('after', [nul])
      const got = [b.receiveSync({ timeout: 1000 }), b.receiveSync({ timeout: 1000 }), b.receiveSync({ timeout: 1000 })]
      expect(got.map((m) => m.data.length)).toEqual([5, big.length, 5])
      expect(got[1].data.equals(big)).toBe(true)
      expect(got.map((m) => m.fds.map((f) => f.kind()))).toEqual([['character-device'], ['character-device', 'character-device'], ['character-device']])
      for (const m of got) ReceivedFd.closeAll(m.fds)
      fs.closeSync(nul)
      a.close()
      b.close()
    },
  )

  test("receiveSync on a datagram socket gives each message's sender in from", async () => {
    const address = tmpPath()
    const receiver = await bind(address)
    const me = tmpPath()
    const sender = await connect(address, { type: 'dgram', bind: me })
    sender.sendSync('from me', [0])
    const m = receiver.receiveSync({ timeout: 1000 })
    expect(m).toMatchObject({ from: me })
    expect(m.data.toString()).toBe('from me')
    m.fds[0].close()
    sender.close()
    receiver.close()
  })

  test('receiveSync blocks until another process sends', async () => {
    const { server, file, child, socket } = await syncPeer('send', 150)
    const m = socket.receiveSync({ timeout: 10_000 }) // the child sends 150 ms after connecting
    expect(m.data.toString()).toBe('late')
    const mine = fs.openSync(file, 'r')
    expect(m.fds[0].stat()).toMatchObject(identity(mine))
    fs.closeSync(mine)
    expect(await child.next()).toEqual({ sent: true })
    ReceivedFd.closeAll(m.fds)
    socket.close()
    await server.close()
    expect((await child.exit).code).toBe(0)
  })

  test('receiveSync() without a timeout waits in recvmsg itself (the file is then blocking), and send() on that socket still never blocks', async () => {
    const { server, file, child, socket } = await syncPeer('reply', 300)
    const started = performance.now()
    const m = socket.receiveSync() // the child sends 150 ms after connecting
    expect(performance.now() - started).toBeGreaterThan(100)
    expect(m.data.toString()).toBe('late')
    expect(m.fds[0].stat().ino).toBe(fs.statSync(file).ino)
    m.fds[0].close()
    if (process.platform === 'linux') {
      const flags = Number.parseInt(/flags:\s*(\d+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${socket.fd}`, 'utf8'))![1], 8)
      expect(flags & fs.constants.O_NONBLOCK).toBe(0)
    }
    // The child takes nothing for 200 ms: these fill its buffer, and the
    // rest wait in ours instead of blocking the thread.
    const sends: Array<Promise<void>> = []
    for (let i = 0; i < 300; i++) sends.push(socket.send(Buffer.alloc(4096, i)))
    expect(socket.pendingSends).toBeGreaterThan(0)
    await Promise.all(sends)
    expect(await child.next()).toEqual({ received: 300 })
    socket.close()
    await server.close()
  })

  test('sendSync waits while the peer is full and loses nothing (1,000 messages to a slow receiver)', async () => {
    const { server, file, child, socket } = await syncPeer('drain', 1000)
    const fd = fs.openSync(file, 'r')
    expect(await child.next()).toEqual({ ready: true })
    for (let i = 0; i < 1000; i++) socket.sendSync(`#${i}`, [fd]) // blocks while the child sleeps
    expect(await child.next()).toEqual({ received: 1000, inOrder: true, same: 1000 })
    fs.closeSync(fd)
    socket.close()
    await server.close()
  })

  test('receiveSync returns the rest, then ERR_FDPASS_SOCKET_CLOSED, after the peer closed', async () => {
    const [a, b] = socketpair({ type: 'stream' })
    const nul = fs.openSync('/dev/null', 'r')
    a.sendSync('last words', [nul])
    fs.closeSync(nul)
    a.close()
    const m = b.receiveSync({ timeout: 1000 })
    expect(m.data.toString()).toBe('last words')
    m.fds[0].close()
    expect(() => b.receiveSync({ timeout: 1000 })).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_SOCKET_CLOSED' }))
    expect(b.readyState).toBe('closed')
  })

  test("receiveSync takes a message a 'message' listener would have had; mixing with a waiting receive() is refused", async () => {
    const [a, b] = socketpair({ type: MESSAGE_TYPE })
    const emitted: string[] = []
    b.on('message', (m) => emitted.push(m.data.toString()))
    a.sendSync('for receiveSync')
    expect(b.receiveSync({ timeout: 1000 }).data.toString()).toBe('for receiveSync')
    a.sendSync('for the listener')
    await new Promise((r) => setTimeout(r, 20))
    expect(emitted).toEqual(['for the listener'])
    b.removeAllListeners('message')
    const waiting = b.receive()
    expect(() => b.receiveSync({ timeout: 0 })).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_RECEIVE_PENDING' }))
    a.sendSync('for receive()')
    expect((await waiting).data.toString()).toBe('for receive()')
    a.close()
    b.close()
  })

  test('sendSync refuses to overtake queued send()s, and works again once they are done', async () => {
    const [a, b] = socketpair({ type: MESSAGE_TYPE })
    b.pause()
    const sends: Array<Promise<void>> = []
    while (a.pendingSends === 0) sends.push(a.send('fill'))
    expect(() => a.sendSync('overtaking')).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_SENDS_QUEUED' }))
    b.resume()
    await Promise.all(sends)
    a.sendSync('after')
    let last = ''
    for (let i = 0; i <= sends.length; i++) last = (await b.receive()).data.toString()
    expect(last).toBe('after')
    a.close()
    b.close()
  })

  test('closed sockets throw ERR_FDPASS_SOCKET_CLOSED', () => {
    const [a, b] = socketpair()
    a.close()
    expect(() => a.sendSync('x')).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_SOCKET_CLOSED' }))
    expect(() => a.receiveSync()).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_SOCKET_CLOSED' }))
    b.close()
  })
})

describe('delivery through the lent buffers', () => {
  const body = (i: number, size: number) => Buffer.alloc(size, `#${i}-`)

  test('a batch larger than the lent data buffer (64 KiB) arrives intact', async () => {
    const [a, b] = socketpair({ type: MESSAGE_TYPE })
    b.pause() // let the messages pile up, so that one readiness event reads them all
    const nul = fs.openSync('/dev/null', 'r')
    const sizes = [10_000, 30_000, 50_000, 5, 70_000]
    for (let i = 0; i < sizes.length; i++) await a.send(body(i, sizes[i]), [nul])
    fs.closeSync(nul)
    b.resume()
    for (let i = 0; i < sizes.length; i++) {
      const m = await b.receive()
      expect(m.data.equals(body(i, sizes[i]))).toBe(true)
      expect(m.fds[0].kind()).toBe('character-device')
      m.fds[0].close()
    }
    a.close()
    b.close()
  })

  test('a delivery inside a listener (receiveSync) does not disturb the batch being dispatched', async () => {
    const [a, b] = socketpair({ type: MESSAGE_TYPE })
    const file = tmpFile('the file')
    const fd = fs.openSync(file, 'r')
    b.pause()
    for (let i = 0; i < 3; i++) await a.send(body(i, 100 + i), [fd])
    const seen: Array<{ data: string; ino: number }> = []
    let nested = ''
    b.on('message', (m) => {
      if (seen.length === 0) {
        a.sendSync(body(9, 2000), [fd, fd])
        const n = b.receiveSync({ timeout: 1000 }) // overwrites the lent buffers
        nested = n.data.toString()
        ReceivedFd.closeAll(n.fds)
      }
      seen.push({ data: m.data.toString(), ino: m.fds[0].stat().ino })
      m.fds[0].close()
    })
    b.resume()
    await new Promise((r) => setTimeout(r, 50))
    const ino = fs.statSync(file).ino
    expect(seen).toEqual([0, 1, 2].map((i) => ({ data: body(i, 100 + i).toString(), ino })))
    expect(nested).toBe(body(9, 2000).toString())
    fs.closeSync(fd)
    a.close()
    b.close()
  })
})

describe('the plain Node-API entry points (crates/fdpass-napi/src/hot.rs)', () => {
  // Only ts/ calls them, with checked arguments; they still refuse what
  // they cannot use instead of trusting it.
  const { hot } = require('../dist/native') as typeof import('../ts/native')
  const refused = (f: () => unknown) => {
    let err: any
    try {
      f()
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(TypeError)
    expect(err.code).toBe('ERR_INVALID_ARG_TYPE')
  }

  test('a socket argument must be a socket handle; closed sockets say EBADF', () => {
    for (const bad of [{}, 42, null, new Uint8Array(1)]) {
      refused(() => hot.socketSend(bad as object, new Uint8Array(1), 1, new Int32Array(0), 0))
      refused(() => hot.socketReceiveSync(bad as object, 0))
    }
    const [a, b] = socketpair({ type: MESSAGE_TYPE })
    expect(() => a.sendSync('x', [])).not.toThrow()
    a.close()
    b.close()
    expect(() => a.sendSync('x')).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_SOCKET_CLOSED' }))
  })

  test('lengths beyond the arrays are refused, never read past', () => {
    const { binding } = require('../dist/native') as typeof import('../ts/native')
    const [n1, n2] = binding.socketpair(MESSAGE_TYPE, false, 65536)
    const h = n1.hotHandle()
    refused(() => hot.socketSend(h, new Uint8Array(1), 2, new Int32Array(0), 0))
    refused(() => hot.socketSend(h, new Uint8Array(1), 1, new Int32Array(1), 2))
    refused(() => hot.socketSend(h, new Uint8Array(1), -1, new Int32Array(0), 0))
    refused(() => hot.socketSendSync(h, new Uint8Array(1), 1, new Int32Array(0), 1))
    expect(hot.socketSend(h, Buffer.from('xyz'), 2, new Int32Array(4), 0)).toBe(false) // sent at once
    n1.close()
    n2.close()
  })

  test('arrays of the wrong type or too short are refused before any syscall', () => {
    const nul = fs.openSync('/dev/null', 'r')
    refused(() => hot.fdStatInto(nul, new Float64Array(4)))
    refused(() => hot.fdStatInto(nul, new Int32Array(5) as never))
    refused(() => hot.fdStatMany(Int32Array.of(nul, nul), 2, new Float64Array(9)))
    const shared = new ArrayBuffer(64)
    refused(() => hot.fdStatMany(new Int32Array(shared, 0, 1), 1, new Float64Array(shared, 0, 5)))
    refused(() => hot.closeFds(Int32Array.of(nul), 2))
    refused(() => hot.closeFds(Int32Array.of(nul), -1))
    refused(() => hot.closeFd('3' as never))
    expect(isOpen(nul)).toBe(true)
    const out = new Float64Array(5)
    expect(hot.fdStatInto(nul, out)).toBe(4) // character-device, in ts/native.ts KINDS order
    expect(out[4]).toBe(1) // libuv opens with O_CLOEXEC
    fs.closeSync(nul)
  })
})

describe('listeners added after messages arrived', () => {
  test.each(['on', 'addListener', 'once', 'prependListener', 'prependOnceListener'] as const)(
    "%s('message') takes the messages buffered before it",
    async (method) => {
      const [a, b] = socketpair({ type: MESSAGE_TYPE })
      a.sendSync('buffered')
      await new Promise((r) => setTimeout(r, 20)) // read into b's queue, nobody listening
      const got = new Promise<string>((resolve) => b[method]('message', (m) => resolve(m.data.toString())))
      expect(await got).toBe('buffered')
      a.close()
      b.close()
    },
  )
})

test('examples/file-broker.js: a blocking broker hands over the files it may open and refuses the rest', async () => {
  const { spawnSync } = await import('node:child_process')
  const script = `${__dirname}/../examples/file-broker.js`
  const r = spawnSync(process.execPath, [script, script, '/etc/passwd', `${__dirname}/../examples/nope`], { encoding: 'utf8', timeout: 20_000 })
  expect(r.stderr).toBe('')
  const lines = r.stdout.trim().split('\n')
  expect(lines[0]).toMatch(/file-broker\.js: got fd file, \d+ bytes, first line: "#!\/usr\/bin\/env node"$/)
  expect(lines[1]).toMatch(/^\/etc\/passwd: refused: \/etc\/passwd is outside /)
  expect(lines[2]).toMatch(/nope: refused: ENOENT$/)
  expect(lines[3]).toBe('broker exited with 0')
  expect(r.status).toBe(0)
})
