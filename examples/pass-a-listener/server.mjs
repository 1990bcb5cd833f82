// Asks owner.mjs for its listening socket and serves HTTP on it.
import http from 'node:http'
import { connect } from 'fdpass'

const socket = await connect('listener.sock')
const {
  fds: [listener],
} = await socket.receive()
socket.close()
const server = http.createServer((req, res) => res.end(`served by ${process.pid}\n`))
server.listen({ fd: listener.release() }, () => {
  console.log(`serving on port ${server.address().port}`)
})
