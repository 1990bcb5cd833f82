// Descriptors passed between two real processes, on every socket type and
// address kind; the received descriptor is the same open file.
import * as fs from 'node:fs'
import { spawn } from 'node:child_process'
import { afterEach, describe, expect, test } from 'vitest'
import { bind, listen, runtime, socketpair, type Address, type SocketType } from '..'
import { MESSAGE_TYPE, cleanup, identity, openFdCount, run, tmpPath, wrap, fixture } from './helpers'

afterEach(cleanup)

function tempFile(content: string): number {
  const p = tmpPath('file')
  fs.writeFileSync(p, content)
  return fs.openSync(p, 'r+')
}

const cases: Array<{ name: string; type: SocketType; raw?: boolean; abstract?: boolean }> = [
  { name: 'stream, framed, path', type: 'stream' },
  { name: 'stream, framed, abstract', type: 'stream', abstract: true },
  { name: 'stream, raw, path', type: 'stream', raw: true },
  { name: 'seqpacket, path', type: 'seqpacket' },
  { name: 'seqpacket, abstract', type: 'seqpacket', abstract: true },
]

describe('between two processes', () => {
  for (const c of cases) {
    const supported = (c.type !== 'seqpacket' || runtime.supportsSeqpacket) && (!c.abstract || runtime.supportsAbstract)
    test.runIf(supported)(`${c.name}${supported ? '' : ' (skipped: not on ' + process.platform + ')'}: a file goes to the child and comes back as the same file`, async () => {
      const address: Address = c.abstract ? { abstract: `fdpass-test-${process.pid}-${Math.random()}` } : tmpPath()
      const server = await listen(address, { type: c.type, raw: c.raw })
      const child = run('peer.js', [{ address, type: c.type, raw: c.raw, mode: 'echo' }])
      const socket = await server.accept()
      const ready = await child.next()
      expect(socket.peerCredentials()).toEqual({ pid: ready.pid, uid: ready.uid, gid: ready.gid })

      const fd = tempFile('original content')
      await socket.send('take this', [fd])
      const back = await socket.receive()
      expect(back.data.toString()).toBe('take this')
      expect(back.fds).toHaveLength(1)
      const received = back.fds[0]
      expect(identity(received.fd)).toEqual(identity(fd))
      // Write through the received descriptor, read through the original.
      fs.writeSync(received.fd, 'CHANGED', 0, 'utf8', 0)
      const buf = Buffer.alloc(7)
      fs.readSync(fd, buf, 0, 7, 0)
      expect(buf.toString()).toBe('CHANGED')

      received.close()
      fs.closeSync(fd)
      socket.close()
      const done = await child.next()
      expect(done).toMatchObject({ done: true, received: 1 })
      expect(done.fdsAfter).toBe(done.fdsBefore)
      expect((await child.exit).code).toBe(0)
      await server.close()
    })
  }

  test('dgram: sendTo a bound child, which answers from its own address', async () => {
    const address = tmpPath()
    const childAddress = tmpPath()
    const socket = await bind(address)
    const child = run('peer.js', [{ address, bind: childAddress, type: 'dgram', mode: 'echo', count: 1 }])
    await child.next()
    const hello = await socket.receive()
    expect(hello.data.toString()).toBe('hello')
    expect(hello.from).toBe(childAddress)
    const fd = tempFile('dgram file')
    await socket.sendTo(childAddress, 'with a file', [fd])
    const back = await socket.receive()
    expect(back.from).toBe(childAddress)
    expect(identity(back.fds[0].fd)).toEqual(identity(fd))
    back.fds[0].close()
    fs.closeSync(fd)
    expect((await child.next()).done).toBe(true)
    socket.close()
  })

  test('a socketpair end given to a child as fd 3 is adopted there', async () => {
    const [mine, theirs] = socketpair({ type: MESSAGE_TYPE })
    const proc = spawn(process.execPath, [fixture('peer.js'), JSON.stringify({ adopt: 3, mode: 'report', count: 1 })], {
      stdio: ['ignore', 'pipe', 'pipe', theirs.fd],
    })
    theirs.close()
    const child = wrap(proc)
    await child.next()
    const fd = tempFile('through fd 3')
    await mine.send('one', [fd])
    const report = await child.next()
    expect(report.data).toBe('one')
    expect(report.fds[0]).toMatchObject({ ...identity(fd), kind: 'file', cloexec: true, content: 'through fd 3' })
    fs.closeSync(fd)
    expect((await child.next()).done).toBe(true)
    mine.close()
  })

  test('10,000 messages with descriptors leak none in either process', async () => {
    const address = tmpPath()
    const server = await listen(address)
    const child = run('peer.js', [{ address, mode: 'echo' }])
    const socket = await server.accept()
    await child.next()
    const fd = tempFile('x')
    const before = openFdCount()
    const N = 10_000
    let got = 0
    const receiving = (async () => {
      for await (const m of socket) {
        expect(m.fds).toHaveLength(1)
        for (const f of m.fds) f.close()
        if (++got === N) break
      }
    })()
    for (let i = 0; i < N; i++) {
      const p = socket.send(`m${i}`, [fd])
      if (socket.pendingSends > 100) await p
    }
    await receiving
    expect(got).toBe(N)
    expect(openFdCount()).toBe(before)
    socket.close()
    const done = await child.next()
    expect(done.received).toBe(N)
    expect(done.fdsAfter).toBe(done.fdsBefore)
    fs.closeSync(fd)
    await server.close()
  })
})
