// fdpass through its public API: the 'message' event and await send().
// FDPASS_BENCH_TYPE=stream (framed) or seqpacket; FDPASS_REACTOR picks the reactor.
'use strict'
const fs = require('node:fs')
const v8 = require('node:v8')
const fdpass = require('../..')
const { role, path, args, print, cpuUs, openOn, receiver, percentiles } = require('./common')
const type = process.env.FDPASS_BENCH_TYPE ?? 'seqpacket'
// FDPASS_BENCH_API=batch: the receiver checks and closes a message's
// descriptors with ReceivedFd.statAll() and ReceivedFd.closeAll(), one call
// each per message. =sync: ping-pong with receiveSync() and sendSync().
const batch = process.env.FDPASS_BENCH_API === 'batch'
const sync = process.env.FDPASS_BENCH_API === 'sync'

// The process's private memory alone, without the pages of files it maps:
// the node executable's own code is paged in (shared and clean) when V8
// first runs its optimizing compiler, which may be during the window.
const rssAnonKb = () => Number(/^RssAnon:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN)

/** The size of every object reachable in the heap but compiled code, from a snapshot. */
function liveObjectBytes(file) {
  v8.writeHeapSnapshot(file)
  const snap = JSON.parse(fs.readFileSync(file, 'utf8'))
  fs.rmSync(file)
  const fields = snap.snapshot.meta.node_fields
  const [width, typeAt, sizeAt] = [fields.length, fields.indexOf('type'), fields.indexOf('self_size')]
  const code = snap.snapshot.meta.node_types[0].indexOf('code')
  let total = 0
  for (let i = 0; i < snap.nodes.length; i += width) if (snap.nodes[i + typeAt] !== code) total += snap.nodes[i + sizeAt]
  return total
}

async function main() {
  if (role === 'recv') {
    const [count, nfds, file] = [Number(args[0]), Number(args[1]), args[2]]
    // Counted before the socket exists: it starts reading as soon as it is
    // accepted, so a later count could include descriptors already received.
    const before = openOn(file)
    const server = await fdpass.listen(path, { type })
    print({ ready: 1 })
    const socket = await server.accept()
    await server.close()
    const r = receiver(count, nfds, file, before)
    socket.on('message', (m) => {
      // The check goes through ReceivedFd.fileStat(), as a user's would (and
      // Deno's node:fs refuses received descriptors): one fstat, as the other
      // implementations' checks (stat() would add an fcntl for cloexec).
      const done = batch
        ? r.takeStats(m.fds.length, fdpass.ReceivedFd.statAll(m.fds), () => fdpass.ReceivedFd.closeAll(m.fds))
        : r.take(
            m.fds,
            () => {
              for (const f of m.fds) f.close()
            },
            (f) => f.fileStat(),
          )
      if (done) {
        socket.close() // before the count: the baseline was taken without it
        r.report()
      }
    })
  } else if (role === 'send') {
    const [count, nfds, file] = [Number(args[0]), Number(args[1]), args[2]]
    const fd = fs.openSync(file, 'r')
    const fds = Array(nfds).fill(fd)
    const socket = await fdpass.connect(path, { type })
    const cpu0 = cpuUs()
    for (let i = 0; i < count; i++) await socket.send('message', fds)
    print({ cpuUs: cpuUs() - cpu0 })
    await socket.end()
  } else if (role === 'echo') {
    const server = await fdpass.listen(path, { type })
    print({ ready: 1 })
    const socket = await server.accept()
    await server.close()
    if (sync) {
      for (;;) {
        let m
        try {
          m = socket.receiveSync()
        } catch (e) {
          if (e.code === 'ERR_FDPASS_SOCKET_CLOSED') return
          throw e
        }
        socket.sendSync('p', m.fds)
        for (const f of m.fds) f.close()
      }
    }
    socket.on('message', async (m) => {
      await socket.send('p', m.fds)
      for (const f of m.fds) f.close()
    })
  } else if (role === 'ping') {
    const [count, file, warmup] = [Number(args[0]), args[1], Number(args[2] ?? 0)]
    const fd = fs.openSync(file, 'r')
    const socket = await fdpass.connect(path, { type })
    const lat = new Float64Array(count)
    for (let i = -warmup; i < count; i++) {
      const t0 = performance.now()
      let m
      if (sync) {
        socket.sendSync('x', [fd])
        m = socket.receiveSync()
      } else {
        await socket.send('x', [fd])
        m = await socket.receive()
      }
      if (i >= 0) lat[i] = (performance.now() - t0) * 1000
      m.fds[0].close()
    }
    print(percentiles(lat))
    socket.close()
  } else if (role === 'many-recv') {
    const [conns, per, file] = [Number(args[0]), Number(args[1]), args[2]]
    const want = fs.statSync(file)
    const server = await fdpass.listen(path, { type, backlog: 4096 })
    print({ ready: 1 })
    // "Before" is a server that is up, not one still starting: the first
    // print creates process.stdout (up to 1.8 MiB for a pipe), and module
    // loading has V8 schedule its first young-generation collection (0.6-0.8
    // MiB), which would otherwise run inside the window (bench/README.md).
    // Nothing is accepted until the loop below asks: connections wait in the
    // backlog.
    await new Promise((resolve) => setTimeout(resolve, 100))
    // RSS as the process has it, garbage included: a forced collection
    // made the number larger and noisier (V8 keeps the pages it compacts into).
    const rss0 = process.memoryUsage().rss
    const anon0 = rssAnonKb()
    const sockets = []
    for (let i = 0; i < conns; i++) sockets.push(await server.accept())
    const rss1 = process.memoryUsage().rss
    const anon1 = rssAnonKb()
    print({ idle: 1 })
    let got = 0
    let bad = 0
    let first = 0n
    for (const s of sockets) {
      s.on('message', (m) => {
        if (!first) first = process.hrtime.bigint()
        for (const f of m.fds) {
          if (f.fileStat().ino !== Number(want.ino)) bad++
          f.close()
        }
        got += m.fds.length
        if (got === conns * per) {
          print({ fds: got, bad, ns: Number(process.hrtime.bigint() - first), rssIdleKb: Math.round((rss1 - rss0) / 1024), rssIdleAnonKb: anon1 - anon0 })
          process.exit(0)
        }
      })
    }
  } else if (role === 'idle-heap') {
    // The JavaScript objects an idle accepted socket keeps, from heap
    // snapshots: exact and steady, where RSS moves with V8's own heuristics
    // (and heap statistics count garbage not yet swept). Counted over the
    // second `conns` sockets accepted: during the first, V8 also keeps what
    // it makes once.
    const conns = Number(args[0])
    const server = await fdpass.listen(path, { type, backlog: 4096 })
    print({ ready: 1 })
    const sockets = Array.from({ length: 2 * conns })
    for (let i = 0; i < conns; i++) sockets[i] = await server.accept()
    const heap0 = liveObjectBytes(`${path}.heapsnapshot`)
    for (let i = conns; i < 2 * conns; i++) sockets[i] = await server.accept()
    const heap1 = liveObjectBytes(`${path}.heapsnapshot`)
    print({ jsBytesPerSocket: Math.round((heap1 - heap0) / conns) })
    process.exit(0)
  } else if (role === 'many-send') {
    const [conns, per, file] = [Number(args[0]), Number(args[1]), args[2]]
    const fd = fs.openSync(file, 'r')
    const sockets = []
    for (let i = 0; i < conns; i++) sockets.push(await fdpass.connect(path, { type }))
    process.stdin.once('data', async () => {
      for (let r = 0; r < per; r++) await Promise.all(sockets.map((s) => s.send('m', [fd])))
      for (const s of sockets) await s.end()
    })
  }
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
