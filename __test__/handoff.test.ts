// Zero-downtime restarts: generations hand their listeners over under load.
import * as dgram from 'node:dgram'
import { once } from 'node:events'
import * as http from 'node:http'
import { afterEach, describe, expect, test } from 'vitest'
import { cleanup, run, sleep, tmpPath, type Child } from './helpers'

const children: Child[] = []
afterEach(() => {
  for (const c of children.splice(0)) c.proc.kill('SIGKILL')
  cleanup()
})

function generation(config: Record<string, unknown>): Child {
  const c = run('handoff-server.js', [config])
  children.push(c)
  return c
}

function get(port: number, agent: http.Agent | false, path = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, agent, path }, (res) => {
        let body = ''
        res.on('data', (d) => (body += d))
        res.on('end', () => resolve(body))
      })
      .on('error', reject)
  })
}

function getUnix(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath, path: '/', agent: false }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve(body))
    }).on('error', reject)
  })
}

async function udpAsk(port: number): Promise<string> {
  const s = dgram.createSocket('udp4')
  const reply = once(s, 'message')
  s.send('who', port, '127.0.0.1')
  const [msg] = await reply
  s.close()
  return msg.toString()
}

/** Closed-loop load: `clients` concurrent request loops until stopped. */
function load(port: number, clients: number) {
  const keepAlive = new http.Agent({ keepAlive: true, maxSockets: clients })
  const stats = { ok: 0, failed: 0, errors: [] as string[], pids: new Set<string>() }
  let running = true
  const loops = Array.from({ length: clients }, async (_, i) => {
    while (running) {
      try {
        stats.pids.add(await get(port, i % 2 ? keepAlive : false))
        stats.ok++
      } catch (e) {
        stats.failed++
        stats.errors.push((e as NodeJS.ErrnoException).code ?? String(e))
      }
    }
  })
  return {
    stats,
    async stop() {
      running = false
      await Promise.all(loops)
      keepAlive.destroy()
    },
  }
}

describe('handoff', () => {
  test('three handoffs under load: 0 failed requests, TCP, Unix and UDP listeners move together', async () => {
    const control = tmpPath()
    const unix = tmpPath()
    const first = generation({ control, unix })
    const ready = await first.next()
    expect(ready).toMatchObject({ ready: true, inherited: false })
    const { port, udpPort } = ready
    const traffic = load(port, 8)
    const pids = [ready.pid]
    for (let i = 0; i < 3; i++) {
      await sleep(150)
      const next = generation({ control, unix })
      const r = await next.next()
      expect(r.handoff).toMatchObject({ role: 'successor', outcome: 'completed', peerPid: pids[pids.length - 1] })
      expect(r.handoff.durationMs).toBeGreaterThanOrEqual(0)
      expect(await next.next()).toMatchObject({ ready: true, port, udpPort, inherited: true })
      pids.push(next.proc.pid!)
    }
    await sleep(150)
    await traffic.stop()
    expect(traffic.stats.errors).toEqual([])
    expect(traffic.stats.failed).toBe(0)
    expect(traffic.stats.ok).toBeGreaterThan(100)
    expect(traffic.stats.pids.size).toBeGreaterThanOrEqual(3)
    const newest = String(pids[pids.length - 1])
    expect(await get(port, false)).toBe(newest)
    expect(await getUnix(unix)).toBe(newest)
    expect(await udpAsk(udpPort)).toBe(newest)
    // Every previous generation drained and exited by itself.
    for (const c of children.slice(0, -1)) expect((await c.exit).code).toBe(0)
  })

  test('a new generation that crashes before ready leaves the old one serving, leaking nothing', async () => {
    const control = tmpPath()
    const first = generation({ control })
    const { port, pid } = await first.next()
    const fdsBefore = Number(await get(port, false, '/fds'))
    const crashing = generation({ control, crashBeforeReady: true })
    expect((await crashing.exit).code).toBe(1)
    expect(await first.next()).toMatchObject({ handoff: { role: 'predecessor', outcome: 'aborted' } })
    expect(await get(port, false)).toBe(String(pid))
    expect(Number(await get(port, false, '/fds'))).toBe(fdsBefore)
    // And a later successor still takes over.
    const next = generation({ control })
    await next.next()
    expect(await next.next()).toMatchObject({ ready: true, port })
  })

  test('two new generations at once: exactly one wins, the other gets ERR_FDPASS_HANDOFF_BUSY', async () => {
    const control = tmpPath()
    const first = generation({ control })
    const { port } = await first.next()
    const a = generation({ control, delayReadyMs: 300 })
    const b = generation({ control, delayReadyMs: 300 })
    const [ra, rb] = await Promise.all([a.next(), b.next()])
    const outcomes = [ra, rb].map((r) => (r.error ? 'busy' : 'won'))
    expect(outcomes.sort()).toEqual(['busy', 'won'])
    expect([ra, rb].find((r) => r.error)).toMatchObject({ error: 'ERR_FDPASS_HANDOFF_BUSY' })
    const winner = ra.error ? b : a
    expect(await winner.next()).toMatchObject({ ready: true, port })
  })

  test('the old generation SIGKILLed mid-handoff: the new one has the sockets and serves', async () => {
    const control = tmpPath()
    const first = generation({ control })
    const { port } = await first.next()
    const next = generation({ control, delayReadyMs: 300 })
    await sleep(150) // it has the listeners and waits before ready
    first.proc.kill('SIGKILL')
    const r = await next.next()
    expect(r.handoff).toMatchObject({ role: 'successor' })
    expect(await next.next()).toMatchObject({ ready: true, port })
    expect(await get(port, false)).toBe(String(next.proc.pid))
  })

  test('a uid the running generation does not allow is refused', async () => {
    const control = tmpPath()
    const first = generation({ control, allowedUids: [process.getuid!() + 4242] })
    const { pid } = await first.next()
    const intruder = generation({ control })
    expect(await intruder.next()).toMatchObject({ error: 'ERR_FDPASS_HANDOFF_REFUSED' })
    expect(pid).toBeGreaterThan(0)
  })
})
