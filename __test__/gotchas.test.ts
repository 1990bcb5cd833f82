// The traps of SCM_RIGHTS, each through the public API (README table).
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { MAX_FDS_PER_MESSAGE, connect, listen, runtime, socketpair } from '..'
import { FD_DIR, linuxOnly, MESSAGE_TYPE, cleanup, fixture, identity, root, settledFdCount, run, runLimited, tmpPath, wrap } from './helpers'

afterEach(cleanup)

describe('a stream needs a byte of data to carry descriptors', () => {
  test('raw stream: empty data with fds is refused, not silently dropped', async () => {
    const [a, b] = socketpair({ raw: true })
    await expect(a.send('', [0])).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' })
    a.close()
    b.close()
  })

  test('framed stream: empty data with fds arrives (the header is the byte)', async () => {
    const [a, b] = socketpair()
    await a.send('', [0])
    const m = await b.receive()
    expect(m.data.length).toBe(0)
    expect(m.fds).toHaveLength(1)
    m.fds[0].close()
    a.close()
    b.close()
  })
})

describe('truncation', () => {
  // macOS installs every fd before it truncates, so the count differs there.
  test.runIf(process.platform === 'linux')(
    `a receiver at RLIMIT_NOFILE gets ERR_FDPASS_TRUNCATED with the count lost, closes what arrived, and keeps going${linuxOnly}`,
    async () => {
      const address = tmpPath()
      const server = await listen(address)
      const child = runLimited(40, 'limited-receiver.js', [address, '40', '/dev/null'])
      const socket = await server.accept()
      const { free: room } = await child.next() // room: descriptors the child can still open
      expect(room).toBeGreaterThan(5)
      const fd = fs.openSync('/dev/null', 'r')
      const count = room + 10
      await socket.send('too many', Array(count).fill(fd))
      await socket.send('after')
      const first = await child.next()
      expect(first).toMatchObject({ error: 'ERR_FDPASS_TRUNCATED', data: 'too many' })
      // The kernel installs descriptors until the table is full and drops the rest.
      expect(first).toMatchObject({ fdsReceived: room, fdsLost: 10 })
      expect(first.held).toBe(0) // the ones that did arrive were closed
      expect(await child.next()).toMatchObject({ data: 'after', fds: 0, held: 0 })
      expect(await child.next()).toMatchObject({ done: true, held: 0, socketOpen: false })
      expect((await child.exit).code).toBe(0)
      fs.closeSync(fd)
      socket.close()
      await server.close()
    },
  )
})

describe('partial writes', () => {
  test('an 8 MiB message with 3 fds to a paused receiver arrives whole, with its fds once', async () => {
    const [a, b] = socketpair()
    b.pause()
    const data = Buffer.alloc(8 << 20)
    for (let i = 0; i < data.length; i += 4096) data[i] = (i / 4096) & 0xff
    const fd = fs.openSync('/dev/null', 'r')
    const sent = a.send(data, [fd, fd, fd])
    expect(a.pendingSends).toBe(1) // the kernel took only part of it
    fs.closeSync(fd) // the queued send holds its own duplicates
    b.resume()
    await sent
    const m = await b.receive()
    expect(m.data.equals(data)).toBe(true)
    expect(m.fds).toHaveLength(3)
    for (const f of m.fds) {
      expect(f.kind()).toBe('character-device')
      f.close()
    }
    a.close()
    b.close()
  })
})

describe('SCM_MAX_FD', () => {
  test('253 descriptors arrive in one message', async () => {
    const [a, b] = socketpair({ type: MESSAGE_TYPE })
    const fd = fs.openSync('/dev/null', 'r')
    await a.send('many', Array(MAX_FDS_PER_MESSAGE).fill(fd))
    const m = await b.receive()
    expect(m.fds).toHaveLength(253)
    for (const f of m.fds) f.close()
    fs.closeSync(fd)
    a.close()
    b.close()
  })

  test('253 descriptors in one message between two processes, framed stream and seqpacket, both ways', async () => {
    for (const type of runtime.supportsSeqpacket ? (['stream', 'seqpacket'] as const) : (['stream'] as const)) {
      const address = tmpPath()
      const server = await listen(address, { type })
      const child = run('peer.js', [{ address, type, mode: 'echo', count: 1 }])
      const socket = await server.accept()
      await child.next()
      const fd = fs.openSync('/dev/null', 'r')
      await socket.send('many', Array(MAX_FDS_PER_MESSAGE).fill(fd))
      const m = await socket.receive() // echoed back by the child with all 253
      expect(m.data.toString()).toBe('many')
      expect(m.fds).toHaveLength(253)
      expect(new Set(m.fds.map((f) => f.fd)).size).toBe(253)
      for (const f of m.fds) {
        expect(identity(f.fd)).toEqual(identity(fd))
        f.close()
      }
      const done = await child.next()
      expect(done).toMatchObject({ received: 1 })
      expect(done.leaked).toBe(0)
      fs.closeSync(fd)
      socket.close()
      await server.close()
    }
  })

  test('254 throw before any syscall, naming the limit', () => {
    const [a, b] = socketpair()
    expect(() => a.send('x', Array(254).fill(0))).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_TOO_MANY_FDS', limit: 253, count: 254 }))
    expect(() => a.send('x', Array(254).fill(0))).toThrow(/253/)
    expect(MAX_FDS_PER_MESSAGE).toBe(253)
    const [s1, s2] = socketpair({ type: MESSAGE_TYPE })
    expect(() => s1.send('x', Array(254).fill(0))).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_TOO_MANY_FDS', limit: 253 }))
    s1.close()
    s2.close()
    a.close()
    b.close()
  })
})

describe('CLOEXEC', () => {
  test('received descriptors and fdpass sockets are close-on-exec, and a child does not inherit them', async () => {
    const [a, b] = socketpair()
    const fd = fs.openSync('/dev/null', 'r')
    await a.send('x', [fd])
    const m = await b.receive()
    const received = m.fds[0]
    expect(received.stat().cloexec).toBe(true)
    const mine = (a as unknown as { fd: number }).fd
    const listing = spawnSync('ls', [FD_DIR], { encoding: 'utf8' }).stdout.split('\n')
    expect(listing).not.toContain(String(received.fd))
    expect(listing).not.toContain(String(mine))
    received.close()
    fs.closeSync(fd)
    a.close()
    b.close()
  })
})

describe('socket paths', () => {
  test(`a path over ${runtime.maxPathLength} bytes is refused naming the limit; exactly the limit works`, async () => {
    const dir = tmpPath('dir')
    fs.mkdirSync(dir, { mode: 0o700 })
    const long = path.join(dir, 'x'.repeat(runtime.maxPathLength + 1 - dir.length - 1))
    expect(Buffer.byteLength(long)).toBe(runtime.maxPathLength + 1)
    await expect(listen(long)).rejects.toMatchObject({ code: 'ERR_FDPASS_ADDRESS_TOO_LONG', limit: runtime.maxPathLength })
    await expect(connect(long)).rejects.toMatchObject({ code: 'ERR_FDPASS_ADDRESS_TOO_LONG' })
    const exact = long.slice(0, -1)
    const server = await listen(exact)
    const client = await connect(exact)
    client.close()
    await server.close()
  })

  test('a stale socket file is replaced; a live one is EADDRINUSE', async () => {
    const address = tmpPath()
    const live = await listen(address)
    await expect(listen(address)).rejects.toMatchObject({ code: 'EADDRINUSE', errno: -98, syscall: 'bind', address })
    await live.close()
    // A process that dies while listening leaves its socket file behind.
    const stale = tmpPath()
    const pkg = JSON.stringify(path.resolve(__dirname, '..'))
    const child = spawnSync(process.execPath, ['-e', `require(${pkg}).listen(${JSON.stringify(stale)}).then(() => process.exit(0))`])
    expect(child.status).toBe(0)
    expect(fs.statSync(stale).isSocket()).toBe(true)
    await expect(connect(stale)).rejects.toMatchObject({ code: 'ECONNREFUSED', errno: -111, syscall: 'connect', address: stale })
    const replaced = await listen(stale)
    const client = await connect(stale)
    client.close()
    await replaced.close()
  })

  test('a regular file or a symlink at the path is never removed', async () => {
    const address = tmpPath()
    fs.writeFileSync(address, 'precious')
    await expect(listen(address)).rejects.toMatchObject({ code: 'ERR_FDPASS_NOT_A_SOCKET', address })
    expect(fs.readFileSync(address, 'utf8')).toBe('precious')
    const link = tmpPath('link')
    fs.symlinkSync(address, link)
    await expect(listen(link)).rejects.toMatchObject({ code: 'ERR_FDPASS_NOT_A_SOCKET', address: link })
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true)
    expect(fs.readFileSync(address, 'utf8')).toBe('precious')
  })

  test('a symlink to a stale socket file is not followed: neither the link nor its target is removed', async () => {
    // A stale socket file: its server died without removing it.
    const stale = tmpPath()
    const pkg = JSON.stringify(root)
    expect(spawnSync(process.execPath, ['-e', `require(${pkg}).listen(${JSON.stringify(stale)}).then(() => process.exit(0))`]).status).toBe(0)
    const ino = fs.statSync(stale).ino
    const link = tmpPath('link')
    fs.symlinkSync(stale, link)
    await expect(listen(link)).rejects.toMatchObject({ code: 'ERR_FDPASS_NOT_A_SOCKET', address: link })
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true)
    expect(fs.readlinkSync(link)).toBe(stale)
    expect(fs.statSync(stale).ino).toBe(ino) // the target is the same, untouched file
    // The stale socket's own path is still replaced.
    const server = await listen(stale)
    const client = await connect(stale)
    client.close()
    await server.close()
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true)
  })

  test('relative paths count their own bytes: 107 from a cwd works, 108 is refused', () => {
    const dir = tmpPath('cwd')
    fs.mkdirSync(dir, { mode: 0o700 })
    const script = `
      const f = require(${JSON.stringify(root)})
      const out = {}
      f.listen('r'.repeat(108)).catch((e) => { out.long = { code: e.code, limit: e.limit, length: e.length } })
        .then(() => f.listen('r'.repeat(107)))
        .then(async (s) => { out.exists = require('fs').statSync('r'.repeat(107)).isSocket(); const c = await f.connect('r'.repeat(107)); c.close(); await s.close(); out.ok = true })
        .catch((e) => { out.error = e.code })
        .then(() => console.log(JSON.stringify(out)))`
    const r = spawnSync(process.execPath, ['-e', script], { cwd: dir, encoding: 'utf8', env: process.env })
    expect(JSON.parse(r.stdout)).toEqual({
      long: { code: 'ERR_FDPASS_ADDRESS_TOO_LONG', limit: runtime.maxPathLength, length: runtime.maxPathLength + 1 },
      exists: true,
      ok: true,
    })
  })

  test('socket files get mode 0600, or the mode asked for', async () => {
    const a = tmpPath()
    const b = tmpPath()
    const sa = await listen(a)
    const sb = await listen(b, { mode: 0o660 })
    expect(fs.statSync(a).mode & 0o777).toBe(0o600)
    expect(fs.statSync(b).mode & 0o777).toBe(0o660)
    await sa.close()
    await sb.close()
    expect(fs.existsSync(a)).toBe(false)
  })
})

describe('a vanished peer', () => {
  test('with SIGPIPE at its default (fatal) disposition, send() is EPIPE and the process lives', () => {
    // The control: a plain write(2) to the same kind of dead peer kills such a process.
    const control = spawnSync(process.execPath, [fixture('sigpipe.js'), 'control'], { encoding: 'utf8', env: process.env })
    expect(control.signal).toBe('SIGPIPE')
    for (const type of runtime.supportsSeqpacket ? ['stream', 'seqpacket'] : ['stream']) {
      const r = spawnSync(process.execPath, [fixture('sigpipe.js'), type], { encoding: 'utf8', env: process.env })
      expect({ status: r.status, signal: r.signal }).toEqual({ status: 0, signal: null })
      const out = JSON.parse(r.stdout)
      expect(out.alive).toBe(true)
      expect(out.results).toHaveLength(3)
      for (const result of out.results) {
        expect(result).toMatchObject({ code: expect.stringMatching(/^(EPIPE|ECONNRESET)$/), syscall: 'sendmsg' })
        expect(result.errno).toBe(result.code === 'EPIPE' ? -32 : -104)
      }
    }
  })

  test('send() rejects with EPIPE or ECONNRESET and the process lives on', async () => {
    for (const type of runtime.supportsSeqpacket ? (['stream', 'seqpacket'] as const) : (['stream'] as const)) {
      const [a, b] = socketpair({ type })
      b.close()
      await expect(a.send('anyone?')).rejects.toMatchObject({
        code: expect.stringMatching(/^(EPIPE|ECONNRESET)$/),
        errno: expect.any(Number),
        syscall: 'sendmsg',
      })
      a.close()
    }
  })
})

describe('descriptor versus description', () => {
  test('the receiver shares the file offset with the sender', async () => {
    const p = tmpPath('file')
    fs.writeFileSync(p, '0123456789')
    const fd = fs.openSync(p, 'r')
    const [a, b] = socketpair()
    await a.send('x', [fd])
    const m = await b.receive()
    const buf = Buffer.alloc(2)
    fs.readSync(m.fds[0].fd, buf, 0, 2, null)
    expect(buf.toString()).toBe('01')
    fs.readSync(fd, buf, 0, 2, null)
    expect(buf.toString()).toBe('23') // the sender's reads continue where the receiver stopped
    expect(identity(m.fds[0].fd)).toEqual(identity(fd))
    m.fds[0].close()
    fs.closeSync(fd)
    a.close()
    b.close()
  })

  test('status flags are shared too (O_APPEND)', async () => {
    const p = tmpPath('file')
    fs.writeFileSync(p, 'start|')
    const fd = fs.openSync(p, 'a')
    const [a, b] = socketpair()
    await a.send('x', [fd])
    const m = await b.receive()
    fs.writeSync(m.fds[0].fd, 'from receiver|')
    fs.writeSync(fd, 'from sender')
    expect(fs.readFileSync(p, 'utf8')).toBe('start|from receiver|from sender')
    m.fds[0].close()
    fs.closeSync(fd)
    a.close()
    b.close()
  })
})

describe('nothing leaks', () => {
  test('fd count is unchanged after sockets, messages and errors', async () => {
    const before = await settledFdCount()
    for (let i = 0; i < 20; i++) {
      const [a, b] = socketpair()
      await a.send('x', [0, 1])
      const m = await b.receive()
      for (const f of m.fds) f.close()
      await expect(a.send('x', [999_999])).rejects.toMatchObject({ code: 'ERR_FDPASS_INVALID_FD' })
      a.close()
      b.close()
    }
    expect(await settledFdCount()).toBe(before)
  })
})

describe('descriptor limits', () => {
  test('EMFILE is a clear error that says what to do', async () => {
    const { spawn } = await import('node:child_process')
    const child = wrap(spawn('bash', ['-c', `ulimit -n 64; exec "${process.execPath}" "${fixture('emfile.js')}"`], { stdio: ['ignore', 'pipe', 'pipe'] }))
    const out = await child.next()
    expect(out.socketpair).toMatchObject({ code: 'EMFILE', syscall: 'socketpair' })
    expect(out.socketpair.message).toMatch(/RLIMIT_NOFILE/)
    expect(out.connect.code).toBe('EMFILE')
  })
})

describe('unclaimed descriptors', () => {
  test('a dropped ReceivedFd (from receive(), a listener or receiveSync()) is closed by the garbage collector with a warning; buffered messages close with their socket', async () => {
    const { spawn } = await import('node:child_process')
    const child = wrap(spawn(process.execPath, ['--expose-gc', fixture('unclaimed.js')], { stdio: ['ignore', 'pipe', 'pipe'] }))
    const r = await child.next()
    expect(r.whileHeld).toBe(r.base + 3)
    expect(r.afterGc).toBe(r.base)
    expect(r.warnings).toContain('FDPASS_UNCLOSED_FD')
    expect(r.buffered).toBe(r.base + 5)
    expect(r.afterClose).toBe(r.base - 1) // the five buffered ones, and b itself
    // Through 'message' listeners: 8 dropped unclosed, 3 closed by the listener.
    expect(r.listenerHeld).toBe(r.base2 + 8)
    expect(r.listenerAfterGc).toBe(r.base2)
    expect(r.listenerWarnings).toBe(8)
    // Through receiveSync(): 2 dropped unclosed.
    expect(r.syncWhileHeld).toBe(r.base3 + 2)
    expect(r.syncAfterGc).toBe(r.base3)
    expect(r.syncWarnings).toBe(2)
    // 300 dropped in a loop that never yields: all closed by the collector.
    expect(r.loopHeld).toBe(300)
    expect(r.loopAfterGc).toBe(r.base4)
    expect(r.loopWarnings).toBe(300)
  })
  test('the FDPASS_UNCLOSED_FD warning says where the descriptor came from: its socket, the message, what it refers to', async () => {
    const { spawn } = await import('node:child_process')
    const address = tmpPath()
    const child = wrap(spawn(process.execPath, ['--expose-gc', fixture('unclaimed-origin.js'), address], { stdio: ['ignore', 'pipe', 'pipe'] }))
    const r = await child.next()
    const byIndex = (kind: string) => r.warnings.find((w: { kind: string }) => w.kind === kind)
    expect(r.warnings).toHaveLength(3)
    const device = byIndex('character-device')
    expect(device).toMatchObject({
      messageIndex: 1,
      origin: `the stream socket fd ${device.origin.match(/fd (\d+)/)[1]} at ${address} (peer pid ${r.pid}, uid ${r.uid})`,
    })
    expect(device.message).toBe(
      `Closing file descriptor ${device.fd} (a character-device) on garbage collection: a ReceivedFd was never closed or released. It came with message #1 on ${device.origin}.`,
    )
    expect(byIndex('socket')).toMatchObject({ messageIndex: 2, origin: device.origin })
    // The receiveSync() path, on a socketpair (no addresses): the first message is #0.
    const sync = r.warnings.find((w: { origin: string }) => w.origin !== device.origin)
    expect(sync).toMatchObject({ kind: 'character-device', messageIndex: 0 })
    expect(sync.origin).toMatch(new RegExp(`^the stream socket fd \\d+ \\(peer pid ${r.pid}, uid ${r.uid}\\)$`))
  })
})

describe('bursts', () => {
  test.runIf(runtime.supportsSeqpacket)(`a burst of 500 messages × 64 fds to a receiver with RLIMIT_NOFILE 1024 loses nothing${linuxOnly}`, async () => {
    const { spawn } = await import('node:child_process')
    const address = tmpPath()
    const server = await listen(address, { type: 'seqpacket' })
    const child = wrap(
      spawn('bash', ['-c', `ulimit -n 1024; exec "${process.execPath}" "${fixture('burst-receiver.js')}" "${address}" 500`], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    )
    const socket = await server.accept()
    const fd = fs.openSync('/dev/null', 'r')
    const sends: Promise<void>[] = []
    for (let i = 0; i < 500; i++) sends.push(socket.send('burst', Array(64).fill(fd)))
    await Promise.all(sends)
    expect(await child.next()).toEqual({ msgs: 500, fds: 32_000, errors: [] })
    fs.closeSync(fd)
    socket.close()
    await server.close()
  })
})
