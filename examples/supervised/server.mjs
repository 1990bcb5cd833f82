// An app for `fdpass run -- node server.mjs`: the supervisor sets
// FDPASS_CONTROL, so takeover() needs only the listeners.
import http from 'node:http'
import { takeover } from 'fdpass/handoff'

const port = Number(process.env.PORT ?? 8080)
const generation = await takeover({ listeners: { http: { tcp: { host: '127.0.0.1', port } } } })
await generation.listen(
  'http',
  http.createServer((req, res) => res.end(`hello from ${process.pid}\n`)),
)
await generation.ready()
