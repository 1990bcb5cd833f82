// Exchanges descriptors with client.py, which uses Python's own
// socket.send_fds/recv_fds. Over seqpacket (Linux), one Python call is one
// fdpass message; on a stream socket Python would have to speak fdpass's
// framing (docs/wire-format.md), or Node opens the socket with raw: true.
import { listen } from 'fdpass'

const server = await listen('py.sock', { type: 'seqpacket' })
console.log('listening on py.sock')
const socket = await server.accept()
const { data, fds } = await socket.receive() // from Python
console.log(`${data}, with a ${fds[0].kind()}`)
await socket.send('back at you', [fds[0]]) // to Python
fds[0].close()
await socket.end()
await server.close()
