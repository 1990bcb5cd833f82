// Receives one open file from sender.mjs and prints what it reads from it.
// Run it first, then `node sender.mjs` from the same directory.
import { listen } from 'fdpass'

const server = await listen('files.sock') // a path; relative to the current directory here
console.log('listening on files.sock')
const socket = await server.accept()
const {
  data,
  fds: [file],
} = await socket.receive()
console.log(`got ${data} as a ${file.kind()}:`)
file.createReadStream().pipe(process.stdout) // the stream owns the descriptor now
socket.close()
await server.close() // removes files.sock
