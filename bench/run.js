#!/usr/bin/env node
// fd-passing benchmark: every implementation between two processes over a
// Unix socket, in one run. Prints a table and writes JSON to bench/out/.
//   node bench/run.js [--quick] [--runs N] [--only c,fdpass-seqpacket-uv] [--workloads W1,W3] [--runtimes]
// --runtimes adds fdpass on Node 22 and 24 (both mechanisms), Bun and Deno,
// installed from the npm registry by scripts/runtimes.js (W1 and W3).
'use strict'
const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

const argv = process.argv.slice(2)
const opt = (name, fallback) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : fallback)
const quick = argv.includes('--quick')
const RUNS = Number(opt('runs', quick ? 1 : 3))
// W4 runs at least 5 times: its idle RSS moves most between runs (V8 and
// Node faulting in their own code during the window; bench/README.md), and a median
// of 3 then depends on one run.
const W4_RUNS = quick ? RUNS : Math.max(RUNS, 5)
const W1_COUNT = quick ? 20_000 : 200_000
const W2_COUNT = quick ? 1_000 : 10_000
const W3_COUNT = quick ? 2_000 : 20_000
// Untimed round trips first, in every implementation: the JIT compilers of
// Node and Python (and their compiler threads, on the one pinned CPU) warm
// up, and V8's young generation settles at its size: after 2,000, runs of
// the same code still split between two medians 1 µs apart, and p99 was
// 25% higher. What is measured is a long-running exchange's steady state.
const W3_WARMUP = quick ? 200 : 20_000
const W4_CONNS = quick ? 200 : 1_000
const W4_PER = quick ? 10 : 50
const WORKLOADS = opt('workloads', 'W1,W2,W3,W4').split(',')
const dir = __dirname
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-bench-'))
const file = path.join(tmp, 'the-file')
fs.writeFileSync(file, 'every receiver checks it got this file')

function build() {
  fs.mkdirSync(path.join(dir, '.build'), { recursive: true })
  const cc = spawnSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-pthread', '-o', path.join(dir, '.build/fdbench'), path.join(dir, 'c/fdbench.c')], {
    stdio: 'inherit',
  })
  if (cc.status !== 0) throw new Error('cc failed')
  if (!fs.existsSync(path.join(dir, '.deps/node_modules/usocket/build/Release/uwrap.node'))) {
    const npm = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--foreground-scripts'], { cwd: path.join(dir, '.deps'), stdio: 'inherit' })
    if (npm.status !== 0) throw new Error('installing usocket failed')
  }
}

const node = (script, env = {}) => ({ cmd: process.execPath, pre: [path.join(dir, 'impl', script)], env })
const IMPLS = {
  c: { cmd: path.join(dir, '.build/fdbench'), pre: [], env: {}, w: ['W1', 'W2', 'W3', 'W4'] },
  // The same C program as a process with threads, as every runtime's is.
  'c-threaded': { cmd: path.join(dir, '.build/fdbench'), pre: [], env: { FDBENCH_THREAD: '1' }, w: ['W1', 'W2', 'W3'] },
  python: { cmd: 'python3', pre: [path.join(dir, 'impl/python.py')], env: {}, w: ['W1', 'W2', 'W3'] },
  'node-ipc': { special: 'ipc', w: ['W1'] },
  usocket: { ...node('usocket.js'), w: ['W1', 'W2', 'W3'] },
  // Node's own net, one byte each way and no descriptors: the event loop's floor for W3.
  'node-net': { ...node('node-net.js'), w: ['W3'] },
  'fdpass-seqpacket-uv': { ...node('fdpass.js', { FDPASS_REACTOR: 'uv', FDPASS_BENCH_TYPE: 'seqpacket' }), w: ['W1', 'W2', 'W3', 'W4'] },
  'fdpass-seqpacket-uv-batch': { ...node('fdpass.js', { FDPASS_REACTOR: 'uv', FDPASS_BENCH_TYPE: 'seqpacket', FDPASS_BENCH_API: 'batch' }), w: ['W2'] },
  'fdpass-seqpacket-uv-sync': { ...node('fdpass.js', { FDPASS_REACTOR: 'uv', FDPASS_BENCH_TYPE: 'seqpacket', FDPASS_BENCH_API: 'sync' }), w: ['W3'] },
  'fdpass-seqpacket-thread': { ...node('fdpass.js', { FDPASS_REACTOR: 'thread', FDPASS_BENCH_TYPE: 'seqpacket' }), w: ['W1', 'W2', 'W3', 'W4'] },
  'fdpass-stream-uv': { ...node('fdpass.js', { FDPASS_REACTOR: 'uv', FDPASS_BENCH_TYPE: 'stream' }), w: ['W1', 'W2', 'W3'] },
  'fdpass-stream-thread': { ...node('fdpass.js', { FDPASS_REACTOR: 'thread', FDPASS_BENCH_TYPE: 'stream' }), w: ['W1', 'W2', 'W3'] },
}
if (argv.includes('--runtimes')) {
  const { install } = require('../scripts/runtimes.js')
  const fdpassOn = (id, reactor, pre = []) => ({
    cmd: install(id),
    pre: [...pre, path.join(dir, 'impl', 'fdpass.js')],
    env: { FDPASS_REACTOR: reactor, FDPASS_BENCH_TYPE: 'seqpacket' },
    w: ['W1', 'W3'],
    runtime: id,
  })
  // W3 with sendSync()/receiveSync(): no event loop in the exchange, so the
  // runtimes without libuv lose nothing to their readiness mechanism.
  const syncOn = (id, reactor, pre = []) => {
    const impl = fdpassOn(id, reactor, pre)
    return { ...impl, env: { ...impl.env, FDPASS_BENCH_API: 'sync' }, w: ['W3'] }
  }
  Object.assign(IMPLS, {
    'fdpass-node22-uv': fdpassOn('node22', 'uv'),
    'fdpass-node22-thread': fdpassOn('node22', 'thread'),
    'fdpass-node24-uv': fdpassOn('node24', 'uv'),
    'fdpass-node24-thread': fdpassOn('node24', 'thread'),
    'fdpass-bun-thread': fdpassOn('bun', 'thread'),
    'fdpass-deno-thread': fdpassOn('deno', 'thread', ['run', '-A']),
    'fdpass-node22-uv-sync': syncOn('node22', 'uv'),
    'fdpass-node24-uv-sync': syncOn('node24', 'uv'),
    'fdpass-bun-thread-sync': syncOn('bun', 'thread'),
    'fdpass-deno-thread-sync': syncOn('deno', 'thread', ['run', '-A']),
  })
}
const ONLY = opt('only', Object.keys(IMPLS).join(',')).split(',')

function start(impl, args, pin) {
  const prefix = pin ? ['taskset', '-c', '0'] : []
  const [cmd, ...rest] = [...prefix, impl.cmd, ...impl.pre, ...args]
  const proc = spawn(cmd, rest, { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, ...impl.env } })
  const lines = []
  const waiting = []
  readline.createInterface({ input: proc.stdout }).on('line', (l) => {
    if (!l.trim()) return
    const v = JSON.parse(l)
    const w = waiting.shift()
    if (w) w(v)
    else lines.push(v)
  })
  const exited = new Promise((r) => proc.on('exit', r))
  const timer = setTimeout(() => proc.kill('SIGKILL'), 120_000)
  exited.then(() => clearTimeout(timer))
  return {
    proc,
    exited,
    next: () =>
      lines.length
        ? Promise.resolve(lines.shift())
        : new Promise((r) => {
            waiting.push(r)
            exited.then(() => r(null))
          }),
  }
}

async function throughput(impl, count, nfds) {
  const sock = path.join(tmp, `s-${Math.random()}`)
  if (impl.special === 'ipc') {
    const p = start(node('node-ipc.js'), ['run', String(count), file])
    const r = await p.next()
    await p.exited
    return { fds: r.recv.fds, lost: r.recv.lost, leaked: r.recv.leaked, bad: r.recv.bad, seconds: r.recv.ns / 1e9, cpuUs: r.recv.cpuUs + r.send.cpuUs }
  }
  const recv = start(impl, ['recv', sock, String(count), String(nfds), file])
  await recv.next()
  const send = start(impl, ['send', sock, String(count), String(nfds), file])
  const [r, s] = await Promise.all([recv.next(), send.next()])
  await Promise.all([recv.exited, send.exited])
  if (!r || !s) throw new Error(`${impl.cmd} ${impl.pre} failed`)
  return { fds: r.fds, lost: r.lost, leaked: r.leaked, bad: r.bad, seconds: r.ns / 1e9, cpuUs: r.cpuUs + s.cpuUs }
}

async function pingPong(impl, pin) {
  const sock = path.join(tmp, `p-${Math.random()}`)
  const echo = start(impl, ['echo', sock, '0'], pin)
  await echo.next()
  const ping = start(impl, ['ping', sock, String(W3_COUNT), file, String(W3_WARMUP)], pin)
  const r = await ping.next()
  await ping.exited
  echo.proc.kill()
  await echo.exited
  return r
}

async function many(impl) {
  const sock = path.join(tmp, `m-${Math.random()}`)
  const recv = start(impl, ['many-recv', sock, String(W4_CONNS), String(W4_PER), file])
  await recv.next()
  const send = start(impl, ['many-send', sock, String(W4_CONNS), String(W4_PER), file])
  await recv.next() // all connections accepted, idle RSS measured
  send.proc.stdin.write('go\n')
  const r = await recv.next()
  send.proc.kill()
  await Promise.all([recv.exited, send.exited])
  return r
}

/** fdpass: JS heap per idle socket (bench/impl/fdpass.js idle-heap), connected to by the C program. */
async function idleHeap(impl) {
  const sock = path.join(tmp, `h-${Math.random()}`)
  const recv = start(impl, ['idle-heap', sock, String(W4_CONNS)])
  await recv.next()
  const send = start(IMPLS.c, ['many-send', sock, String(2 * W4_CONNS), '1', file])
  const r = await recv.next()
  send.proc.kill()
  await Promise.all([recv.exited, send.exited])
  return r.jsBytesPerSocket
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
const stat = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) })

async function main() {
  build()
  const info = {
    date: new Date().toISOString(),
    cpus: os.cpus().length,
    cpu: os.cpus()[0]?.model,
    node: process.version,
    load: os.loadavg()[0],
    runs: RUNS,
    quick,
  }
  console.log(`fd-passing benchmark ${info.date}: ${info.cpus} × ${info.cpu}, Node ${info.node}, load ${info.load.toFixed(2)}, ${RUNS} run(s) each`)
  const results = {}
  for (const [name, impl] of Object.entries(IMPLS)) {
    if (!ONLY.includes(name)) continue
    const r = (results[name] = {})
    for (const w of WORKLOADS) {
      if (!impl.w.includes(w)) continue
      const runs = []
      for (let i = 0; i < (w === 'W4' ? W4_RUNS : RUNS); i++) {
        if (w === 'W1') runs.push(await throughput(impl, W1_COUNT, 1))
        if (w === 'W2') runs.push(await throughput(impl, W2_COUNT, 64))
        if (w === 'W3') runs.push({ pinned: await pingPong(impl, true), unpinned: await pingPong(impl, false) })
        if (w === 'W4') runs.push(await many(impl))
      }
      if (w === 'W1' || w === 'W2') {
        r[w] = {
          fdsPerSecond: stat(runs.map((x) => x.fds / x.seconds)),
          cpuUsPerFd: stat(runs.map((x) => x.cpuUs / Math.max(1, x.fds))),
          lost: runs.reduce((a, x) => a + x.lost, 0),
          leaked: runs.reduce((a, x) => a + Math.max(0, x.leaked), 0),
          bad: runs.reduce((a, x) => a + x.bad, 0),
        }
      } else if (w === 'W3') {
        r.W3 = {
          pinnedP50: stat(runs.map((x) => x.pinned.p50)),
          pinnedP99: stat(runs.map((x) => x.pinned.p99)),
          unpinnedP50: stat(runs.map((x) => x.unpinned.p50)),
          unpinnedP99: stat(runs.map((x) => x.unpinned.p99)),
        }
      } else if (w === 'W4') {
        r.W4 = {
          fdsPerSecond: stat(runs.map((x) => x.fds / (x.ns / 1e9))),
          rssIdleMiB: stat(runs.map((x) => x.rssIdleKb / 1024)),
          rssIdleAnonMiB: stat(runs.map((x) => x.rssIdleAnonKb / 1024)),
          bad: runs.reduce((a, x) => a + x.bad, 0),
        }
        if (impl.pre[0]?.endsWith('fdpass.js')) r.W4.jsHeapBytesPerIdleSocket = await idleHeap(impl)
      }
      console.log(`  ${name.padEnd(24)} ${w} ${JSON.stringify(r[w])}`)
    }
  }
  report(results)
  const out = path.join(dir, 'out')
  fs.mkdirSync(out, { recursive: true })
  const f = path.join(out, `fd-${info.date.replace(/[:.]/g, '-')}.json`)
  fs.writeFileSync(f, JSON.stringify({ info, results }, null, 2))
  console.log(`wrote ${path.relative(process.cwd(), f)}`)
  fs.rmSync(tmp, { recursive: true, force: true })
}

function report(results) {
  const c = results.c
  const fmt = (x, d = 0) => (x === undefined ? 'n/a' : x.toFixed(d))
  const rel = (x, base) => (x && base ? `${((x / base) * 100).toFixed(0)}%` : '')
  console.log(
    '\nimplementation            W1 fds/s (of C)        W2 fds/s (of C)        CPU µs/fd W1  W3 pinned p50/p99 µs  W3 unpinned p50/p99  W4 fds/s, idle MiB (anon)  lost/leaked',
  )
  for (const [name, r] of Object.entries(results)) {
    const lossy = (r.W1?.lost ?? 0) + (r.W2?.lost ?? 0) > 0 ? ' LOSES FDS' : ''
    console.log(
      [
        name.padEnd(25),
        `${fmt(r.W1?.fdsPerSecond.median)} ${rel(r.W1?.fdsPerSecond.median, c?.W1?.fdsPerSecond.median)}`.padEnd(22),
        `${fmt(r.W2?.fdsPerSecond.median)} ${rel(r.W2?.fdsPerSecond.median, c?.W2?.fdsPerSecond.median)}`.padEnd(22),
        fmt(r.W1?.cpuUsPerFd.median, 2).padEnd(13),
        `${fmt(r.W3?.pinnedP50.median, 1)}/${fmt(r.W3?.pinnedP99.median, 1)}`.padEnd(21),
        `${fmt(r.W3?.unpinnedP50.median, 1)}/${fmt(r.W3?.unpinnedP99.median, 1)}`.padEnd(20),
        `${fmt(r.W4?.fdsPerSecond.median)}, ${fmt(r.W4?.rssIdleMiB.median, 2)} (${fmt(r.W4?.rssIdleAnonMiB?.median, 2)})`.padEnd(26),
        `${(r.W1?.lost ?? 0) + (r.W2?.lost ?? 0)}/${(r.W1?.leaked ?? 0) + (r.W2?.leaked ?? 0)}${lossy}`,
      ].join(' '),
    )
  }
  reportRuntimes(results)
  const f = results['fdpass-seqpacket-uv']
  if (!c || !f) return
  const batch = results['fdpass-seqpacket-uv-batch']
  const sync = results['fdpass-seqpacket-uv-sync']
  const w2 = (r) => r?.W2 && r.W2.fdsPerSecond.median >= 0.85 * c.W2.fdsPerSecond.median
  const p50 = (r) => r?.W3 && r.W3.pinnedP50.median <= 1.5 * c.W3.pinnedP50.median
  const p99 = (r) => r?.W3 && r.W3.pinnedP99.median <= 2 * c.W3.pinnedP99.median
  const checks = [
    ['W1 ≥ 60% of C', f.W1 && f.W1.fdsPerSecond.median >= 0.6 * c.W1.fdsPerSecond.median],
    ['W2 ≥ 85% of C', w2(f)],
    ['W2 ≥ 85% of C, with statAll/closeAll (fdpass-seqpacket-uv-batch)', w2(batch)],
    ['W3 pinned p50 ≤ 1.5× C', p50(f)],
    ['W3 pinned p50 ≤ 1.5× C, sendSync/receiveSync (fdpass-seqpacket-uv-sync)', p50(sync)],
    ['W3 pinned p99 ≤ 2× C', p99(f)],
    ['W3 pinned p99 ≤ 2× C, sendSync/receiveSync', p99(sync)],
    ['CPU/fd W1 ≤ 1.7× C', f.W1 && f.W1.cpuUsPerFd.median <= 1.7 * c.W1.cpuUsPerFd.median],
    ['W4 ≥ 50% of W1', f.W4 && f.W1 && f.W4.fdsPerSecond.median >= 0.5 * f.W1.fdsPerSecond.median],
    ['W4 1,000 idle sockets ≤ 4 MiB', f.W4 && f.W4.rssIdleMiB.median <= 4],
    [
      '0 fds lost, 0 leaked',
      Object.entries(results)
        .filter(([n]) => n.startsWith('fdpass'))
        .every(([, r]) => ['W1', 'W2'].every((w) => !r[w] || (r[w].lost === 0 && r[w].leaked === 0 && r[w].bad === 0))),
    ],
  ]
  console.log('\nfdpass (seqpacket, uv) against the targets:')
  for (const [name, ok] of checks) console.log(`  ${ok === undefined ? 'not run' : ok ? 'met    ' : 'NOT MET'}  ${name}`)
  if (f.W4?.jsHeapBytesPerIdleSocket) {
    console.log(
      `  (an idle socket's JavaScript heap, after full collections: ${f.W4.jsHeapBytesPerIdleSocket} bytes; RSS (anonymous) ${fmt(f.W4.rssIdleAnonMiB.median, 2)} MiB per 1,000)`,
    )
  }
  const ct = results['c-threaded']
  if (ct?.W2 && c.W2) {
    // The kernel's own cost for a process with threads, as every runtime's is.
    console.log(
      `  (C with one idle thread: W2 ${rel(ct.W2.fdsPerSecond.median, c.W2.fdsPerSecond.median)} of C, W3 pinned p50 ${(ct.W3?.pinnedP50.median ?? NaN).toFixed(1)} µs)`,
    )
  }
  const nn = results['node-net']
  if (nn?.W3 && c.W3) {
    // What Node's event loop alone costs a round trip, with no descriptors at all.
    const x = (v, w) => `${(v / w).toFixed(2)}× C`
    console.log(
      `  (Node's own net, one byte, no descriptors: W3 pinned p50 ${nn.W3.pinnedP50.median.toFixed(1)} µs = ${x(nn.W3.pinnedP50.median, c.W3.pinnedP50.median)}, p99 ${x(nn.W3.pinnedP99.median, c.W3.pinnedP99.median)}: the event API's floor)`,
    )
  }
}

/** fdpass on each runtime and mechanism, against the best mechanism on this Node. */
function reportRuntimes(results) {
  const rows = Object.entries(results).filter(([n]) => /^fdpass-(seqpacket-(uv|thread)(-sync)?$|node\d+-|bun-|deno-)/.test(n))
  if (rows.length < 2) return
  const nodeUv = results['fdpass-seqpacket-uv']?.W1?.fdsPerSecond.median
  const nodeThread = results['fdpass-seqpacket-thread']?.W1?.fdsPerSecond.median
  const best = Math.max(nodeUv ?? 0, nodeThread ?? 0)
  console.log(`\nfdpass per runtime (seqpacket; W1 as a share of the best mechanism on Node ${process.versions.node})`)
  console.log('runtime, mechanism           W1 fds/s (of best)     W3 pinned p50/p99 µs  W3 unpinned p50/p99 µs')
  for (const [name, r] of rows) {
    const w1 = r.W1?.fdsPerSecond.median
    console.log(
      [
        name
          .replace(/^fdpass-/, '')
          .replace('seqpacket-', `node${process.versions.node.split('.')[0]}-`)
          .padEnd(29),
        `${w1 === undefined ? 'n/a' : w1.toFixed(0)} ${w1 && best ? `(${((w1 / best) * 100).toFixed(0)}%)` : ''}`.padEnd(22),
        `${r.W3?.pinnedP50.median.toFixed(1) ?? 'n/a'}/${r.W3?.pinnedP99.median.toFixed(1) ?? 'n/a'}`.padEnd(21),
        `${r.W3?.unpinnedP50.median.toFixed(1) ?? 'n/a'}/${r.W3?.unpinnedP99.median.toFixed(1) ?? 'n/a'}`,
      ].join(' '),
    )
  }
  if (nodeUv && nodeThread) {
    const share = nodeThread / Math.max(nodeUv, nodeThread)
    console.log(
      `  ${share >= 0.8 ? 'met    ' : 'NOT MET'}  the Node-API-only mechanism (thread) reaches ≥ 80% of the best mechanism's W1 on Node: ${(share * 100).toFixed(0)}%`,
    )
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
