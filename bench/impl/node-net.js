// A reference, not a way to pass descriptors: Node's own net module over a
// Unix stream socket, one byte each way and nothing else (no descriptor, no
// fstat, no close). Its W3 round trip is the floor of any event-driven
// exchange in a Node process: what the event loop itself costs.
'use strict'
const net = require('node:net')
const { role, path, args, print, percentiles } = require('./common')

if (role === 'echo') {
  const server = net.createServer((s) => s.on('data', (d) => s.write(d)))
  server.listen(path, () => print({ ready: 1 }))
} else if (role === 'ping') {
  const [count, , warmup] = [Number(args[0]), args[1], Number(args[2] ?? 0)]
  const socket = net.connect(path, async () => {
    const lat = new Float64Array(count)
    let arrived = null
    socket.on('data', () => arrived())
    for (let i = -warmup; i < count; i++) {
      const t0 = performance.now()
      await new Promise((resolve) => {
        arrived = resolve
        socket.write('x')
      })
      if (i >= 0) lat[i] = (performance.now() - t0) * 1000
    }
    print(percentiles(lat))
    socket.destroy()
    process.exit(0)
  })
}
