// Zero-downtime restarts (fdpass/handoff): generations of a real server
// process hand their listeners (HTTP on TCP 127.0.0.1, HTTP on a Unix
// socket, UDP) over under load, and survive crashes, kills and races.
import * as dgram from 'node:dgram'
import { once } from 'node:events'
import * as fs from 'node:fs'
import * as http from 'node:http'
import { afterEach, describe, expect, test } from 'vitest'
import { storeName, takeover } from '../handoff'
import { cleanup, nextWhere, run, sleep, tmpPath, type Child } from './helpers'

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

const ready = (c: Child) => nextWhere(c, (l) => l.ready || l.error, 'ready')

function get(port: number, agent: http.Agent | false, path = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, agent, path }, (res) => {
        let body = ''
        res.on('data', (d) => (body += d))
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))))
      })
      .on('error', reject)
  })
}

function getUnix(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path: '/', agent: false }, (res) => {
        let body = ''
        res.on('data', (d) => (body += d))
        res.on('end', () => resolve(body))
      })
      .on('error', reject)
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

/** Closed-loop load: `clients` concurrent request loops until stopped; each response body is the pid that served it. */
function load(port: number, clients: number, keepAlive: boolean) {
  const agent = keepAlive ? new http.Agent({ keepAlive: true, maxSockets: clients }) : false
  const stats = { ok: 0, failed: 0, errors: [] as string[], pids: new Set<string>() }
  let running = true
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      try {
        stats.pids.add(await get(port, agent))
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
      if (agent) agent.destroy()
    },
  }
}

/** The surviving generation's own count of open descriptors (it answers /fds). */
async function fdsOf(port: number): Promise<number> {
  return Number(await get(port, false, '/fds'))
}

describe('handoff', () => {
  describe('under load', () => {
    for (const keepAlive of [true, false]) {
      test(`three handoffs under ${keepAlive ? 'keep-alive' : 'non-keep-alive'} load from 8 clients: 0 failed requests; TCP, Unix and UDP listeners move together`, async () => {
        const control = tmpPath()
        const unix = tmpPath()
        const first = generation({ control, unix })
        const r0 = await ready(first)
        expect(r0).toMatchObject({ ready: true, inherited: false, pid: first.proc.pid })
        const { port, udpPort } = r0
        expect(port).toBeGreaterThan(0) // port 0 at the first start: a random port, then shared
        const traffic = load(port, 8, keepAlive)
        const pids = [r0.pid]
        for (let i = 0; i < 3; i++) {
          // Let every generation serve a while under load.
          const okBefore = traffic.stats.ok
          while (traffic.stats.ok < okBefore + 150) await sleep(10)
          const next = generation({ control, unix })
          const took = await nextWhere(next, (l) => l.took)
          expect(took).toMatchObject({ inherited: true, previousPid: pids[pids.length - 1], port })
          const h = await nextWhere(next, (l) => l.handoff)
          expect(h.handoff).toMatchObject({ role: 'successor', outcome: 'completed', peerPid: pids[pids.length - 1] })
          expect(h.handoff.reason).toBeUndefined()
          expect(await ready(next)).toMatchObject({ ready: true, port, udpPort, inherited: true })
          pids.push(next.proc.pid!)
        }
        const okBefore = traffic.stats.ok
        while (traffic.stats.ok < okBefore + 150) await sleep(10)
        await traffic.stop()
        expect(traffic.stats.errors).toEqual([])
        expect(traffic.stats.failed).toBe(0)
        expect(traffic.stats.ok).toBeGreaterThanOrEqual(600)
        // Several generations answered (by pid).
        expect([...traffic.stats.pids].every((p) => pids.includes(Number(p)))).toBe(true)
        expect(traffic.stats.pids.size).toBeGreaterThanOrEqual(3)
        const newest = String(pids[pids.length - 1])
        expect(await get(port, false)).toBe(newest)
        expect(await getUnix(unix)).toBe(newest)
        expect(await udpAsk(udpPort)).toBe(newest)
        // Every previous generation drained and exited by itself, having logged the handoff.
        for (const [i, c] of children.slice(0, -1).entries()) {
          expect(await nextWhere(c, (l) => l.handoff)).toMatchObject({ handoff: { role: 'predecessor', outcome: 'completed', peerPid: pids[i + 1] } })
          expect(await c.exit).toEqual({ code: 0, signal: null })
        }
      })
    }
  })

  describe('failures', () => {
    test('a new generation that crashes (exit 1) before ready: the old one keeps serving, logs the abort, leaks nothing', async () => {
      const control = tmpPath()
      const first = generation({ control, log: true })
      const { port, pid } = await ready(first)
      const fdsBefore = await fdsOf(port)
      const traffic = load(port, 4, true)
      for (let i = 0; i < 3; i++) {
        const crashing = generation({ control, crashBeforeReady: true })
        expect(await nextWhere(crashing, (l) => l.took)).toMatchObject({ inherited: true, previousPid: pid })
        expect((await crashing.exit).code).toBe(1)
        const log = await nextWhere(first, (l) => l.log?.includes('aborted'), 'the abort in the log')
        expect(log.log).toMatch(new RegExp(`handoff to pid ${crashing.proc.pid} aborted .*still serving`))
        expect(await nextWhere(first, (l) => l.handoff)).toMatchObject({ handoff: { role: 'predecessor', outcome: 'aborted', peerPid: crashing.proc.pid } })
      }
      await traffic.stop()
      expect(traffic.stats.failed).toBe(0)
      expect([...traffic.stats.pids]).toEqual([String(pid)])
      expect(await get(port, false)).toBe(String(pid))
      // No descriptor leaked in the surviving generation across the aborted handoffs.
      expect(await fdsOf(port)).toBe(fdsBefore)
      // And a later successor still takes over.
      const next = generation({ control })
      expect(await ready(next)).toMatchObject({ ready: true, port, inherited: true })
      expect(await get(port, false)).toBe(String(next.proc.pid))
      expect((await first.exit).code).toBe(0)
    })

    test('a new generation SIGKILLed after it took the listeners, before ready: the old one serves on, with the same fd count', async () => {
      const control = tmpPath()
      const first = generation({ control })
      const { port, pid } = await ready(first)
      const fdsBefore = await fdsOf(port)
      const doomed = generation({ control, delayReadyMs: 10_000 })
      await nextWhere(doomed, (l) => l.took)
      doomed.proc.kill('SIGKILL')
      expect((await doomed.exit).signal).toBe('SIGKILL')
      expect(await nextWhere(first, (l) => l.handoff)).toMatchObject({ handoff: { role: 'predecessor', outcome: 'aborted' } })
      expect(await get(port, false)).toBe(String(pid))
      expect(await fdsOf(port)).toBe(fdsBefore)
    })

    test('the old generation SIGKILLed while the new one is starting (it has the listeners, not yet ready): the new one serves', async () => {
      const control = tmpPath()
      const unix = tmpPath()
      const first = generation({ control, unix })
      const { port, udpPort } = await ready(first)
      const next = generation({ control, unix, delayReadyMs: 200 })
      expect(await nextWhere(next, (l) => l.took)).toMatchObject({ inherited: true, port })
      first.proc.kill('SIGKILL')
      expect((await first.exit).signal).toBe('SIGKILL')
      const h = await nextWhere(next, (l) => l.handoff)
      // The release never came: the successor says why, and serves on the sockets it has.
      expect(h.handoff).toMatchObject({ role: 'successor', outcome: 'completed' })
      expect(h.handoff.reason).toEqual(expect.any(String))
      expect(await ready(next)).toMatchObject({ ready: true, port, udpPort })
      const pid = String(next.proc.pid)
      expect(await get(port, false)).toBe(pid)
      expect(await getUnix(unix)).toBe(pid)
      expect(await udpAsk(udpPort)).toBe(pid)
      // It serves the control socket too: a further generation takes over from it.
      const third = generation({ control, unix })
      expect(await nextWhere(third, (l) => l.took)).toMatchObject({ previousPid: next.proc.pid, port })
      expect(await ready(third)).toMatchObject({ ready: true, port })
    })

    test('two new generations at once: exactly one wins, the other rejects with ERR_FDPASS_HANDOFF_BUSY', async () => {
      const control = tmpPath()
      const first = generation({ control })
      const { port, pid } = await ready(first)
      const a = generation({ control, delayReadyMs: 300 })
      const b = generation({ control, delayReadyMs: 300 })
      const [ra, rb] = await Promise.all([nextWhere(a, (l) => l.took || l.error), nextWhere(b, (l) => l.took || l.error)])
      const outcomes = [ra, rb].map((r) => (r.error ? 'busy' : 'won'))
      expect(outcomes.sort()).toEqual(['busy', 'won'])
      const loser = ra.error ? a : b
      const winner = ra.error ? b : a
      expect([ra, rb].find((r) => r.error)).toMatchObject({ error: 'ERR_FDPASS_HANDOFF_BUSY' })
      expect(await loser.exit).toEqual({ code: 0, signal: null })
      expect(await ready(winner)).toMatchObject({ ready: true, port })
      expect(await get(port, false)).toBe(String(winner.proc.pid))
      expect(await nextWhere(first, (l) => l.handoff)).toMatchObject({ handoff: { role: 'predecessor', outcome: 'completed', peerPid: winner.proc.pid } })
      expect((await first.exit).code).toBe(0)
      expect(pid).toBe(first.proc.pid)
    })

    test('a uid the running generation does not allow is refused (ERR_FDPASS_HANDOFF_REFUSED), and it serves on', async () => {
      const control = tmpPath()
      const first = generation({ control, allowedUids: [process.getuid!() + 4242] })
      const { pid, port } = await ready(first)
      const intruder = generation({ control })
      expect(await nextWhere(intruder, (l) => l.error)).toMatchObject({ error: 'ERR_FDPASS_HANDOFF_REFUSED' })
      expect(await get(port, false)).toBe(String(pid))
    })
  })
  describe('with a supervisor', () => {
    test('close() removes the control socket file it created', async () => {
      const control = tmpPath()
      const generation = await takeover({ control, listeners: { http: { tcp: { host: '127.0.0.1', port: 0 } } }, log: false })
      expect(fs.existsSync(control)).toBe(true)
      await generation.close()
      expect(fs.existsSync(control)).toBe(false)
    })

    test('store names are valid FDNAMEs (printable ASCII without ":", at most 255 bytes) and differ per listener', () => {
      const keys = [
        'tcp:0.0.0.0:8080',
        'tcp:::1:8080',
        'tcp:::18:080',
        'udp:0.0.0.0:8080',
        'unix:/run/app/http.sock',
        'unix:/run/app/http_2F.sock',
        `unix:/${'x'.repeat(300)}`,
        'systemd:web',
      ]
      const names = keys.map(storeName)
      expect(names[0]).toBe('fdpass.tcp.0.0.0.0.8080')
      expect(names[4]).toBe('fdpass.unix._2Frun_2Fapp_2Fhttp.sock')
      for (const n of names) expect(n).toMatch(/^[A-Za-z0-9_.-]{1,255}$/)
      expect(new Set(names).size).toBe(keys.length)
    })
  })
})
