#!/usr/bin/env node
// Restart strategies under the same HTTP load, side by side:
//   (a) naive stop-then-start, (b) SO_REUSEPORT overlap, (c) Node's cluster
//   replacing its worker, (d) fdpass handoff.
// Each runs R restarts under closed-loop load (C concurrent clients), once
// with keep-alive and once with a new connection per request, and reports
// failed requests by cause and latency inside the restart windows.
//
// Then the crash rows: under the same load, kill -9 the serving process R
// times: (e) under `fdpass run`, which keeps the listeners in its fd store
// and starts a new generation on them at once, and (f) a plain restart loop
// of the same server (what systemd Restart=always does without an fd
// store, here with no RestartSec delay). Refused connections, failed
// requests, and the time from the kill to the first request served again.
//
//   node bench/restarts/run.js [--quick] [--restarts N] [--crashes N] [--clients C] [--strategies a,b] [--crash-strategies e,f]
'use strict'
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

const args = process.argv.slice(2)
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : fallback
}
const quick = args.includes('--quick')
const RESTARTS = Number(flag('restarts', quick ? 10 : 100))
const CLIENTS = Number(flag('clients', 16))
const STRATEGIES = flag('strategies', 'naive,reuseport,cluster,fdpass').split(',').filter(Boolean)
const CRASHES = Number(flag('crashes', quick ? 10 : 100))
const CRASH_STRATEGIES = flag('crash-strategies', 'fdpass-run,restart-loop').split(',').filter(Boolean)
const BIN = path.join(__dirname, '../../bin/fdpass.js')
const SETTLE_MS = 100 // steady state between restarts

function spawnServer(strategy, port, control) {
  const server = [path.join(__dirname, 'server.js'), strategy === 'fdpass-run' ? 'fdpass' : strategy, String(port), control]
  // fdpass-run: the server under the supervisor, which passes its stdout through. Each kill is
  // its own crash (--restart-window shorter than the time between kills): no backoff.
  const argv =
    strategy === 'fdpass-run'
      ? [BIN, 'run', '--quiet', '--control', control, '--restart-window', '20', '--restart-limit', '2', '--', process.execPath, ...server]
      : server
  const proc = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] })
  const waiters = []
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    const msg = JSON.parse(line)
    const i = waiters.findIndex((w) => w.match(msg))
    if (i >= 0) waiters.splice(i, 1)[0].resolve(msg)
  })
  const exited = new Promise((resolve) => proc.on('exit', resolve))
  return { proc, exited, wait: (match) => new Promise((resolve) => waiters.push({ match, resolve })) }
}

function loadGenerator(port, keepAlive) {
  const agent = new http.Agent({ keepAlive, maxSockets: CLIENTS })
  const samples = [] // [startMs, latencyMs, ok]
  const errors = {}
  let running = true
  const one = () =>
    new Promise((resolve) => {
      const t0 = performance.now()
      const req = http.get({ host: '127.0.0.1', port, agent, path: '/' }, (res) => {
        res.resume()
        res.on('end', () => {
          samples.push([t0, performance.now() - t0, res.statusCode === 200])
          resolve()
        })
      })
      req.on('error', (e) => {
        const code = e.code === 'ECONNRESET' || e.message === 'socket hang up' ? 'reset' : e.code === 'ECONNREFUSED' ? 'refused' : e.code ?? 'other'
        errors[code] = (errors[code] ?? 0) + 1
        samples.push([t0, performance.now() - t0, false])
        resolve()
      })
    })
  const loops = Array.from({ length: CLIENTS }, async () => {
    while (running) {
      await one()
      // A refused connect returns at once: don't spin.
      if (!running) break
    }
  })
  return {
    samples,
    errors,
    async stop() {
      running = false
      await Promise.all(loops)
      agent.destroy()
    },
  }
}

const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN)

async function runOne(strategy, keepAlive, port) {
  const control = path.join(os.tmpdir(), `fdpass-bench-restarts-${process.pid}-${port}.sock`)
  fs.rmSync(control, { force: true })
  let current = spawnServer(strategy, port, control)
  await current.wait((m) => m.ready)
  const primary = current // cluster: the primary stays; others: each generation
  const load = loadGenerator(port, keepAlive)
  const windows = []
  const started = performance.now()
  for (let r = 0; r < RESTARTS; r++) {
    await new Promise((res) => setTimeout(res, SETTLE_MS))
    const t0 = performance.now()
    if (strategy === 'cluster') {
      const replaced = primary.wait((m) => m.replaced)
      primary.proc.kill('SIGHUP')
      await replaced
    } else if (strategy === 'naive') {
      current.proc.kill('SIGTERM')
      await current.exited
      current = spawnServer(strategy, port, control)
      await current.wait((m) => m.ready)
    } else {
      const old = current
      current = spawnServer(strategy, port, control)
      await current.wait((m) => m.ready)
      if (strategy === 'reuseport') old.proc.kill('SIGTERM')
      await old.exited
    }
    windows.push([t0, performance.now()])
  }
  await new Promise((res) => setTimeout(res, SETTLE_MS))
  const seconds = (performance.now() - started) / 1000
  await load.stop()
  current.proc.kill('SIGTERM')
  primary.proc.kill('SIGTERM')
  await Promise.all([current.exited, primary.exited])
  fs.rmSync(control, { force: true })

  const inWindow = (t) => windows.some(([a, b]) => t >= a && t <= b)
  const during = load.samples.filter((s) => s[2] && inWindow(s[0])).map((s) => s[1]).sort((a, b) => a - b)
  const steady = load.samples.filter((s) => s[2] && !inWindow(s[0])).map((s) => s[1]).sort((a, b) => a - b)
  const failed = load.samples.filter((s) => !s[2]).length
  return {
    strategy,
    keepAlive,
    restarts: RESTARTS,
    requests: load.samples.length,
    rate: Math.round(load.samples.length / seconds),
    failed,
    refused: load.errors.refused ?? 0,
    reset: load.errors.reset ?? 0,
    otherErrors: Object.fromEntries(Object.entries(load.errors).filter(([k]) => k !== 'refused' && k !== 'reset')),
    windowP50: pct(during, 0.5),
    windowP99: pct(during, 0.99),
    steadyP50: pct(steady, 0.5),
    steadyP99: pct(steady, 0.99),
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
    requests: load.samples.length,
    failed: load.samples.filter((s) => !s[2]).length,
    refused: load.errors.refused ?? 0,
    reset: load.errors.reset ?? 0,
    otherErrors: Object.fromEntries(Object.entries(load.errors).filter(([k]) => k !== 'refused' && k !== 'reset')),
    servingAgainP50: pct(recover, 0.5),
    servingAgainMax: recover[recover.length - 1],
  }
}

async function main() {
  const results = []
  const crashResults = []
  let port = 20000 + (process.pid % 10000)
  console.log(`restart strategies: ${RESTARTS} restarts each, ${CLIENTS} clients, ${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(2)}`)
  for (const keepAlive of [true, false]) {
    for (const strategy of STRATEGIES) {
      const r = await runOne(strategy, keepAlive, port++)
      results.push(r)
      console.log(
        `${(keepAlive ? 'keep-alive' : 'new conn  ').padEnd(10)}  ${strategy.padEnd(9)}  ${String(r.requests).padStart(7)} req  ${String(r.rate).padStart(6)}/s  failed ${String(r.failed).padStart(5)}  refused ${String(r.refused).padStart(5)}  reset ${String(r.reset).padStart(5)}  window p50/p99 ${r.windowP50.toFixed(2)}/${r.windowP99.toFixed(2)} ms  steady ${r.steadyP50.toFixed(2)}/${r.steadyP99.toFixed(2)} ms`,
      )
    }
  }
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
  const out = path.join(__dirname, 'out')
  fs.mkdirSync(out, { recursive: true })
  const file = path.join(out, `restarts-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  fs.writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), cpus: os.cpus().length, node: process.version, restarts: RESTARTS, crashes: CRASHES, clients: CLIENTS, results, crashResults }, null, 2))
  console.log(`wrote ${path.relative(process.cwd(), file)}`)
  const fdpass = results.filter((r) => r.strategy === 'fdpass')
  if (fdpass.some((r) => r.failed > 0)) {
    console.log('fdpass had failed requests: goal missed')
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
