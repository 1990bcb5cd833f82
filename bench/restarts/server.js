// One HTTP server process for the restart benchmark. Strategy by argv[2]:
//   naive      bind the port; on SIGTERM close and exit
//   reuseport  an SO_REUSEPORT listener of its own; on SIGTERM close and drain
//   fdpass     fdpass/handoff: take the listener from the running generation;
//              established connections migrate to the new generation
//   fdpass-drain  the same without connection migration: the old one drains
//   cluster    a primary with one worker; SIGHUP replaces the worker
// argv[5] 'ws': also a WebSocket echo (ws package) on the same server;
// fdpass moves WebSockets with fdpass/handoff/ws, the other strategies
// close them (1012) when they stop. GET /fds answers the open fd count.
// Prints {"ready":true,"pid":N} when it accepts, {"handoff":...} and
// {"migration":...} for fdpass handoffs (the runner watches process exit).
'use strict'
const cluster = require('node:cluster')
const http = require('node:http')
const path = require('node:path')

const fs = require('node:fs')

const [strategy, portArg, control, mode] = process.argv.slice(2)
const port = Number(portArg)
const print = (v) => process.stdout.write(JSON.stringify(v) + '\n')
const handler = (req, res) => (req.url === '/fds' ? res.end(String(fs.readdirSync('/proc/self/fd').length)) : res.end(String(process.pid)))
let webSockets = null

function withWebSockets(server) {
  if (mode !== 'ws') return server
  const { WebSocketServer } = require('ws')
  webSockets = new WebSocketServer({ server, perMessageDeflate: false })
  webSockets.on('connection', echo)
  return server
}

function echo(ws) {
  ws.on('message', (data) => ws.send(data))
}

function drainAndExit(server) {
  if (webSockets) for (const ws of webSockets.clients) ws.close(1012)
  server.close(() => process.exit(0))
  server.closeIdleConnections()
  setTimeout(() => process.exit(0), 5000).unref()
}

async function main() {
  if (strategy === 'naive') {
    const server = withWebSockets(http.createServer(handler)).listen(port, '127.0.0.1', () => print({ ready: true, pid: process.pid }))
    process.on('SIGTERM', () => drainAndExit(server))
  } else if (strategy === 'reuseport') {
    const { binding } = require(path.join(__dirname, '../../dist/native.js'))
    const fd = binding.bindInetSocket('tcp', '127.0.0.1', port, 511, true)
    const server = withWebSockets(http.createServer(handler)).listen({ fd }, () => print({ ready: true, pid: process.pid }))
    process.on('SIGTERM', () => drainAndExit(server))
  } else if (strategy === 'fdpass' || strategy === 'fdpass-drain') {
    const { takeover } = require('../../handoff')
    const migrateConnections = strategy === 'fdpass'
    const generation = await takeover({
      control,
      listeners: { http: { tcp: { host: '127.0.0.1', port } } },
      log: false,
      drainTimeout: 5000,
      migrateConnections,
    })
    generation.on('handoff', (h) => print({ handoff: h }))
    generation.on('migration', (m) => print({ migration: m }))
    await generation.listen('http', withWebSockets(http.createServer(handler)))
    if (webSockets) {
      const { adoptWebSockets, migrateWebSockets } = require('../../handoff/ws')
      adoptWebSockets(generation, { server: webSockets, onConnection: echo })
      generation.onDrain(async () => {
        if (migrateConnections) await migrateWebSockets(generation, webSockets)
        for (const ws of webSockets.clients) ws.close(1012) // what did not move
      })
    }
    await generation.ready()
    print({ ready: true, pid: process.pid })
  } else if (strategy === 'cluster') {
    if (cluster.isPrimary) {
      let current = cluster.fork()
      current.once('listening', () => print({ ready: true, pid: current.process.pid }))
      process.on('SIGHUP', () => {
        const next = cluster.fork()
        next.once('listening', () => {
          const old = current
          current = next
          old.once('exit', () => print({ replaced: true, pid: old.process.pid }))
          old.disconnect() // the worker stops accepting, finishes its requests, exits
          print({ ready: true, pid: next.process.pid })
        })
      })
      process.on('SIGTERM', () => {
        for (const w of Object.values(cluster.workers)) w.kill()
        process.exit(0)
      })
    } else {
      withWebSockets(http.createServer(handler)).listen(port, '127.0.0.1')
      process.on('disconnect', () => {
        if (webSockets) for (const ws of webSockets.clients) ws.close(1012)
      })
    }
  } else {
    throw new Error(`unknown strategy ${strategy}`)
  }
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
