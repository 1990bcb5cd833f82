// Soak and faults: what happens to the data and to every descriptor.
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { listen, socketpair } from '..'
import { MESSAGE_TYPE, cleanup, fdCensus, identity, root, sleep, tmpPath, until } from './helpers'

afterEach(cleanup)

describe('soak (short; npm run soak runs 1,000,000)', () => {
  test('100,000 messages with fds: none lost, none leaked in either process, RSS within 32 MiB', () => {
    const r = spawnSync(process.execPath, ['--expose-gc', path.join(root, 'scripts/soak.js'), '--messages', '100000', '--seconds', '60'], {
      encoding: 'utf8',
      timeout: 90_000,
    })
    const report = JSON.parse(r.stdout.trim().split('\n').pop()!)
    expect(report, `${r.stdout}\n${r.stderr}`).toMatchObject({ ok: true, messages: 100_000, lost: 0, wrongFile: 0, leakedReceiver: 0, leakedSender: 0 })
    expect(report.rssGrowthMiB).toBeLessThanOrEqual(32)
    expect(r.status).toBe(0)
  }, 100_000)
})

describe('faults', () => {
  test('the sender is SIGKILLed mid-message: the receiver reports it, and the fds that came are closed', async () => {
    const address = tmpPath()
    const server = await listen(address)
    // A child that sends the start of an 8 MiB frame with 2 fds, then waits to be killed.
    const script = `
      const f = require(${JSON.stringify(root)}); const fs = require('fs')
      f.connect(${JSON.stringify(address)}).then((s) => { s.send(Buffer.alloc(8 << 20), [0, 0]); process.stdout.write('sending\\n') })`
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    const socket = await server.accept()
    socket.pause()
    await new Promise((r) => child.stdout.once('data', r))
    await sleep(50)
    const census = fdCensus()
    census.targets.add('/dev/null') // what the half message carries: the child's stdin
    const socketFd = socket.fd
    child.kill('SIGKILL')
    await new Promise((r) => child.on('exit', r))
    const errors: string[] = []
    socket.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code!))
    const closed = new Promise<boolean>((r) => socket.once('close', r))
    socket.resume()
    expect(await closed).toBe(true) // hadError
    expect(errors).toEqual(['ERR_FDPASS_PROTOCOL'])
    expect({ held: census.added(), socketOpen: census.unchanged(socketFd) }).toEqual({ held: 0, socketOpen: false }) // nothing held for the half message
    await server.close()
  })

  test('the receiver is SIGKILLed: queued sends reject, and their duplicated fds are closed', async () => {
    const address = tmpPath()
    const server = await listen(address)
    const child = spawn(
      process.execPath,
      [
        '-e',
        `require(${JSON.stringify(root)}).connect(${JSON.stringify(address)}).then((s) => { s.pause(); setInterval(() => {}, 1000); process.stdout.write('ready\\n') })`,
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    )
    const socket = await server.accept()
    await new Promise((r) => child.stdout.once('data', r))
    const fd = fs.openSync('/dev/null', 'r')
    const census = fdCensus()
    census.watch(fd)
    const socketFd = socket.fd
    const sends = Array.from({ length: 50 }, () => socket.send(Buffer.alloc(256 << 10), [fd, fd]))
    await sleep(50)
    expect(socket.pendingSends).toBeGreaterThan(0)
    expect(census.added()).toBeGreaterThan(0) // duplicates held for queued sends
    child.kill('SIGKILL')
    const results = await Promise.allSettled(sends)
    const reasons = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason.code)
    expect(reasons.length).toBeGreaterThan(0)
    for (const code of reasons) expect(['EPIPE', 'ECONNRESET', 'ERR_FDPASS_SOCKET_CLOSED']).toContain(code)
    socket.close()
    await sleep(20)
    expect({ held: census.added(), socketOpen: census.unchanged(socketFd) }).toEqual({ held: 0, socketOpen: false })
    fs.closeSync(fd)
    await server.close()
  })

  test('an fd closed right after send() still arrives as the file it was, even when queued', async () => {
    const [a, b] = socketpair()
    b.pause()
    const file = tmpPath('file')
    fs.writeFileSync(file, 'the original')
    const fd = fs.openSync(file, 'r')
    const id = identity(fd)
    const big = a.send(Buffer.alloc(4 << 20)) // fill the buffer: the next send queues
    const sent = a.send('with the file', [fd])
    expect(a.pendingSends).toBeGreaterThan(0)
    fs.closeSync(fd)
    const reuse = fs.openSync('/dev/null', 'r') // likely takes the same number
    b.resume()
    await Promise.all([big, sent])
    await b.receive()
    const m = await b.receive()
    expect(identity(m.fds[0].fd)).toEqual(id)
    m.fds[0].close()
    fs.closeSync(reuse)
    a.close()
    b.close()
  })

  test('a storm of signals (EINTR) while 20,000 messages flow loses nothing', async () => {
    const [a, b] = socketpair({ type: MESSAGE_TYPE })
    let signals = 0
    const onSignal = () => signals++
    process.on('SIGUSR2', onSignal)
    const storm = setInterval(() => process.kill(process.pid, 'SIGUSR2'), 1)
    const N = 20_000
    let got = 0
    const done = new Promise<void>((r) =>
      b.on('message', (m) => {
        for (const f of m.fds) f.close()
        if (++got === N) r()
      }),
    )
    let raised = 0
    for (let i = 0; i < N; i++) {
      // Signals from inside the send loop too: the interval alone may not
      // fire while the loop runs without yielding.
      if (i % 500 === 0) {
        process.kill(process.pid, 'SIGUSR2')
        raised++
      }
      const p = a.send('m', [0])
      if (a.pendingSends > 64) await p
    }
    await done
    clearInterval(storm)
    // Signals are handled on the event loop: wait until at least one was.
    await until(() => signals > 0, 'a SIGUSR2 to be handled')
    process.off('SIGUSR2', onSignal)
    expect(got).toBe(N)
    expect(raised).toBe(40)
    a.close()
    b.close()
  })
})
