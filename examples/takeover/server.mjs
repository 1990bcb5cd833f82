// A server that restarts with zero downtime: start it, then start it again
// from the same directory. The new process takes the listening sockets of
// the running one, and only then does the old one stop accepting, drain
// and exit.
import http from 'node:http'
import { takeover } from 'fdpass/handoff'

const port = Number(process.env.PORT ?? 8080)
const generation = await takeover({
  control: process.env.FDPASS_CONTROL ?? 'control.sock', // `fdpass run` sets FDPASS_CONTROL
  listeners: {
    http: { tcp: { host: '127.0.0.1', port } },
    admin: { unix: { path: 'admin.sock' } },
    echo: { udp: { host: '127.0.0.1', port } },
  },
})
const app = (req, res) => res.end(`hello from ${process.pid}\n`)
const admin = (req, res) => res.end(`${generation.handoffs.length} handoffs\n`)
await generation.listen('http', http.createServer(app)) // any net.Server: http, https, http2, Express
await generation.listen('admin', http.createServer(admin))
const echo = generation.dgram('echo') // a dgram.Socket on the same UDP socket
echo.on('message', (msg, from) => echo.send(msg, from.port, from.address))
await generation.ready() // the previous generation now drains and exits
console.log(`${process.pid} serving on port ${port}`)
