// Owns a TCP port (as a privileged process, or a previous generation, would)
// and hands the listening socket to the first process that asks for it.
import { once } from 'node:events'
import net from 'node:net'
import { listen } from 'fdpass'

const listener = net.createServer().listen(Number(process.env.PORT ?? 8080), '127.0.0.1')
await once(listener, 'listening')
const server = await listen('listener.sock')
console.log(`port ${listener.address().port} open; waiting on listener.sock`)
const socket = await server.accept()
await socket.send('listener', [listener])
listener.close() // the kernel socket stays open in the receiver
await socket.end()
await server.close()
