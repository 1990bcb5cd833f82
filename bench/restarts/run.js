#!/usr/bin/env node
// Restart strategies under the same HTTP load, side by side:
//   (a) naive stop-then-start, (b) SO_REUSEPORT overlap, (c) Node's cluster
//   replacing its worker, (d) fdpass handoff.
// Each runs R restarts under closed-loop load (C concurrent clients), once
// with keep-alive and once with a new connection per request, and reports
// failed requests by cause and latency inside the restart windows.
//
//   node bench/restarts/run.js [--quick] [--restarts N] [--clients C] [--strategies a,b]
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
const STRATEGIES = flag('strategies', 'naive,reuseport,cluster,fdpass').split(',')
const SETTLE_MS = 100 // steady state between restarts

function spawnServer(strategy, port, control) {
  const proc = spawn(process.execPath, [path.join(__dirname, 'server.js'), strategy, String(port), control], { stdio: ['ignore', 'pipe', 'inherit'] })
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

async function main() {
  const results = []
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
  const out = path.join(__dirname, 'out')
  fs.mkdirSync(out, { recursive: true })
  const file = path.join(out, `restarts-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  fs.writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), cpus: os.cpus().length, node: process.version, restarts: RESTARTS, clients: CLIENTS, results }, null, 2))
  console.log(`wrote ${path.relative(process.cwd(), file)}`)
  const fdpass = results.filter((r) => r.strategy === 'fdpass')
  if (fdpass.some((r) => r.failed > 0)) {
    console.log('fdpass had failed requests: goal missed')
    process.exitCode = 1
  }
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
