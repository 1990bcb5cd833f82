// One HTTP server process for the restart benchmark. Strategy by argv[2]:
//   naive      bind the port; on SIGTERM close and exit
//   reuseport  an SO_REUSEPORT listener of its own; on SIGTERM close and drain
//   fdpass     fdpass/handoff: take the listener from the running generation
//   cluster    a primary with one worker; SIGHUP replaces the worker
// Prints {"ready":true,"pid":N} when it accepts, {"exited":...} never
// (the runner watches process exit).
'use strict'
const cluster = require('node:cluster')
const http = require('node:http')
const path = require('node:path')

const [strategy, portArg, control] = process.argv.slice(2)
const port = Number(portArg)
const print = (v) => process.stdout.write(JSON.stringify(v) + '\n')
const handler = (req, res) => res.end(String(process.pid))

function drainAndExit(server) {
  server.close(() => process.exit(0))
  server.closeIdleConnections()
  setTimeout(() => process.exit(0), 5000).unref()
}

async function main() {
  if (strategy === 'naive') {
    const server = http.createServer(handler).listen(port, '127.0.0.1', () => print({ ready: true, pid: process.pid }))
    process.on('SIGTERM', () => drainAndExit(server))
  } else if (strategy === 'reuseport') {
    const { binding } = require(path.join(__dirname, '../../dist/native.js'))
    const fd = binding.bindInetSocket('tcp', '127.0.0.1', port, 511, true)
    const server = http.createServer(handler).listen({ fd }, () => print({ ready: true, pid: process.pid }))
    process.on('SIGTERM', () => drainAndExit(server))
  } else if (strategy === 'fdpass') {
    const { takeover } = require('../../handoff')
    const generation = await takeover({ control, listeners: { http: { tcp: { host: '127.0.0.1', port } } }, log: false, drainTimeout: 5000 })
    await generation.listen('http', http.createServer(handler))
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
      http.createServer(handler).listen(port, '127.0.0.1')
    }
  } else {
    throw new Error(`unknown strategy ${strategy}`)
  }
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
