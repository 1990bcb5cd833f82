#!/usr/bin/env node
// `fdpass run` beside Node's cluster and pm2 (bench/README.md, "Supervisors"):
//   workers   2 workers each: throughput under closed-loop load (GET /, and
//             GET /work, which burns --work-us of CPU per request), in
//             --rounds interleaved rounds with every system started; then R (in
//             all) rolling restarts (`fdpass reload`, cluster worker-by-worker,
//             `pm2 reload`), with keep-alive and with a new connection per request
//   crash     kill -9 of the serving process K times under load: `fdpass run`
//             (fd store) and pm2 fork mode (autorestart); run.js's rows from
//             its last JSON beside them when there is one
//   rollback  D deploys whose new generation dies 1 s after it accepts,
//             under `fdpass run --probation 3000`: each must be reported
//             rolled back by `fdpass reload --json`. It dies of an uncaught
//             exception (0 failed: it gives its connections back), and again
//             by kill -9 (nothing can be given back: what it held fails)
//   leaks     each supervisor's fd count and RSS, at start, every 10
//             restarts, and at the end
//
//   node bench/restarts/supervisor.js [--quick] [--restarts R] [--crashes K]
//        [--deploys D] [--clients C] [--steady-ms MS] [--rounds N] [--work-us US] [--only workers,crash,rollback]
//        [--systems fdpass,fdpass-unbalanced,cluster,pm2]
'use strict'
const { execFile, spawn } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

const { httpLoad, options, pct } = require('./common')

const { flag, quick } = options(process.argv.slice(2))
// Totals per system, half under keep-alive load and half under new-connection load.
const RESTARTS = Number(flag('restarts', quick ? 6 : 100))
const CRASHES = Number(flag('crashes', quick ? 6 : 100))
const DEPLOYS = Number(flag('deploys', quick ? 4 : 20))
const half = (n) => Math.ceil(n / 2)
const CLIENTS = Number(flag('clients', 16))
const STEADY_MS = Number(flag('steady-ms', quick ? 2000 : 5000))
// Interleaved throughput rounds per system (the median is reported).
const ROUNDS = Number(flag('rounds', quick ? 1 : 3))
const ONLY = flag('only', 'workers,crash,rollback').split(',')
// fdpass-unbalanced: `fdpass run --workers 2 --no-balance`, in the workers row only.
const SYSTEMS = flag('systems', 'fdpass,fdpass-unbalanced,cluster,pm2').split(',')
const WORKERS = 2
// CPU time each request of the workers row's second throughput burns in the app:
// with it, the servers rather than the load generator are what is saturated.
const WORK_US = Number(flag('work-us', 200))
const PROBATION_MS = 3000
const SETTLE_MS = 100 // steady state between restarts
// Flat: over a whole row, the supervisor ends with at most this many more fds and this much more RSS than it started with.
const FLAT_FDS = 2
const FLAT_RSS_KB = 16 * 1024
const ROOT = path.join(__dirname, '../..')
const BIN = path.join(ROOT, 'bin/fdpass.js')
const SERVER = path.join(__dirname, 'supervised-server.js')
const PM2 = path.join(ROOT, 'node_modules/pm2/bin/pm2')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const fmt = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-')
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-bench-sup-'))
// pm2 homes with a daemon that may still run: killed on any exit, so that no daemon is left behind.
const pm2Homes = new Set()
process.on('exit', () => {
  for (const home of pm2Homes) {
    try {
      require('node:child_process').execFileSync(process.execPath, [PM2, 'kill'], { env: { ...process.env, PM2_HOME: home }, stdio: 'ignore', timeout: 20000 })
    } catch {}
  }
  fs.rmSync(tmp, { recursive: true, force: true })
})
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130))

/** A child whose stdout is JSON lines; wait(match) resolves with the first line that matches. */
function spawnJson(argv, env = {}) {
  const proc = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } })
  const waiters = []
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    let msg
    try {
      msg = JSON.parse(line)
    } catch {
      return
    }
    const i = waiters.findIndex((w) => w.match(msg))
    if (i >= 0) waiters.splice(i, 1)[0].resolve(msg)
  })
  const exited = new Promise((resolve) => proc.on('exit', resolve))
  return { proc, exited, wait: (match) => new Promise((resolve) => waiters.push({ match, resolve })) }
}

function run(file, argv, env = {}) {
  return new Promise((resolve) => {
    execFile(file, argv, { env: { ...process.env, ...env }, maxBuffer: 1 << 24 }, (error, stdout, stderr) =>
      resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr }),
    )
  })
}

/** GET / on a new connection: the serving pid, or null when nothing answers. */
function pidOf(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve(res.statusCode === 200 ? Number(body) : null))
    })
    req.on('error', () => resolve(null))
    req.setTimeout(2000, () => req.destroy())
  })
}

async function servingOtherThan(port, victim) {
  for (;;) {
    const pid = await pidOf(port)
    if (pid && pid !== victim) return pid
    await sleep(5)
  }
}

/** Closed-loop load of CLIENTS clients; a request with no answer in 10 s fails, and a client pauses 1 ms after a failure. */
const loadGenerator = (port, keepAlive, urlPath = '/') => httpLoad(port, { keepAlive, clients: CLIENTS, timeoutMs: 10000, errorPauseMs: 1, urlPath })

/** Successful requests per second with `keepAlive` (GET `urlPath`), after a 1 s warm-up. */
async function throughput(port, keepAlive, urlPath = '/') {
  const load = loadGenerator(port, keepAlive, urlPath)
  await sleep(1000)
  const from = load.samples.length
  const t0 = performance.now()
  await sleep(STEADY_MS)
  const ok = load.samples.slice(from).filter((s) => s[2]).length
  const seconds = (performance.now() - t0) / 1000
  await load.stop()
  return Math.round(ok / seconds)
}

/** The supervisor's open fds and VmRSS (kB), sampled at start, every 10 restarts and at the end. */
function leakProbe(pid) {
  const samples = []
  const sample = () => {
    const fds = fs.readdirSync(`/proc/${pid}/fd`).length
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1])
    samples.push({ fds, rssKb })
  }
  const stats = (key) => {
    const v = samples.map((s) => s[key])
    return { first: v[0], last: v[v.length - 1], min: Math.min(...v), max: Math.max(...v) }
  }
  return {
    sample,
    result() {
      const fds = stats('fds')
      const rssKb = stats('rssKb')
      return { samples: samples.length, fds, rssKb, flat: fds.last - fds.first <= FLAT_FDS && rssKb.last - rssKb.first <= FLAT_RSS_KB }
    },
  }
}

/** A port nothing listens on now (the kernel picks it). */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = require('node:net').createServer()
    probe.on('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
  })
}

/** The next ready line of `child` (spawnJson), or an error when it exits first. */
const ready = (child, what) =>
  Promise.race([child.wait((m) => m.ready), child.exited.then((code) => Promise.reject(new Error(`${what} exited (${code}) before it was ready`)))])

/** A system under test whose supervisor is `child` (spawnJson): reload() is `reload`; stop() ends the supervisor with SIGTERM. */
const supervisedBy = (child, name, reload) => ({
  name,
  pid: child.proc.pid,
  reload,
  async stop() {
    child.proc.kill('SIGTERM')
    await child.exited
  },
})

// ---- the systems under test --------------------------------------------------

/** `fdpass run` with `runArgs`; reload() runs `fdpass reload --json`. */
async function startFdpass(port, runArgs, env = {}, name = 'fdpass run') {
  const socket = path.join(tmp, `fdpass-${port}.supervisor.sock`)
  const control = path.join(tmp, `fdpass-${port}.sock`)
  const sup = spawnJson(
    [BIN, 'run', '--quiet', '--control', control, '--socket', socket, ...runArgs, '--', process.execPath, SERVER, 'fdpass', String(port)],
    env,
  )
  const workers = Number(runArgs[runArgs.indexOf('--workers') + 1])
  for (let i = 0; i < workers; i++) await ready(sup, 'fdpass run')
  return supervisedBy(sup, name, async () => {
    const r = await run(process.execPath, [BIN, 'reload', '--socket', socket, '--json'])
    let answer = null
    try {
      answer = JSON.parse(r.stdout)
    } catch {}
    return { ok: r.code === 0, code: r.code, answer }
  })
}

async function startCluster(port) {
  const primary = spawnJson([SERVER, 'cluster', String(port), String(WORKERS)])
  await ready(primary, 'the cluster primary')
  return supervisedBy(primary, 'node cluster', async () => {
    const rolled = primary.wait((m) => m.rolled)
    primary.proc.kill('SIGHUP')
    await rolled
    return { ok: true }
  })
}

/** A pm2 daemon of our own (PM2_HOME in a temp dir), killed by stop(). */
async function startPm2(port, name, pm2Args) {
  const home = fs.mkdtempSync(path.join(tmp, 'pm2-'))
  const env = { PM2_HOME: home }
  const pm2 = (...a) => run(process.execPath, [PM2, ...a], env)
  pm2Homes.add(home)
  const started = await pm2('start', SERVER, '--name', name, ...pm2Args, '--', 'plain', String(port))
  if (started.code !== 0) throw new Error(`pm2 start: exit ${started.code}: ${started.stderr || started.stdout}`)
  while (!(await pidOf(port))) await sleep(20)
  const daemonPid = Number(fs.readFileSync(path.join(home, 'pm2.pid'), 'utf8'))
  return {
    name: pm2Args.includes('-i') ? 'pm2 cluster' : 'pm2 fork',
    pid: daemonPid,
    async reload() {
      const r = await pm2('reload', name)
      return { ok: r.code === 0, code: r.code, stderr: r.stderr }
    },
    async stop() {
      await pm2('kill')
      pm2Homes.delete(home)
      // No daemon left behind, whatever `pm2 kill` did.
      for (const pid of [daemonPid]) {
        try {
          process.kill(pid, 0)
          process.kill(pid, 'SIGKILL')
        } catch {}
      }
    },
  }
}

// ---- rows ---------------------------------------------------------------------

/** `system` with WORKERS workers on `port`. */
function startWorkers(system, port) {
  if (system === 'fdpass') return startFdpass(port, ['--workers', String(WORKERS)])
  if (system === 'fdpass-unbalanced') return startFdpass(port, ['--workers', String(WORKERS), '--no-balance'], {}, 'fdpass run --no-balance')
  if (system === 'cluster') return startCluster(port)
  return startPm2(port, 'bench', ['-i', String(WORKERS), '--kill-timeout', '5000'])
}

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor((v.length - 1) / 2)]

/**
 * Throughput of every system, measured in ROUNDS interleaved rounds with all
 * of them started (an idle server costs nothing): for each load and path,
 * each system in turn, the order rotated each round. A machine that gets
 * slower or faster during the run then weighs on every system alike.
 * Returns rates[system][load][path] = [req/s per round].
 */
async function throughputRounds(started) {
  const rates = {}
  const loads = [
    ['keep-alive', true],
    ['new conn', false],
  ]
  const paths = [
    ['/', '/'],
    ['/work', `/work?us=${WORK_US}`],
  ]
  for (const { system } of started) rates[system] = { 'keep-alive': { '/': [], '/work': [] }, 'new conn': { '/': [], '/work': [] } }
  for (let round = 0; round < ROUNDS; round++) {
    const order = started.map((_, i) => started[(i + round) % started.length])
    for (const [load, keepAlive] of loads)
      for (const [name, urlPath] of paths) for (const { system, port } of order) rates[system][load][name].push(await throughput(port, keepAlive, urlPath))
  }
  return rates
}

/** R/2 rolling restarts under each load, with `sut` serving on `port`. */
async function rollingRestarts(sut, port, leaks) {
  leaks?.sample()
  const rows = []
  for (const keepAlive of [true, false]) {
    const load = loadGenerator(port, keepAlive)
    const durations = []
    const reloadErrors = []
    for (let r = 0; r < half(RESTARTS); r++) {
      await sleep(SETTLE_MS)
      const t0 = performance.now()
      const result = await sut.reload()
      durations.push(performance.now() - t0)
      if (!result.ok) reloadErrors.push(result)
      if (leaks && (r + 1) % 10 === 0) leaks.sample()
    }
    await sleep(SETTLE_MS)
    await load.stop()
    durations.sort((a, b) => a - b)
    rows.push({
      system: sut.name,
      keepAlive,
      restarts: half(RESTARTS),
      ...load.summary(),
      reloadP50: pct(durations, 0.5),
      reloadMax: durations[durations.length - 1],
      reloadErrors: reloadErrors.length,
      firstReloadError: reloadErrors[0] ?? null,
    })
  }
  leaks?.sample()
  return rows
}

/** kill -9 the serving process CRASHES times under load; time from each kill to a request served by its successor. */
async function crashRow(system, keepAlive, sut, port, leaks) {
  const load = loadGenerator(port, keepAlive)
  const kills = []
  for (let r = 0; r < half(CRASHES); r++) {
    await sleep(SETTLE_MS)
    const victim = await servingOtherThan(port, 0)
    const t0 = performance.now()
    kills.push(t0)
    process.kill(victim, 'SIGKILL')
    await servingOtherThan(port, victim)
    if (leaks && (r + 1) % 10 === 0) leaks.sample()
  }
  await sleep(SETTLE_MS)
  await load.stop()
  // From each kill to the end of the first request started after it that succeeded (as run.js).
  const ok = load.samples.filter((s) => s[2])
  const recover = kills.map((t0) => ok.filter((s) => s[0] >= t0).reduce((best, s) => Math.min(best, s[0] + s[1]), Infinity) - t0).sort((a, b) => a - b)
  return { system, keepAlive, crashes: half(CRASHES), ...load.summary(), servingAgainP50: pct(recover, 0.5), servingAgainMax: recover[recover.length - 1] }
}

async function crashRows(system) {
  const port = await freePort()
  // fdpass: each kill is its own crash (--restart-window shorter than the time between kills), as in run.js.
  // pm2: autorestart with no delay; an unlimited restart count, since each process lives less than min_uptime.
  const sut =
    system === 'fdpass'
      ? await startFdpass(port, ['--workers', '1', '--restart-window', '20', '--restart-limit', '2'])
      : await startPm2(port, 'crash', ['--max-restarts', '1000000', '--restart-delay', '0'])
  const name = system === 'fdpass' ? 'fdpass run' : 'pm2 fork'
  const leaks = system === 'fdpass' ? leakProbe(sut.pid) : null
  leaks?.sample()
  const rows = []
  try {
    for (const keepAlive of [true, false]) rows.push(await crashRow(name, keepAlive, sut, port, leaks))
    leaks?.sample()
  } finally {
    await sut.stop()
  }
  return { rows, leaks: leaks?.result() ?? null }
}

/** DEPLOYS reloads per way of dying whose new generation dies 1 s after it accepts, inside a 3 s probation; then one good deploy. */
async function rollbackRow() {
  const port = await freePort()
  const crashFile = path.join(tmp, `crash-${port}`)
  const sut = await startFdpass(port, ['--workers', '1', '--probation', String(PROBATION_MS)], { BENCH_CRASH_FILE: crashFile })
  const leaks = leakProbe(sut.pid)
  leaks.sample()
  const rows = []
  try {
    for (const [crash, keepAlive] of [
      ['exception', true],
      ['exception', false],
      ['kill -9', true],
      ['kill -9', false],
    ]) {
      const load = loadGenerator(port, keepAlive)
      const outcomes = {}
      fs.writeFileSync(crashFile, crash)
      for (let d = 0; d < half(DEPLOYS); d++) {
        await sleep(SETTLE_MS)
        const r = await sut.reload()
        const outcome = r.answer?.outcome ?? `exit ${r.code}`
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
        if (d % 10 === 9) leaks.sample()
      }
      fs.rmSync(crashFile)
      // The gate does not refuse everything: a deploy that does not crash commits.
      const good = await sut.reload()
      await sleep(SETTLE_MS)
      await load.stop()
      rows.push({
        system: 'fdpass run',
        crash,
        keepAlive,
        deploys: half(DEPLOYS),
        rolledBack: outcomes['rolled-back'] ?? 0,
        outcomes,
        goodDeploy: good.answer?.outcome ?? `exit ${good.code}`,
        ...load.summary(),
      })
    }
    leaks.sample()
  } finally {
    await sut.stop()
  }
  return { rows, leaks: leaks.result() }
}

// ---- main ---------------------------------------------------------------------

const loadName = (keepAlive) => (keepAlive ? 'keep-alive' : 'new conn  ')
const count = (r) =>
  `failed ${String(r.failed).padStart(5)}  refused ${String(r.refused).padStart(5)}  reset ${String(r.reset).padStart(5)}` +
  (Object.keys(r.otherErrors).length ? `  other ${JSON.stringify(r.otherErrors)}` : '')
const leakLine = (what, l) =>
  `leaks       ${what.padEnd(22)}  ${String(l.samples).padStart(3)} samples  fds first/last/min/max ${l.fds.first}/${l.fds.last}/${l.fds.min}/${l.fds.max}  RSS MiB ${fmt(l.rssKb.first / 1024)}/${fmt(l.rssKb.last / 1024)}/${fmt(l.rssKb.min / 1024)}/${fmt(l.rssKb.max / 1024)}  ${l.flat ? 'flat' : 'NOT FLAT'}`

async function main() {
  const out = {
    date: new Date().toISOString(),
    cpus: os.cpus().length,
    node: process.version,
    loadavg: os.loadavg(),
    clients: CLIENTS,
    restarts: RESTARTS,
    crashes: CRASHES,
    deploys: DEPLOYS,
    steadyMs: STEADY_MS,
    rounds: ROUNDS,
    flat: { fds: FLAT_FDS, rssKb: FLAT_RSS_KB },
    workers: [],
    crash: [],
    rollback: [],
    leaks: {},
  }
  const pm2Version = JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules/pm2/package.json'), 'utf8')).version
  console.log(`supervisors: ${CLIENTS} clients, ${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(2)}, node ${process.version}, pm2 ${pm2Version}`)
  let failedGoal = false
  if (ONLY.includes('workers')) {
    console.log(
      `workers: ${WORKERS} each; req/s over ${STEADY_MS} ms of GET / and of GET /work (${WORK_US} µs of CPU each), ${ROUNDS} interleaved round(s), median [min–max]; then ${RESTARTS} rolling restarts (${half(RESTARTS)} per load)`,
    )
    const started = []
    try {
      for (const system of SYSTEMS) {
        if (system === 'fdpass-unbalanced' && !SYSTEMS.includes('fdpass')) continue
        const port = await freePort()
        started.push({ system, port, sut: await startWorkers(system, port) })
      }
      const rates = await throughputRounds(started)
      out.workersThroughput = rates
      const span = (v) => `${String(median(v)).padStart(6)} [${Math.min(...v)}–${Math.max(...v)}]`
      for (const load of ['keep-alive', 'new conn'])
        for (const { system, sut } of started)
          console.log(
            `${load.padEnd(10)}  ${sut.name.padEnd(23)}  GET / ${span(rates[system][load]['/'])} req/s  GET /work ${span(rates[system][load]['/work'])} req/s`,
          )
      for (const { system, port, sut } of started) {
        const leaks = system === 'fdpass' ? leakProbe(sut.pid) : null
        for (const r of await rollingRestarts(sut, port, leaks)) {
          const load = r.keepAlive ? 'keep-alive' : 'new conn'
          const rate = median(rates[system][load]['/'])
          const workRate = median(rates[system][load]['/work'])
          out.workers.push({ ...r, rate, workRate })
          console.log(
            `${loadName(r.keepAlive)}  ${r.system.padEnd(23)}  restarts ${r.restarts}: ${String(r.requests).padStart(7)} req  ${count(r)}  restart p50/max ${fmt(r.reloadP50, 0)}/${fmt(r.reloadMax, 0)} ms` +
              (r.reloadErrors ? `  restart errors ${r.reloadErrors}` : ''),
          )
          if (system.startsWith('fdpass') && (r.failed > 0 || r.reloadErrors > 0)) failedGoal = true
        }
        if (leaks) {
          out.leaks.workers = leaks.result()
          console.log(leakLine(`workers (${2 * half(RESTARTS)} reloads)`, out.leaks.workers))
        }
      }
    } finally {
      for (const { sut } of started) await sut.stop()
    }
  }
  if (ONLY.includes('crash')) {
    console.log(`crash: kill -9 of the serving process ${CRASHES} times (${half(CRASHES)} per load), 1 process`)
    for (const system of ['fdpass', 'pm2'].filter((s) => SYSTEMS.includes(s))) {
      const { rows, leaks } = await crashRows(system)
      for (const r of rows) {
        out.crash.push(r)
        console.log(
          `${loadName(r.keepAlive)}  ${r.system.padEnd(12)}  ${String(r.requests).padStart(7)} req  ${count(r)}  kill to serving again p50/max ${fmt(r.servingAgainP50)}/${fmt(r.servingAgainMax)} ms`,
        )
        if (system === 'fdpass' && r.refused > 0) failedGoal = true
      }
      if (leaks) {
        out.leaks.crash = leaks
        console.log(leakLine(`crash (${2 * half(CRASHES)} kills)`, leaks))
      }
    }
    // run.js's crash rows (its fdpass-run and restart-loop) from its latest output, when there is one.
    const dir = path.join(__dirname, 'out')
    const latest = fs.existsSync(dir)
      ? fs
          .readdirSync(dir)
          .filter((f) => /^restarts-.*\.json$/.test(f))
          .sort()
          .pop()
      : undefined
    const prior = latest ? JSON.parse(fs.readFileSync(path.join(dir, latest), 'utf8')) : null
    for (const r of prior?.crashResults ?? [])
      console.log(
        `${loadName(r.keepAlive)}  ${r.strategy.padEnd(12)}  ${String(r.requests).padStart(7)} req  ${count(r)}  kill to serving again p50/max ${fmt(r.servingAgainP50)}/${fmt(r.servingAgainMax)} ms  (run.js, ${r.crashes} kills, ${prior.date})`,
      )
  }
  if (ONLY.includes('rollback') && SYSTEMS.includes('fdpass')) {
    console.log(
      `rollback: ${DEPLOYS} deploys per way of dying (${half(DEPLOYS)} per load) whose new generation dies 1 s after it accepts, --probation ${PROBATION_MS}, then one good deploy`,
    )
    const { rows, leaks } = await rollbackRow()
    for (const r of rows) {
      out.rollback.push(r)
      console.log(
        `${loadName(r.keepAlive)}  ${r.crash.padEnd(9)}  ${String(r.requests).padStart(7)} req  ${count(r)}  rolled back ${r.rolledBack}/${r.deploys} (${JSON.stringify(r.outcomes)})  good deploy ${r.goodDeploy}`,
      )
      // A process killed outright takes what it was serving with it; one that throws gives it back.
      if ((r.crash === 'exception' && r.failed > 0) || r.rolledBack !== r.deploys || r.goodDeploy !== 'committed') failedGoal = true
    }
    out.leaks.rollback = leaks
    console.log(leakLine(`rollback (${4 * half(DEPLOYS) + 4} deploys)`, leaks))
  }
  for (const l of Object.values(out.leaks)) if (!l.flat) failedGoal = true
  const dir = path.join(ROOT, 'bench/out')
  fs.mkdirSync(dir, { recursive: true })
  const file = path.join(dir, `supervisor-${out.date.replace(/[:.]/g, '-')}.json`)
  fs.writeFileSync(file, JSON.stringify(out, null, 2))
  console.log(`flat: last - first <= ${FLAT_FDS} fds and <= ${FLAT_RSS_KB / 1024} MiB RSS; wrote ${path.relative(process.cwd(), file)}`)
  if (failedGoal) {
    console.log('fdpass run: a failed request, a failed reload, a refused connection after a crash, a deploy not rolled back, or a leak: goal missed')
    process.exitCode = 1
  }
}

main()
  .catch((e) => {
    console.error(e)
    process.exitCode = 1
  })
  .finally(() => process.exit())
