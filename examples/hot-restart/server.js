#!/usr/bin/env node
// An HTTP server that restarts with zero downtime: each new generation takes
// the listening socket from the running one (fdpass/handoff).
//
//   node server.js        # first start binds 127.0.0.1:PORT
//   node server.js        # later starts take over; the previous one drains and exits
'use strict'
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const { takeover } = require('fdpass/handoff')

const port = Number(process.env.PORT ?? 8080)
// Under `fdpass run`, the supervisor's control path ($FDPASS_CONTROL).
const control = process.env.CONTROL ?? process.env.FDPASS_CONTROL ?? path.join(os.tmpdir(), `fdpass-hot-restart-${port}.sock`)

async function main() {
  const generation = await takeover({
    control,
    listeners: { http: { tcp: { host: '127.0.0.1', port } } },
    drainTimeout: 10_000,
    log: process.env.QUIET ? false : undefined,
  })
  const server = http.createServer((req, res) => {
    res.end(`hello from generation ${process.pid}\n`)
  })
  await generation.listen('http', server)
  // Established keep-alive connections move to the next generation (migrateConnections, on by default).
  generation.on('migration', (m) => console.log(JSON.stringify({ event: 'migration', pid: process.pid, ...m })))
  generation.on('handoff', (h) => {
    // One line per handoff for whoever supervises us (the demo reads it).
    if (h.role === 'successor') console.log(JSON.stringify({ event: 'handoff', pid: process.pid, ...h }))
  })
  await generation.ready()
  console.log(JSON.stringify({ event: 'ready', pid: process.pid, inherited: generation.inherited }))
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
