#!/usr/bin/env node
// Restart strategies under the same HTTP load, side by side:
//   (a) naive stop-then-start, (b) SO_REUSEPORT overlap, (c) Node's cluster
//   replacing its worker, (d) fdpass handoff draining established
//   connections (fdpass-drain), (e) fdpass handoff migrating them (fdpass).
// Each runs R restarts under closed-loop load (C concurrent clients), once
// with keep-alive and once with a new connection per request, and reports
// failed requests by cause, latency inside the restart windows, the load
// generator's dials beyond each client's first per restart (keep-alive),
// and the fd count of each fdpass generation. Then:
//   - WebSockets: W ws clients each send a sequence number every 100 ms
//     through R_ws restarts (fdpass-drain and fdpass): disconnects, lost and
//     duplicated messages, echo latency in and out of restart windows;
//   - the cost of migrating 1,000 idle connections: handoff duration at
//     p50 with and without them.
//
// Then the crash rows: under the same load, kill -9 the serving process R
// times: under `fdpass run`, which keeps the listeners in its fd store and
// starts a new generation on them at once (fdpass-run), and a plain restart
// loop of the same server (restart-loop: what systemd Restart=always does
// without an fd store, here with no RestartSec delay). Refused connections,
// failed requests, and the time from the kill to the first request served again.
//
//   node bench/restarts/run.js [--quick] [--restarts N] [--clients C] [--strategies a,b]
//        [--ws-clients W] [--ws-restarts N] [--idle N] [--handoffs N] [--only http,ws,cost,crash]
//        [--crashes N] [--crash-strategies fdpass-run,restart-loop]
'use strict'
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

const { httpLoad, options, pct, windowLatencies } = require('./common')

const { flag, quick } = options(process.argv.slice(2))
const RESTARTS = Number(flag('restarts', quick ? 10 : 100))
const CLIENTS = Number(flag('clients', 16))
const STRATEGIES = flag('strategies', 'naive,reuseport,cluster,fdpass-drain,fdpass').split(',').filter(Boolean)
const WS_CLIENTS = Number(flag('ws-clients', quick ? 200 : 1000))
const WS_RESTARTS = Number(flag('ws-restarts', quick ? 5 : 100))
const IDLE = Number(flag('idle', 1000))
const HANDOFFS = Number(flag('handoffs', quick ? 5 : 20))
const ONLY = flag('only', 'http,ws,cost,crash').split(',')
const CRASHES = Number(flag('crashes', quick ? 10 : 100))
const CRASH_STRATEGIES = flag('crash-strategies', 'fdpass-run,restart-loop').split(',').filter(Boolean)
const BIN = path.join(__dirname, '../../bin/fdpass.js')
const isFdpass = (strategy) => strategy.startsWith('fdpass')
const SETTLE_MS = 100 // steady state between restarts

function spawnServer(strategy, port, control, mode = 'http') {
  const server = [path.join(__dirname, 'server.js'), strategy === 'fdpass-run' ? 'fdpass' : strategy, String(port), control, mode]
  // fdpass-run: the server under the supervisor, which passes its stdout through. Each kill is
  // its own crash (--restart-window shorter than the time between kills): no backoff.
  const argv =
    strategy === 'fdpass-run'
      ? [BIN, 'run', '--quiet', '--control', control, '--restart-window', '20', '--restart-limit', '2', '--', process.execPath, ...server]
      : server
  const proc = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] })
  const waiters = []
  const lines = []
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    const msg = JSON.parse(line)
    lines.push(msg)
    const i = waiters.findIndex((w) => w.match(msg))
    if (i >= 0) waiters.splice(i, 1)[0].resolve(msg)
  })
  const exited = new Promise((resolve) => proc.on('exit', resolve))
  return { proc, exited, lines, wait: (match) => new Promise((resolve) => waiters.push({ match, resolve })) }
}

/** The serving generation's open fd count (it answers GET /fds; the probe's own connection is one of them). */
function fdsOf(port) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/fds', agent: false }, (res) => {
        let body = ''
        res.on('data', (d) => (body += d))
        res.on('end', () => resolve(Number(body)))
      })
      .on('error', reject)
  })
}

/** One restart of `strategy`: returns the new current process. */
async function restart(strategy, current, primary, port, control, mode) {
  if (strategy === 'cluster') {
    const replaced = primary.wait((m) => m.replaced)
    primary.proc.kill('SIGHUP')
    await replaced
    return current
  }
  if (strategy === 'naive') {
    current.proc.kill('SIGTERM')
    await current.exited
    const next = spawnServer(strategy, port, control, mode)
    await next.wait((m) => m.ready)
    return next
  }
  const old = current
  const next = spawnServer(strategy, port, control, mode)
  await next.wait((m) => m.ready)
  if (strategy === 'reuseport') old.proc.kill('SIGTERM')
  await old.exited
  return next
}

/** SIGTERM to the serving generation and to `primary` (cluster: the primary; the others: the first generation, which is the serving one when none followed), then remove the control socket. */
async function stopServing(current, primary, control) {
  current.proc.kill('SIGTERM')
  primary.proc.kill('SIGTERM')
  await Promise.all([current.exited, primary.exited])
  fs.rmSync(control, { force: true })
}

/** Closed-loop load of CLIENTS clients. */
const loadGenerator = (port, keepAlive) => httpLoad(port, { keepAlive, clients: CLIENTS })

async function runOne(strategy, keepAlive, port) {
  const control = path.join(os.tmpdir(), `fdpass-bench-restarts-${process.pid}-${port}.sock`)
  fs.rmSync(control, { force: true })
  let current = spawnServer(strategy, port, control)
  await current.wait((m) => m.ready)
  const primary = current // cluster: the primary stays; others: each generation
  const load = loadGenerator(port, keepAlive)
  const windows = []
  const fds = []
  const started = performance.now()
  for (let r = 0; r < RESTARTS; r++) {
    await new Promise((res) => setTimeout(res, SETTLE_MS))
    const t0 = performance.now()
    current = await restart(strategy, current, primary, port, control)
    windows.push([t0, performance.now()])
    if (isFdpass(strategy)) fds.push(await fdsOf(port))
  }
  await new Promise((res) => setTimeout(res, SETTLE_MS))
  const seconds = (performance.now() - started) / 1000
  await load.stop()
  await stopServing(current, primary, control)

  return {
    strategy,
    keepAlive,
    restarts: RESTARTS,
    // Keep-alive: dials beyond each client's first, per restart (0 when no connection was closed).
    redialsPerRestart: keepAlive ? (load.dials - CLIENTS) / RESTARTS : null,
    // The serving generation's fd count after each restart (fdpass): flat when nothing leaks.
    generationFds: fds.length ? { first: fds[0], last: fds[fds.length - 1], min: Math.min(...fds), max: Math.max(...fds) } : null,
    ...load.summary(),
    rate: Math.round(load.samples.length / seconds),
    // Over the requests that succeeded.
    ...windowLatencies(
      load.samples.filter((s) => s[2]),
      windows,
    ),
  }
}

/**
 * WebSocket clients through restarts: each sends `seq sentAt` every 100 ms
 * and checks the echo's sequence number. A client whose connection closes
 * counts a disconnect, counts its unanswered messages as lost, and dials
 * again.
 */
async function runWebSockets(strategy, port) {
  const { WebSocket } = require('ws')
  const control = path.join(os.tmpdir(), `fdpass-bench-restarts-${process.pid}-${port}.sock`)
  fs.rmSync(control, { force: true })
  let current = spawnServer(strategy, port, control, 'ws')
  await current.wait((m) => m.ready)
  const primary = current
  // unsent: 100 ms ticks a client could not send on because it was (re)connecting.
  const stats = { disconnects: 0, lost: 0, duplicated: 0, received: 0, sent: 0, unsent: 0 }
  const samples = [] // [sentAt, latencyMs]
  let running = true
  const clients = []
  const client = () => {
    const c = { ws: null, sent: 0, expected: 0, timer: null }
    const dial = () => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false })
      c.ws = ws
      ws.on('message', (data) => {
        const [seq, sentAt] = String(data).split(' ').map(Number)
        const now = performance.now()
        if (seq < c.expected) stats.duplicated++
        else {
          stats.lost += seq - c.expected
          c.expected = seq + 1
        }
        stats.received++
        samples.push([sentAt, now - sentAt])
      })
      ws.on('error', () => {})
      ws.on('close', () => {
        if (!running) return
        stats.disconnects++
        stats.lost += c.sent - c.expected // sent, never echoed
        c.expected = c.sent
        setTimeout(dial, 50)
      })
    }
    dial()
    c.timer = setInterval(() => {
      if (c.ws.readyState !== WebSocket.OPEN) {
        stats.unsent++
        return
      }
      c.ws.send(`${c.sent++} ${performance.now()}`)
      stats.sent++
    }, 100)
    clients.push(c)
  }
  for (let i = 0; i < WS_CLIENTS; i++) {
    client()
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 50))
  }
  await new Promise((r) => setTimeout(r, 1000))
  const windows = []
  const startedAt = performance.now()
  for (let r = 0; r < WS_RESTARTS; r++) {
    const t0 = performance.now()
    current = await restart(strategy, current, primary, port, control, 'ws')
    windows.push([t0, performance.now()])
    await new Promise((res) => setTimeout(res, 500))
  }
  const seconds = (performance.now() - startedAt) / 1000
  for (const c of clients) clearInterval(c.timer)
  await new Promise((r) => setTimeout(r, 1000)) // the last echoes
  running = false
  for (const c of clients) {
    stats.lost += c.sent - c.expected
    c.ws.terminate()
  }
  await stopServing(current, primary, control)
  return {
    strategy,
    clients: WS_CLIENTS,
    restarts: WS_RESTARTS,
    ...stats,
    rate: Math.round(stats.received / seconds),
    ...windowLatencies(samples, windows),
  }
}

/** Handoff duration (new generation started to old one exited) with `idle` idle keep-alive connections to move. */
async function runMigrationCost(idle, port) {
  const net = require('node:net')
  const control = path.join(os.tmpdir(), `fdpass-bench-restarts-${process.pid}-${port}.sock`)
  fs.rmSync(control, { force: true })
  let current = spawnServer('fdpass', port, control)
  await current.wait((m) => m.ready)
  const sockets = []
  let closed = 0
  for (let i = 0; i < idle; i += 100) {
    await Promise.all(
      Array.from(
        { length: Math.min(100, idle - i) },
        () =>
          new Promise((resolve, reject) => {
            const s = net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: b\r\n\r\n'))
            s.once('data', () => resolve())
            s.on('error', reject)
            s.on('close', () => closed++)
            sockets.push(s)
          }),
      ),
    )
  }
  const durations = []
  const migrations = []
  for (let h = 0; h < HANDOFFS; h++) {
    const old = current
    const t0 = performance.now()
    current = spawnServer('fdpass', port, control)
    await current.wait((m) => m.ready)
    await old.exited
    durations.push(performance.now() - t0)
    const m = old.lines.find((l) => l.migration)
    if (m) migrations.push(m.migration.durationMs)
  }
  const fds = await fdsOf(port)
  for (const s of sockets) s.destroy()
  current.proc.kill('SIGTERM')
  await current.exited
  fs.rmSync(control, { force: true })
  const sorted = (a) => [...a].sort((x, y) => x - y)
  return {
    idle,
    handoffs: HANDOFFS,
    handoffP50: pct(sorted(durations), 0.5),
    migrationP50: pct(sorted(migrations), 0.5),
    closedByServer: closed - idle,
    lastGenerationFds: fds,
  }
}

/** kill -9 the serving process CRASHES times under load; the next one serves (fdpass-run: the supervisor restarts it; restart-loop: we do). */
async function runCrashes(strategy, keepAlive, port) {
  const control = path.join(os.tmpdir(), `fdpass-bench-crashes-${process.pid}-${port}.sock`)
  fs.rmSync(control, { force: true })
  let current = spawnServer(strategy === 'fdpass-run' ? 'fdpass-run' : 'naive', port, control)
  let serving = await current.wait((m) => m.ready)
  const load = loadGenerator(port, keepAlive)
  const kills = []
  for (let r = 0; r < CRASHES; r++) {
    await new Promise((res) => setTimeout(res, SETTLE_MS))
    const t0 = performance.now()
    kills.push(t0)
    if (strategy === 'fdpass-run') {
      const victim = serving.pid
      const next = current.wait((m) => m.ready && m.pid !== victim)
      process.kill(victim, 'SIGKILL')
      serving = await next
    } else {
      current.proc.kill('SIGKILL')
      await current.exited
      current = spawnServer('naive', port, control)
      serving = await current.wait((m) => m.ready)
    }
  }
  await new Promise((res) => setTimeout(res, SETTLE_MS))
  await load.stop()
  current.proc.kill('SIGTERM')
  await current.exited
  fs.rmSync(control, { force: true })
  // From each kill to the end of the first request started after it that succeeded.
  const ok = load.samples.filter((s) => s[2])
  const recover = kills
    .map((t0) => {
      const first = ok.filter((s) => s[0] >= t0).reduce((best, s) => Math.min(best, s[0] + s[1]), Infinity)
      return first - t0
    })
    .sort((a, b) => a - b)
  return {
    strategy,
    keepAlive,
    crashes: CRASHES,
    ...load.summary(),
    servingAgainP50: pct(recover, 0.5),
    servingAgainMax: recover[recover.length - 1],
  }
}

const fmt = (n) => (Number.isFinite(n) ? n.toFixed(2) : '-')

async function main() {
  const results = []
  const webSockets = []
  const cost = []
  const crashResults = []
  let port = 20000 + (process.pid % 10000)
  console.log(`restart strategies: ${RESTARTS} restarts each, ${CLIENTS} clients, ${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(2)}`)
  if (ONLY.includes('http')) {
    for (const keepAlive of [true, false]) {
      for (const strategy of STRATEGIES) {
        const r = await runOne(strategy, keepAlive, port++)
        results.push(r)
        console.log(
          `${(keepAlive ? 'keep-alive' : 'new conn  ').padEnd(10)}  ${strategy.padEnd(12)}  ${String(r.requests).padStart(7)} req  ${String(r.rate).padStart(6)}/s  failed ${String(r.failed).padStart(5)}  refused ${String(r.refused).padStart(5)}  reset ${String(r.reset).padStart(5)}  window p50/p99 ${fmt(r.windowP50)}/${fmt(r.windowP99)} ms  steady ${fmt(r.steadyP50)}/${fmt(r.steadyP99)} ms` +
            (keepAlive ? `  re-dials/restart ${r.redialsPerRestart.toFixed(2)}` : '') +
            (r.generationFds
              ? `  generation fds ${r.generationFds.first}..${r.generationFds.last} (min ${r.generationFds.min}, max ${r.generationFds.max})`
              : ''),
        )
      }
    }
  }
  if (ONLY.includes('ws')) {
    console.log(`WebSockets: ${WS_CLIENTS} clients, a message each per 100 ms, ${WS_RESTARTS} restarts`)
    for (const strategy of ['fdpass-drain', 'fdpass']) {
      const r = await runWebSockets(strategy, port++)
      webSockets.push(r)
      console.log(
        `websocket   ${strategy.padEnd(12)}  ${String(r.received).padStart(7)} echoes  disconnects ${String(r.disconnects).padStart(5)}  lost ${String(r.lost).padStart(5)}  duplicated ${String(r.duplicated).padStart(3)}  unsent (reconnecting) ${String(r.unsent).padStart(5)}  window p50/p99 ${fmt(r.windowP50)}/${fmt(r.windowP99)} ms  steady ${fmt(r.steadyP50)}/${fmt(r.steadyP99)} ms`,
      )
    }
  }
  if (ONLY.includes('cost')) {
    for (const idle of [0, IDLE]) {
      const r = await runMigrationCost(idle, port++)
      cost.push(r)
      console.log(
        `handoff with ${String(idle).padStart(5)} idle keep-alive connections: p50 ${fmt(r.handoffP50)} ms over ${r.handoffs} handoffs (migration p50 ${fmt(r.migrationP50)} ms), closed by the server ${r.closedByServer}, last generation fds ${r.lastGenerationFds}`,
      )
    }
    console.log(`migrating ${IDLE} idle connections adds ${fmt(cost[1].handoffP50 - cost[0].handoffP50)} ms to a handoff at p50`)
  }
  if (ONLY.includes('crash')) {
    if (CRASH_STRATEGIES.length > 0) console.log(`crashes: kill -9 of the serving process ${CRASHES} times, ${CLIENTS} clients`)
    for (const keepAlive of [true, false]) {
      for (const strategy of CRASH_STRATEGIES) {
        const r = await runCrashes(strategy, keepAlive, port++)
        crashResults.push(r)
        console.log(
          `${(keepAlive ? 'keep-alive' : 'new conn  ').padEnd(10)}  ${strategy.padEnd(12)}  ${String(r.requests).padStart(7)} req  failed ${String(r.failed).padStart(5)}  refused ${String(r.refused).padStart(5)}  reset ${String(r.reset).padStart(5)}  kill to serving again p50/max ${r.servingAgainP50.toFixed(1)}/${r.servingAgainMax.toFixed(1)} ms`,
        )
      }
    }
  }
  const out = path.join(__dirname, 'out')
  fs.mkdirSync(out, { recursive: true })
  const file = path.join(out, `restarts-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  fs.writeFileSync(
    file,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        cpus: os.cpus().length,
        node: process.version,
        restarts: RESTARTS,
        crashes: CRASHES,
        clients: CLIENTS,
        results,
        webSockets,
        migrationCost: cost,
        crashResults,
      },
      null,
      2,
    ),
  )
  console.log(`wrote ${path.relative(process.cwd(), file)}`)
  const fdpass = results.filter((r) => isFdpass(r.strategy))
  if (fdpass.some((r) => r.failed > 0)) {
    console.log('fdpass had failed requests: goal missed')
    process.exitCode = 1
  }
  const migrating = [...results.filter((r) => r.strategy === 'fdpass' && r.keepAlive), ...webSockets.filter((r) => r.strategy === 'fdpass')]
  if (migrating.some((r) => r.redialsPerRestart > 0 || r.disconnects > 0 || r.lost > 0 || r.duplicated > 0)) {
    console.log('fdpass with connection migration: a connection was closed, or a message lost or duplicated: goal missed')
    process.exitCode = 1
  }
  if (crashResults.some((r) => r.strategy === 'fdpass-run' && r.refused > 0)) {
    console.log('fdpass run refused connections after a crash: goal missed')
    process.exitCode = 1
  }
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
