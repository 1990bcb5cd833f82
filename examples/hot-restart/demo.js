#!/usr/bin/env node
// Hot restarts under load: an HTTP server is restarted N times while a
// load generator hammers it, half over keep-alive connections and half
// with a new connection per request. A live counter shows progress and how
// many keep-alive connections were kept across the restarts (they move to
// the new generation) versus dialled again; the summary shows requests
// sent, ok and failed, connections moved, and each handoff's duration.
'use strict'
const { spawn } = require('node:child_process')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

const RESTARTS = Number(process.env.RESTARTS ?? 10)
const INTERVAL_MS = Number(process.env.INTERVAL_MS ?? 400)
const CLIENTS = Number(process.env.CLIENTS ?? 16)
const port = Number(process.env.PORT ?? 18000 + (process.pid % 2000))
const control = path.join(os.tmpdir(), `fdpass-demo-control-${process.pid}.sock`)

const stats = { sent: 0, ok: 0, failed: 0, errors: {}, generations: new Set(), handoffs: [], moved: 0 }
// The keep-alive clients' connections: the first ones dialled, and every dial after.
const keepAliveDials = { first: new Set(), redials: 0 }
const tty = process.stdout.isTTY
let running = true

function startGeneration() {
  const child = spawn(process.execPath, [path.join(__dirname, 'server.js')], {
    env: { ...process.env, PORT: String(port), CONTROL: control, QUIET: '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const ready = new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const msg = JSON.parse(line)
      if (msg.event === 'handoff') stats.handoffs.push(msg.durationMs)
      if (msg.event === 'migration') stats.moved += Object.values(msg.migrated).reduce((a, b) => a + b, 0)
      if (msg.event === 'ready') resolve(child)
    })
    child.on('exit', (code) => code !== 0 && reject(new Error(`generation exited with ${code}`)))
  })
  return { child, ready }
}

function client(agent) {
  if (!running) return
  stats.sent++
  const req = http.get({ host: '127.0.0.1', port, agent, path: '/' }, (res) => {
    let body = ''
    res.setEncoding('utf8')
    res.on('data', (d) => (body += d))
    res.on('end', () => {
      if (res.statusCode === 200) {
        stats.ok++
        stats.generations.add(body.trim().split(' ').pop())
      } else stats.failed++
      setImmediate(client, agent)
    })
  })
  req.on('error', (e) => {
    stats.failed++
    stats.errors[e.code] = (stats.errors[e.code] ?? 0) + 1
    setImmediate(client, agent)
  })
}

function counter(restarts) {
  const kept = [...keepAliveDials.first].filter((s) => !s.destroyed).length
  const line = `restarts ${restarts}/${RESTARTS}  requests ${stats.sent}  ok ${stats.ok}  failed ${stats.failed}  generations seen ${stats.generations.size}  keep-alive connections kept ${kept}/${keepAliveDials.first.size}, re-dialled ${keepAliveDials.redials}`
  if (tty) process.stdout.write(`\r${line}   `)
  else console.log(line)
}

async function main() {
  console.log(`fdpass hot-restart demo: ${RESTARTS} restarts of an HTTP server on 127.0.0.1:${port} under load (${CLIENTS} clients)`)
  const first = startGeneration()
  await first.ready
  const keepAlive = new http.Agent({ keepAlive: true, maxSockets: CLIENTS })
  const createConnection = keepAlive.createConnection.bind(keepAlive)
  keepAlive.createConnection = (...args) => {
    const socket = createConnection(...args)
    if (keepAliveDials.first.size < CLIENTS / 2 && stats.handoffs.length === 0) keepAliveDials.first.add(socket)
    else keepAliveDials.redials++
    return socket
  }
  const fresh = new http.Agent({ keepAlive: false, maxSockets: CLIENTS })
  for (let i = 0; i < CLIENTS; i++) client(i % 2 ? keepAlive : fresh)
  let last = first.child
  for (let r = 1; r <= RESTARTS; r++) {
    await new Promise((resolve) => setTimeout(resolve, INTERVAL_MS))
    const next = startGeneration()
    await next.ready
    last = next.child
    counter(r)
  }
  await new Promise((resolve) => setTimeout(resolve, INTERVAL_MS))
  const kept = [...keepAliveDials.first].filter((s) => !s.destroyed).length
  running = false
  await new Promise((resolve) => setTimeout(resolve, 200))
  keepAlive.destroy()
  fresh.destroy()
  last.kill('SIGTERM')
  require('node:fs').rmSync(control, { force: true })
  if (tty) process.stdout.write('\n')
  const sorted = [...stats.handoffs].sort((a, b) => a - b)
  const pct = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
  console.log('\nsummary')
  console.log(`  requests sent     ${stats.sent}`)
  console.log(`  ok                ${stats.ok}`)
  console.log(`  failed            ${stats.failed}${Object.keys(stats.errors).length ? ` ${JSON.stringify(stats.errors)}` : ''}`)
  console.log(`  generations       ${stats.generations.size} answered requests`)
  console.log(
    `  keep-alive        ${kept} of ${keepAliveDials.first.size} connections kept through every restart, ${keepAliveDials.redials} re-dialled; ${stats.moved} connections moved`,
  )
  console.log(`  handoffs          ${sorted.length}, took median ${pct(0.5)} ms, max ${sorted[sorted.length - 1]} ms`)
  process.exitCode = stats.failed === 0 && sorted.length === RESTARTS ? 0 : 1
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
