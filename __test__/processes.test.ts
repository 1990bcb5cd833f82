// Descriptors passed between two real processes, on every socket type and
// address kind; the received descriptor is the same open file.
import * as fs from 'node:fs'
import { spawn } from 'node:child_process'
import { afterEach, describe, expect, test } from 'vitest'
import { bind, connect, listen, runtime, socketpair, type Address, type SocketType } from '..'
import { MESSAGE_TYPE, abstractName, cleanup, fdCensus, fixture, identity, makePipe, run, tempFile, tmpPath, wrap } from './helpers'

afterEach(cleanup)

const cases: Array<{ name: string; type: SocketType; raw?: boolean; abstract?: boolean }> = [
  { name: 'stream, framed, path', type: 'stream' },
  { name: 'stream, framed, abstract', type: 'stream', abstract: true },
  { name: 'stream, raw, path', type: 'stream', raw: true },
  { name: 'stream, raw, abstract', type: 'stream', raw: true, abstract: true },
  { name: 'seqpacket, path', type: 'seqpacket' },
  { name: 'seqpacket, abstract', type: 'seqpacket', abstract: true },
]

describe('between two processes', () => {
  describe('connection sockets (listen/connect)', () => {
    for (const c of cases) {
      const supported = (c.type !== 'seqpacket' || runtime.supportsSeqpacket) && (!c.abstract || runtime.supportsAbstract)
      test.runIf(supported)(
        `${c.name}${supported ? '' : ' (skipped: not on ' + process.platform + ')'}: a file goes to the child and comes back as the same file`,
        async () => {
          const address: Address = c.abstract ? abstractName(c.type) : tmpPath()
          const server = await listen(address, { type: c.type, raw: c.raw })
          expect(server.address).toEqual(address)
          const child = run('peer.js', [{ address, type: c.type, raw: c.raw, mode: 'echo', report: true }])
          const socket = await server.accept()
          expect(socket.type).toBe(c.type)
          expect(socket.raw).toBe(c.type !== 'stream' || c.raw === true)
          const ready = await child.next()
          expect(socket.peerCredentials()).toEqual({ pid: ready.pid, uid: ready.uid, gid: ready.gid })
          expect(ready.pid).toBe(child.proc.pid)

          const { fd } = tempFile('original content')
          await socket.send('take this', [fd])
          // What the child saw: the same inode, readable, close-on-exec.
          const seen = await child.next()
          expect(seen).toEqual({
            data: 'take this',
            fds: [{ ...identity(fd), kind: 'file', cloexec: true, content: 'original content', fd: expect.any(Number) }],
          })

          const back = await socket.receive()
          expect(back.data.toString()).toBe('take this')
          expect(back.fds).toHaveLength(1)
          const received = back.fds[0]
          const st = received.stat()
          const original = fs.fstatSync(fd)
          expect({ dev: st.dev, ino: st.ino }).toEqual({ dev: original.dev, ino: original.ino })
          expect(received.fd).not.toBe(fd)
          // Write through the received descriptor, read through the original.
          fs.writeSync(received.fd, 'CHANGED', 0, 'utf8') // at position 0
          const buf = Buffer.alloc(7)
          fs.readSync(fd, buf, 0, 7, 0)
          expect(buf.toString()).toBe('CHANGED')

          received.close()
          fs.closeSync(fd)
          socket.close()
          const done = await child.next()
          expect(done).toMatchObject({ done: true, received: 1 })
          expect(done.leaked).toBe(0)
          expect(await child.exit).toEqual({ code: 0, signal: null })
          await server.close()
        },
      )
    }
  })

  describe('datagrams', () => {
    for (const kind of ['path', 'abstract'] as const) {
      const supported = kind === 'path' || runtime.supportsAbstract
      test.runIf(supported)(`dgram, ${kind}: the child connects (bound to its own ${kind} address); sendTo answers it; from names the sender`, async () => {
        const address: Address = kind === 'path' ? tmpPath() : abstractName('dgram')
        const childAddress: Address = kind === 'path' ? tmpPath() : abstractName('dgram-child')
        const socket = await bind(address)
        expect(socket.localAddress).toEqual(address)
        const child = run('peer.js', [{ address, bind: childAddress, type: 'dgram', mode: 'echo', report: true, count: 2 }])
        await child.next()
        const hello = await socket.receive()
        expect(hello.data.toString()).toBe('hello')
        expect(hello.from).toEqual(childAddress)
        expect(hello.fds).toEqual([])

        const { fd } = tempFile('dgram file')
        await socket.sendTo(childAddress, 'with a file', [fd])
        expect(await child.next()).toMatchObject({ data: 'with a file', fds: [{ ...identity(fd), kind: 'file', content: 'dgram file', cloexec: true }] })
        const back = await socket.receive()
        expect(back.from).toEqual(childAddress)
        expect(back.data.toString()).toBe('with a file')
        expect(identity(back.fds[0].fd)).toEqual(identity(fd))
        back.fds[0].close()

        // Two descriptors, and no data at all: a datagram carries them anyway.
        await socket.sendTo(childAddress, '', [fd, fd])
        expect((await child.next()).fds).toHaveLength(2)
        const second = await socket.receive()
        expect(second.data.length).toBe(0)
        expect(second.fds.map((f) => identity(f.fd))).toEqual([identity(fd), identity(fd)])
        for (const f of second.fds) f.close()

        fs.closeSync(fd)
        const done = await child.next()
        expect(done).toMatchObject({ done: true, received: 2 })
        expect(done.leaked).toBe(0)
        expect((await child.exit).code).toBe(0)
        socket.close()
      })
    }

    test('an unbound dgram sender: from is null, and connect({ type: "dgram" }) sends to its address', async () => {
      const address = tmpPath()
      const receiver = await bind(address)
      const sender = await connect(address, { type: 'dgram' })
      expect(sender.remoteAddress).toBe(address)
      const { fd } = tempFile('anonymous')
      await sender.send('no return address', [fd])
      const m = await receiver.receive()
      expect(m.from).toBeNull()
      expect(identity(m.fds[0].fd)).toEqual(identity(fd))
      m.fds[0].close()
      fs.closeSync(fd)
      sender.close()
      receiver.close()
    })
  })

  describe('inherited sockets', () => {
    test('a socketpair end given to a child as fd 3 is adopted there', async () => {
      const [mine, theirs] = socketpair({ type: MESSAGE_TYPE })
      const proc = spawn(process.execPath, [fixture('peer.js'), JSON.stringify({ adopt: 3, mode: 'report', count: 1 })], {
        stdio: ['ignore', 'pipe', 'pipe', theirs.fd],
      })
      theirs.close()
      const child = wrap(proc)
      await child.next()
      const { fd } = tempFile('through fd 3')
      await mine.send('one', [fd])
      const report = await child.next()
      expect(report.data).toBe('one')
      expect(report.fds[0]).toMatchObject({ ...identity(fd), kind: 'file', cloexec: true, content: 'through fd 3' })
      fs.closeSync(fd)
      expect((await child.next()).done).toBe(true)
      expect((await child.exit).code).toBe(0)
      mine.close()
    })

    test('a framed stream socketpair end as fd 3: framing works both ways', async () => {
      const [mine, theirs] = socketpair()
      const child = wrap(
        spawn(process.execPath, [fixture('peer.js'), JSON.stringify({ adopt: 3, mode: 'echo', count: 2 })], { stdio: ['ignore', 'pipe', 'pipe', theirs.fd] }),
      )
      theirs.close()
      await child.next()
      const { fd } = tempFile('framed')
      await mine.send('a', [fd])
      await mine.send('b', [fd, fd])
      const [a, b] = [await mine.receive(), await mine.receive()]
      expect([a.data.toString(), a.fds.length, b.data.toString(), b.fds.length]).toEqual(['a', 1, 'b', 2])
      for (const f of [...a.fds, ...b.fds]) {
        expect(identity(f.fd)).toEqual(identity(fd))
        f.close()
      }
      fs.closeSync(fd)
      const done = await child.next()
      expect(done).toMatchObject({ leaked: 0, adoptedOpen: false }) // fd 3 itself, adopted, is closed too
      expect((await child.exit).code).toBe(0)
      mine.close()
    })
  })

  describe('pipes', () => {
    test.runIf(process.platform === 'linux')('a pipe end read in one process carries what the other wrote, both ways', async () => {
      const { readEnd, writeEnd } = makePipe()
      const address = tmpPath()
      const server = await listen(address)
      const child = run('pipe-peer.js', [address])
      const socket = await server.accept()
      await child.next()

      await socket.send('read-end', [readEnd])
      const seen = await child.next()
      const mine = fs.fstatSync(readEnd)
      expect(seen).toMatchObject({ data: 'read-end', count: 1, stat: { kind: 'pipe', dev: mine.dev, ino: mine.ino, cloexec: true } })
      expect(seen.fstat).toEqual({ dev: mine.dev, ino: mine.ino, fifo: true })
      // This process writes; the child reads through its received end.
      fs.writeSync(writeEnd, 'written by the parent')
      await socket.send('go')
      expect(await child.next()).toEqual({ read: 'written by the parent' })

      // The child writes through a received write end; this process reads.
      await socket.send('write-end', [writeEnd])
      expect(await child.next()).toMatchObject({ wrote: true })
      const buf = Buffer.alloc(100)
      const n = fs.readSync(readEnd, buf, 0, 100, null)
      expect(buf.subarray(0, n).toString()).toBe('written by the child')

      const done = await child.next()
      expect(done.leaked).toBe(0)
      expect((await child.exit).code).toBe(0)
      fs.closeSync(readEnd)
      fs.closeSync(writeEnd)
      socket.close()
      await server.close()
    })
  })

  describe('volume', () => {
    test('10,000 messages with descriptors leak none in either process', async () => {
      const address = tmpPath()
      const server = await listen(address)
      const child = run('peer.js', [{ address, mode: 'echo' }])
      const socket = await server.accept()
      await child.next()
      const { fd } = tempFile('x')
      const want = identity(fd)
      const census = fdCensus()
      census.watch(fd)
      const N = 10_000
      let got = 0
      let wrong = 0
      let order = 0
      const receiving = (async () => {
        for await (const m of socket) {
          if (m.fds.length !== 1 || m.data.toString() !== `m${got}`) order++
          for (const f of m.fds) {
            const st = f.stat()
            if (st.dev !== want.dev || st.ino !== want.ino) wrong++
            f.close()
          }
          if (++got === N) break
        }
      })()
      for (let i = 0; i < N; i++) {
        const p = socket.send(`m${i}`, [fd])
        if (socket.pendingSends > 100) await p
      }
      await receiving
      expect({ got, wrong, order }).toEqual({ got: N, wrong: 0, order: 0 })
      expect(census.added()).toBe(0)
      socket.close()
      const done = await child.next()
      expect(done.received).toBe(N)
      expect(done.leaked).toBe(0)
      expect((await child.exit).code).toBe(0)
      fs.closeSync(fd)
      await server.close()
    })
  })
})
