// usocket (npm), the other Node package that passes fds: stream sockets,
// fixed 8-byte messages read with read(8, nfds). Installed into bench/.deps.
'use strict'
const fs = require('node:fs')
const path_ = require('node:path')
const usocket = require(path_.join(__dirname, '../.deps/node_modules/usocket'))
const { role, path, args, print, cpuUs, receiver, percentiles } = require('./common')
const MSG = Buffer.from('message!')

function listen(onSocket) {
  try {
    fs.unlinkSync(path)
  } catch {}
  const server = new usocket.UServer()
  server.on('connection', onSocket)
  server.listen(path, () => print({ ready: 1 }))
  return server
}

function connect() {
  return new Promise((resolve) => {
    const s = new usocket.USocket()
    s.on('connected', () => resolve(s))
    s.connect(path)
  })
}

/**
 * Read whole 8-byte messages and the fds queued with them. usocket loses a
 * message's fds when its send buffer fills, so asking for exactly `nfds`
 * would wait forever: take what arrived (null) and let the counts show it.
 */
function onMessages(socket, _nfds, each) {
  socket.on('readable', () => {
    for (;;) {
      const m = socket.read(8, null)
      if (!m) return
      each(m.data ?? m, m.fds ?? [])
    }
  })
  socket.read(0)
}

async function main() {
  if (role === 'recv') {
    const [count, nfds, file] = [Number(args[0]), Number(args[1]), args[2]]
    let reported = false
    const r = receiver(count, nfds, file) // counted before the listener exists
    const server = listen((socket) => {
      const finish = () => {
        if (reported) return
        reported = true
        socket.destroy()
        server.close()
        setImmediate(() => r.report())
      }
      onMessages(socket, nfds, (_data, fds) => {
        if (r.take(fds, () => fds.forEach((fd) => fs.closeSync(fd)))) finish()
      })
      socket.on('end', finish)
    })
  } else if (role === 'send') {
    const [count, nfds, file] = [Number(args[0]), Number(args[1]), args[2]]
    const fd = fs.openSync(file, 'r')
    const fds = Array(nfds).fill(fd)
    const socket = await connect()
    const cpu0 = cpuUs()
    for (let i = 0; i < count; i++) {
      await new Promise((resolve) => socket.write({ data: MSG, fds, callback: resolve }))
    }
    print({ cpuUs: cpuUs() - cpu0 })
    socket.end()
  } else if (role === 'echo') {
    const server = listen((socket) => {
      onMessages(socket, 1, (_data, fds) => {
        socket.write({ data: MSG, fds, callback: () => fds.forEach((fd) => fs.closeSync(fd)) })
      })
      socket.on('end', () => server.close())
    })
  } else if (role === 'ping') {
    const [count, file, warmup] = [Number(args[0]), args[1], Number(args[2] ?? 0)]
    const fd = fs.openSync(file, 'r')
    const socket = await connect()
    const lat = new Float64Array(count)
    let pending = null
    onMessages(socket, 1, (_d, fds) => {
      fds.forEach((f) => fs.closeSync(f))
      pending?.()
    })
    for (let i = -warmup; i < count; i++) {
      const t0 = performance.now()
      const back = new Promise((r) => (pending = r))
      socket.write({ data: MSG, fds: [fd] })
      await back
      if (i >= 0) lat[i] = (performance.now() - t0) * 1000
    }
    print(percentiles(lat))
    socket.end()
    process.exit(0)
  }
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
