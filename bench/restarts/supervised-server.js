// The HTTP server of bench/restarts/supervisor.js. Mode by argv[2]:
//   fdpass   under `fdpass run`: takeover() with the supervisor's control path
//            ($FDPASS_CONTROL, per worker). When the file named by
//            $BENCH_CRASH_FILE exists at start, the generation dies 1 s after
//            it accepts: the rollback row's bad deploy. The file says how:
//            'kill -9' (SIGKILL), else an uncaught exception.
//   plain    listen(port) itself: for pm2 (fork and cluster mode) and for the
//            workers of `cluster`. SIGINT (pm2's stop signal) or SIGTERM:
//            stop accepting, close idle connections, exit when drained.
//   cluster  a primary with argv[4] workers (plain); SIGHUP replaces them one
//            after the other (fork the new one, wait for it to listen, then
//            SIGTERM the old one, which drains) and prints {"rolled":true} when done.
// GET / answers the serving process's pid; GET /work?us=N too, after N µs of CPU. Prints {"ready":true,"pid":N}
// when it accepts (cluster: when every worker listens).
'use strict'
const cluster = require('node:cluster')
const fs = require('node:fs')
const http = require('node:http')

const [mode, portArg, workersArg] = process.argv.slice(2)
const port = Number(portArg)
const print = (v) => process.stdout.write(JSON.stringify(v) + '\n')
function handler(req, res) {
  // GET /work?us=N: N µs of CPU before the answer, as an app that renders something.
  const work = /^\/work\?us=(\d+)$/.exec(req.url)
  if (work) for (const until = performance.now() + Number(work[1]) / 1000; performance.now() < until; );
  res.end(String(process.pid))
}

function drainAndExit(server) {
  server.close(() => process.exit(0))
  server.closeIdleConnections()
  setTimeout(() => process.exit(0), 5000).unref()
}

async function main() {
  if (mode === 'fdpass') {
    const { takeover } = require('../../handoff')
    const generation = await takeover({ listeners: { http: { tcp: { host: '127.0.0.1', port } } }, log: false, drainTimeout: 5000 })
    await generation.listen('http', http.createServer(handler))
    const crashFile = process.env.BENCH_CRASH_FILE
    const crash = crashFile && fs.existsSync(crashFile) ? fs.readFileSync(crashFile, 'utf8') : null
    if (crash === 'kill -9') setTimeout(() => process.kill(process.pid, 'SIGKILL'), 1000)
    else if (crash !== null)
      setTimeout(() => {
        throw new Error('a bad deploy')
      }, 1000)
    await generation.ready()
    print({ ready: true, pid: process.pid })
  } else if (mode === 'plain' || (mode === 'cluster' && cluster.isWorker)) {
    const server = http.createServer(handler)
    server.listen(port, '127.0.0.1', () => print({ ready: true, pid: process.pid }))
    process.on('SIGINT', () => drainAndExit(server))
    process.on('SIGTERM', () => drainAndExit(server))
  } else if (mode === 'cluster') {
    cluster.setupPrimary({ stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
    const listening = (w) => new Promise((resolve) => w.once('listening', resolve))
    let workers = Array.from({ length: Number(workersArg) }, () => cluster.fork())
    await Promise.all(workers.map(listening))
    print({ ready: true, pid: process.pid })
    let rolling = Promise.resolve()
    process.on('SIGHUP', () => {
      rolling = rolling.then(async () => {
        for (let i = 0; i < workers.length; i++) {
          const next = cluster.fork()
          await listening(next)
          const old = workers[i]
          workers[i] = next
          const exited = new Promise((resolve) => old.once('exit', resolve))
          // As pm2 does: the old worker drains on a signal. (worker.disconnect() waits for
          // the server to close, which keep-alive clients can hold off for ever.)
          old.process.kill('SIGTERM')
          await exited
        }
        print({ rolled: true })
      })
    })
    process.on('SIGTERM', () => {
      for (const w of workers) w.process.kill('SIGTERM')
      process.exit(0)
    })
  } else {
    throw new Error(`unknown mode ${mode}`)
  }
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
