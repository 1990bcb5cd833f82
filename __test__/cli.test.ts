// `fdpass run`: the supervisor restarts an app with zero downtime on
// SIGHUP and speaks the systemd notify protocol upwards.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { bind, type FdSocket } from '..'
import { type Child, cleanup, fixture, nextWhere, root, run, sleep, tmpPath, until, wrap } from './helpers'

afterEach(cleanup)

const supervisors: ChildProcess[] = []
/**
 * Stop every supervisor a test left running the way a user would (SIGTERM: its generations drain
 * and its socket files go); one that does not stop is killed with its generations, which a SIGKILL
 * of the supervisor alone would leave running.
 */
afterEach(async () => {
  await Promise.all(
    supervisors.splice(0).map(async (proc) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      const exited = new Promise((r) => proc.once('exit', r))
      proc.kill('SIGTERM')
      if (await Promise.race([exited.then(() => true), sleep(20_000).then(() => false)])) return
      const generations = spawnSync('pgrep', ['-P', String(proc.pid)], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter(Boolean)
      for (const pid of generations) process.kill(Number(pid), 'SIGKILL')
      proc.kill('SIGKILL')
      await exited
    }),
  )
}, 60_000)

async function next(notifications: FdSocket, key: string): Promise<Record<string, string>> {
  for (;;) {
    const m = await notifications.receive({ signal: AbortSignal.timeout(15_000) })
    const fields = Object.fromEntries(
      m.data
        .toString()
        .split('\n')
        .map((l) => l.split('=')),
    )
    if (key in fields) return fields
  }
}

describe('fdpass run', () => {
  test('SIGHUP restarts the app with no failed request; READY/RELOADING/STOPPING go to $NOTIFY_SOCKET', async () => {
    const notifyPath = tmpPath()
    const notifications = await bind(notifyPath)
    const port = 22000 + (process.pid % 5000)
    const supervisor = spawn(
      process.execPath,
      [path.join(root, 'bin/fdpass.js'), 'run', '--quiet', '--control', tmpPath(), '--', process.execPath, path.join(root, 'examples/hot-restart/server.js')],
      { env: { ...process.env, PORT: String(port), QUIET: '1', NOTIFY_SOCKET: notifyPath }, stdio: ['ignore', 'ignore', 'pipe'] },
    )
    supervisors.push(supervisor)
    const exited = new Promise<number | null>((r) => supervisor.on('exit', r))
    const ready = await next(notifications, 'READY')
    expect(ready.MAINPID).toBe(String(supervisor.pid))
    const first = await (await fetch(`http://127.0.0.1:${port}/`)).text()

    let failed = 0
    let ok = 0
    let running = true
    const loop = (async () => {
      while (running) {
        try {
          await (await fetch(`http://127.0.0.1:${port}/`)).text()
          ok++
        } catch {
          failed++
        }
      }
    })()
    for (let i = 0; i < 2; i++) {
      supervisor.kill('SIGHUP')
      const reloading = await next(notifications, 'RELOADING')
      // CLOCK_MONOTONIC (the same clock in this process: process.hrtime), not the wall clock.
      const lag = process.hrtime.bigint() / 1000n - BigInt(reloading.MONOTONIC_USEC)
      expect(lag >= 0n && lag < 60_000_000n).toBe(true)
      expect((await next(notifications, 'READY')).STATUS).toMatch(/^serving \(generation \d\)$/)
    }
    running = false
    await loop
    expect(failed).toBe(0)
    expect(ok).toBeGreaterThan(0)
    const last = await (await fetch(`http://127.0.0.1:${port}/`)).text()
    expect(last).not.toBe(first)

    supervisor.kill('SIGTERM')
    await next(notifications, 'STOPPING')
    expect(await exited).toBe(0)
    notifications.close()
  })
})

// ---------------------------------------------------------------------------
// The supervisor keeps the sockets: fd store, crash restarts, reloads, stops.

const bin = path.join(root, 'bin/fdpass.js')
const app = fixture('supervised-server.js')

interface Supervised {
  sup: Child
  control: string
  socket: string
  notifyPath: string
  setConfig(config: Record<string, unknown>): void
}

/** `ownGroup`: the supervisor leads a process group of its own, as a shell's job does, so a test can send what a terminal's Ctrl-C sends. */
function supervise(args: string[] = [], config: Record<string, unknown> = {}, env: Record<string, string> = {}, { ownGroup = false } = {}): Supervised {
  const control = tmpPath()
  const socket = tmpPath()
  const configPath = tmpPath('cfg')
  const setConfig = (c: Record<string, unknown>) => fs.writeFileSync(configPath, JSON.stringify(c))
  setConfig(config)
  const proc = spawn(process.execPath, [bin, 'run', '--control', control, '--socket', socket, ...args, '--', process.execPath, app], {
    env: { ...process.env, APP_CONFIG: configPath, APP_LOG: '1', NOTIFY_SOCKET: '', FDSTORE: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: ownGroup,
  })
  const sup = wrap(proc)
  supervisors.push(proc)
  return { sup, control, socket, notifyPath: path.join(os.tmpdir(), `fdpass-run-notify-${proc.pid}.sock`), setConfig }
}

const readyLine = (sup: Child, generation?: number) =>
  nextWhere(sup, (l) => l.ready && (generation === undefined || l.generation === generation), `generation ${generation ?? ''} ready`)

/** `fdpass <args>`: its exit code and stdout. */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (d) => (stdout += d))
    p.stderr.on('data', (d) => (stderr += d))
    p.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

async function status(socket: string): Promise<any> {
  const r = await cli(['status', '--socket', socket, '--json'])
  expect(r.code).toBe(0)
  return JSON.parse(r.stdout)
}

function request(port: number, urlPath = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
        let body = ''
        res.on('data', (d) => (body += d))
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))))
      })
      .on('error', reject)
  })
}

/** Closed-loop load, a new connection per request; errors counted by code. */
function load(port: number, clients = 4) {
  const stats = { ok: 0, errors: {} as Record<string, number> }
  let on = true
  const loops = Array.from({ length: clients }, async () => {
    while (on) {
      try {
        await request(port)
        stats.ok++
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message
        stats.errors[code] = (stats.errors[code] ?? 0) + 1
      }
    }
  })
  return {
    stats,
    failed: () => Object.values(stats.errors).reduce((a, b) => a + b, 0),
    async served(n: number) {
      const target = stats.ok + n
      await until(() => stats.ok >= target, `${n} more requests served`, 30_000)
    },
    async stop() {
      on = false
      await Promise.all(loops)
    },
  }
}

/**
 * A supervisor whose generation 1 serves under load while `fdpass reload`
 * starts generation 2, which says ready `delayReadyMs` after it took the
 * listeners: resolves once it took them.
 */
async function reloadUnderLoad(delayReadyMs: number) {
  const s = supervise()
  const first = await readyLine(s.sup, 1)
  s.setConfig({ delayReadyMs })
  const traffic = load(first.port)
  const reload = cli(['reload', '--socket', s.socket])
  const took = await nextWhere(s.sup, (l) => l.took && l.generation === 2)
  return { s, first, traffic, reload, took }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('fdpass run keeps the sockets', { timeout: 90_000 }, () => {
  test('kill -9 of the serving generation under load: no connection refused; the next one serves the same listening socket from the store', async () => {
    const s = supervise()
    const first = await readyLine(s.sup, 1)
    const traffic = load(first.port)
    await traffic.served(50)
    process.kill(first.pid, 'SIGKILL')
    const second = await readyLine(s.sup, 2)
    expect(second.inode).toBe(first.inode)
    expect(second.port).toBe(first.port)
    await traffic.served(50)
    await traffic.stop()
    expect(traffic.stats.errors.ECONNREFUSED ?? 0).toBe(0)
    // Only requests in flight on the killed process fail: at most one per client.
    expect(traffic.failed()).toBeLessThanOrEqual(4)
    const st = await status(s.socket)
    expect(st).toMatchObject({ serving: 2, restarts: 1, state: 'serving' })
    expect(st.stored.map((x: any) => x.name).sort()).toEqual(['fdpass.control', 'fdpass.tcp.127.0.0.1.0'])
    expect(s.sup.stderr()).toContain(`generation 1 (pid ${first.pid}) exited (signal SIGKILL); no generation serves`)
    // The restarted generation hands over by the usual handoff on a reload.
    const r = await cli(['reload', '--socket', s.socket, '--json'])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ outcome: 'committed', generation: 3 })
    expect((await readyLine(s.sup, 3)).inode).toBe(first.inode)
    s.sup.proc.kill('SIGTERM')
    expect((await s.sup.exit).code).toBe(0)
  })

  test('kill -9 of the new generation during a handoff: the reload fails (exit 1), is logged, and the old one serves on', async () => {
    const { s, traffic, reload, took } = await reloadUnderLoad(60_000)
    await traffic.served(20)
    process.kill(took.pid, 'SIGKILL')
    const r = await reload
    expect(r.code).toBe(1)
    expect(r.stdout).toContain('reload failed')
    await traffic.served(30)
    await traffic.stop()
    // The new generation accepts from the moment it has the listeners: requests it held die with it, no others.
    expect(traffic.stats.errors.ECONNREFUSED ?? 0).toBe(0)
    expect(traffic.failed()).toBeLessThanOrEqual(4)
    expect(s.sup.stderr()).toContain(`generation 2 (pid ${took.pid}) exited (signal SIGKILL) before ready; generation 1 serves on`)
    expect(await status(s.socket)).toMatchObject({ serving: 1, restarts: 0, reloads: { committed: 0, failed: 1 } })
  })

  test('kill -9 of the old generation during a handoff: the new one takes over; no connection refused', async () => {
    const { s, first, traffic, reload } = await reloadUnderLoad(1500) // generation 2 has the listeners
    process.kill(first.pid, 'SIGKILL')
    expect((await reload).code).toBe(0)
    const second = await readyLine(s.sup, 2)
    expect(second.inode).toBe(first.inode)
    await traffic.served(30)
    await traffic.stop()
    expect(traffic.stats.errors.ECONNREFUSED ?? 0).toBe(0)
    expect(traffic.failed()).toBeLessThanOrEqual(4)
    expect(await status(s.socket)).toMatchObject({ serving: 2, restarts: 0 })
  })

  test('a crash loop backs off, hits --restart-limit and the supervisor exits 1 saying why, leaving nothing behind', async () => {
    const s = supervise(['--restart-limit', '3', '--restart-window', '60000'], { crashAfterReadyMs: 0 })
    const pids: number[] = []
    for (let g = 1; g <= 3; g++) pids.push((await readyLine(s.sup, g)).pid)
    const { code } = await s.sup.exit
    expect(code).toBe(1)
    const err = s.sup.stderr()
    expect(err).toContain('restarting now with 2 stored descriptors (crash 1 of 3 within 60000 ms)')
    expect(err).toContain('restarting in 100 ms')
    expect(err).toContain('giving up: 3 crashes within 60000 ms (--restart-limit 3 --restart-window 60000)')
    for (const p of [s.control, s.socket, s.notifyPath]) expect(fs.existsSync(p)).toBe(false)
    for (const pid of pids) expect(alive(pid)).toBe(false)
  })

  test('two reloads at once and SIGHUPs during a start: queued and coalesced into one more reload, none lost', async () => {
    const s = supervise([], {})
    await readyLine(s.sup, 1)
    // Long enough for a second `fdpass reload` process to start while generation 2 does, on a loaded machine.
    s.setConfig({ delayReadyMs: 4000 })
    const a = cli(['reload', '--socket', s.socket, '--json'])
    await nextWhere(s.sup, (l) => l.took && l.generation === 2)
    const b = cli(['reload', '--socket', s.socket, '--json'])
    await until(() => s.sup.stderr().includes('reloading again after it'), 'the second reload queued', 30_000)
    s.sup.proc.kill('SIGHUP')
    await until(() => s.sup.stderr().includes('SIGHUP: generation 2 is starting; joined the reload queued after it'), 'SIGHUP joined the queue', 30_000)
    const [ra, rb] = await Promise.all([a, b])
    expect(ra.code).toBe(0)
    expect(rb.code).toBe(0)
    expect(JSON.parse(ra.stdout)).toMatchObject({ outcome: 'committed', generation: 2 })
    expect(JSON.parse(rb.stdout)).toMatchObject({ outcome: 'committed', generation: 3 })
    await readyLine(s.sup, 3)
    const st = await status(s.socket)
    expect(st).toMatchObject({ serving: 3, reloads: { committed: 2, failed: 0, queued: 0 } })
  })

  test('a SIGHUP while the first generation starts reloads once it serves', async () => {
    const s = supervise([], { delayReadyMs: 1000 })
    await nextWhere(s.sup, (l) => l.took && l.generation === 1)
    s.sup.proc.kill('SIGHUP')
    await readyLine(s.sup, 1)
    s.setConfig({})
    await readyLine(s.sup, 2)
    expect(s.sup.stderr()).toContain('SIGHUP: generation 1 is starting; reloading again after it')
  })

  test('SIGTERM while a generation is starting: everything stops, no process or socket file is left', async () => {
    const s = supervise()
    const first = await readyLine(s.sup, 1)
    s.setConfig({ delayReadyMs: 60_000 })
    s.sup.proc.kill('SIGHUP')
    const took = await nextWhere(s.sup, (l) => l.took && l.generation === 2)
    expect(fs.existsSync(s.notifyPath)).toBe(true)
    s.sup.proc.kill('SIGTERM')
    const exit = await Promise.race([s.sup.exit, sleep(15_000).then(() => null)])
    expect(exit, `the supervisor did not exit; its stderr:\n${s.sup.stderr()}`).toMatchObject({ code: 0 })
    for (const pid of [first.pid, took.pid]) expect(alive(pid)).toBe(false)
    for (const p of [s.control, s.socket, s.notifyPath]) expect(fs.existsSync(p)).toBe(false)
    await expect(request(first.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' })
  })

  test('a stop drains: an in-flight 1 s request completes after SIGTERM', async () => {
    const s = supervise()
    const first = await readyLine(s.sup, 1)
    const slow = request(first.port, '/slow?ms=1000')
    await sleep(200)
    s.sup.proc.kill('SIGTERM')
    expect(await slow).toBe(`slow ${first.pid}`)
    expect((await s.sup.exit).code).toBe(0)
  })

  test('a stop closes idle keep-alive connections at once instead of waiting out their keep-alive timeout', async () => {
    const s = supervise()
    const first = await readyLine(s.sup, 1)
    const idle = await Promise.all([keepAlive(first.port), keepAlive(first.port), keepAlive(first.port)])
    for (const c of idle) expect(await c.get()).toBe(String(first.pid))
    const started = Date.now()
    s.sup.proc.kill('SIGTERM')
    expect((await s.sup.exit).code).toBe(0)
    // Node's keepAliveTimeout is 5 s: waiting for it took 6 s.
    expect(Date.now() - started).toBeLessThan(2500)
    for (const c of idle) c.close()
  })

  test('Ctrl-C (SIGINT to the whole process group, as a terminal sends it) drains: an in-flight 1 s request completes', async () => {
    const s = supervise([], {}, {}, { ownGroup: true })
    const first = await readyLine(s.sup, 1)
    const slow = request(first.port, '/slow?ms=1000')
    await sleep(200)
    process.kill(-s.sup.proc.pid!, 'SIGINT')
    expect(await slow).toBe(`slow ${first.pid}`)
    expect((await s.sup.exit).code).toBe(0)
    expect(alive(first.pid)).toBe(false)
  })

  test('--watch survives atomic saves of a file and watches a directory recursively', async () => {
    const dir = tmpPath('watch')
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true })
    const file = path.join(dir, 'config.json')
    fs.writeFileSync(file, '1')
    const tree = tmpPath('tree')
    fs.mkdirSync(path.join(tree, 'deep', 'er'), { recursive: true })
    const s = supervise(['--watch', file, '--watch', tree])
    await readyLine(s.sup, 1)
    for (let g = 2; g <= 3; g++) {
      // An editor's save: write a new file, rename it over the old one.
      fs.writeFileSync(`${file}.tmp`, String(g))
      fs.renameSync(`${file}.tmp`, file)
      await readyLine(s.sup, g)
    }
    fs.writeFileSync(path.join(tree, 'deep', 'er', 'x.js'), 'changed')
    await readyLine(s.sup, 4)
    expect(s.sup.stderr()).toContain(`change in ${path.join(tree, 'deep', 'er', 'x.js')}`)
  })

  test('a --watch path that does not exist: a one-line error, exit 2, no socket file', async () => {
    const missing = tmpPath('missing')
    const s = supervise(['--watch', missing])
    const { code } = await s.sup.exit
    expect(code).toBe(2)
    expect(s.sup.stderr()).toBe(`fdpass: cannot watch ${missing}: no such file or directory (usage: fdpass --help)\n`)
    for (const p of [s.control, s.socket, s.notifyPath]) expect(fs.existsSync(p)).toBe(false)
  })

  test('--version and --help print to stdout and exit 0; fdpass reload without a supervisor exits 2', async () => {
    const v = await cli(['--version'])
    expect(v).toMatchObject({ code: 0, stdout: `${JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version}\n`, stderr: '' })
    for (const args of [['--help'], ['run', '--help']]) {
      const h = await cli(args)
      expect(h.code).toBe(0)
      expect(h.stdout).toContain('usage: fdpass run')
      expect(h.stderr).toBe('')
    }
    const r = await cli(['reload', '--socket', tmpPath()])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^fdpass reload: /)
  })
})

describe('fdpass run --workers', { timeout: 90_000 }, () => {
  test('workers balance their connections: bursts of 16 connections made at once end up within 2 of even, every one served', async () => {
    const s = supervise(['--workers', '2'])
    const ready = [await readyLine(s.sup), await readyLine(s.sup)]
    const port = ready[0].port
    for (let burst = 0; burst < 5; burst++) {
      const answers = (await burstOf(port, 16)).map((a) => a.body)
      const byPid = countBy(answers)
      expect(answers.length).toBe(16)
      expect(Object.keys(byPid).sort()).toEqual(ready.map((r) => String(r.pid)).sort())
      expect(Math.max(...Object.values(byPid))).toBeLessThanOrEqual(9)
      await sleep(300) // their closes reach the counts
    }
    // fdpass status shows each worker's open connections.
    const held = await Promise.all(
      Array.from(
        { length: 10 },
        () =>
          new Promise<net.Socket>((resolve) =>
            net.connect(port, '127.0.0.1', function (this: net.Socket) {
              resolve(this)
            }),
          ),
      ),
    )
    await sleep(300)
    const counts = (await status(s.socket)).workers.map((w: any) => w.connections)
    expect(counts[0] + counts[1]).toBe(10)
    expect(Math.min(...counts)).toBeGreaterThanOrEqual(4)
    for (const c of held) c.destroy()
  })

  test('a worker that cannot take part in balancing (its descriptors are not there) serves on its own, saying why', async () => {
    const child = run('supervised-server.js', [], {
      env: {
        ...process.env,
        FDPASS_CONTROL: tmpPath(),
        APP_LOG: '1',
        FDPASS_BALANCE: JSON.stringify({ worker: 0, workers: 2, counts: 900, inbox: 901, peers: [902, 903] }),
      },
    })
    const ready = await nextWhere(child, (l) => l.ready, 'ready')
    expect(await request(ready.port)).toBe(String(ready.pid))
    expect(child.stderr()).toMatch(/cannot balance \(.*\): this worker keeps what it accepts/)
    child.proc.kill('SIGKILL')
  })

  test('a worker whose event loop is blocked is passed at most 8 connections: the others are served at once', async () => {
    const s = supervise(['--workers', '2'])
    const ready = [await readyLine(s.sup), await readyLine(s.sup)]
    const [port, blocked, free] = [ready[0].port, ready.find((r) => r.worker === 1).pid, ready.find((r) => r.worker === 0).pid]
    const [c] = await connectionsTo(port, blocked, 1)
    const block = c.get('/block?ms=2000')
    await sleep(100)
    // 40 connections held open: by counts alone, the free worker would pass about half of them on.
    const answers = await burstOf(port, 40)
    const atOnce = answers.filter((a) => a.ms < 1000)
    expect(atOnce.length).toBeGreaterThanOrEqual(32)
    expect(atOnce.every((a) => a.body === String(free))).toBe(true)
    expect(await block).toBe(`blocked ${blocked}`)
    c.close()
  })

  test('two workers serve the same listening socket; a killed one restarts from the store while the other serves; no connection refused', async () => {
    const s = supervise(['--workers', '2'])
    const ready = [await readyLine(s.sup), await readyLine(s.sup)]
    expect(ready.map((r) => r.worker).sort()).toEqual([0, 1])
    expect(ready[1].inode).toBe(ready[0].inode)
    const port = ready[0].port
    const pids = new Set<string>()
    await until(
      () => {
        void request(port).then((p) => pids.add(p))
        return pids.size === 2
      },
      'both workers answering',
      30_000,
    )
    const traffic = load(port)
    await traffic.served(50)
    const victim = ready.find((r) => r.worker === 1)
    const survivor = ready.find((r) => r.worker === 0)
    process.kill(victim.pid, 'SIGKILL')
    const back = await readyLine(s.sup, 3)
    expect(back).toMatchObject({ worker: 1, inode: ready[0].inode })
    await traffic.served(50)
    await traffic.stop()
    expect(traffic.stats.errors.ECONNREFUSED ?? 0).toBe(0)
    expect(traffic.failed()).toBeLessThanOrEqual(4)
    const st = await status(s.socket)
    expect(st.workers).toEqual([
      { worker: 0, control: `${s.control}.0`, serving: survivor.generation, connections: expect.any(Number) },
      { worker: 1, control: `${s.control}.1`, serving: 3, connections: expect.any(Number) },
    ])
    expect(alive(survivor.pid)).toBe(true)
    expect(st.restarts).toBe(1)
  })

  test('a reload replaces the workers one at a time with 0 failed requests; a worker that crashes during it restarts from the store', async () => {
    const s = supervise(['--workers', '2'])
    const ready = [await readyLine(s.sup), await readyLine(s.sup)]
    const port = ready[0].port
    const traffic = load(port)
    await traffic.served(50)
    const r1 = await cli(['reload', '--socket', s.socket, '--json'])
    expect(r1.code).toBe(0)
    const o1 = JSON.parse(r1.stdout)
    expect(o1).toMatchObject({ outcome: 'committed' })
    expect(o1.workers.map((w: any) => [w.worker, w.outcome])).toEqual([
      [0, 'committed'],
      [1, 'committed'],
    ])
    await traffic.served(50)
    expect(traffic.failed()).toBe(0)
    // Again, and kill worker 1 while worker 0's new generation starts.
    s.setConfig({ delayReadyMs: 1000 })
    const serving1 = (await status(s.socket)).generations.find((g: any) => g.worker === 1 && g.state === 'serving')
    const r2 = cli(['reload', '--socket', s.socket, '--json'])
    await nextWhere(s.sup, (l) => l.took && l.worker === 0 && l.generation > 4)
    process.kill(serving1.pid, 'SIGKILL')
    expect((await r2).code).toBe(0)
    await traffic.served(50)
    await traffic.stop()
    expect(traffic.stats.errors.ECONNREFUSED ?? 0).toBe(0)
    expect(traffic.failed()).toBeLessThanOrEqual(4)
    const st = await status(s.socket)
    expect(st.workers.every((w: any) => w.serving > 4)).toBe(true)
    expect(st.restarts).toBe(1)
    expect(s.sup.stderr()).toContain(`exited (signal SIGKILL); no generation serves worker 1`)
  })
})

describe('fdpass run --health and --probation', { timeout: 90_000 }, () => {
  test('a failing health command rolls the reload back: exit 1, the old generation serves on, no request fails', async () => {
    const s = supervise(['--health', 'test "$FDPASS_GENERATION" != 2 && kill -0 "$FDPASS_PID"'])
    const first = await readyLine(s.sup, 1)
    const traffic = load(first.port)
    await traffic.served(30)
    const r = await cli(['reload', '--socket', s.socket, '--json'])
    expect(r.code).toBe(1)
    expect(JSON.parse(r.stdout)).toMatchObject({ outcome: 'rolled-back', generation: 2, reason: 'rolled back: health check exited (code 1)' })
    // The next one passes (FDPASS_PID is its pid, alive) and takes over.
    const r3 = await cli(['reload', '--socket', s.socket, '--json'])
    expect(JSON.parse(r3.stdout)).toMatchObject({ outcome: 'committed', generation: 3 })
    await traffic.served(30)
    await traffic.stop()
    expect(traffic.failed()).toBe(0)
    expect(await status(s.socket)).toMatchObject({ serving: 3, reloads: { committed: 1, rolledBack: 1, failed: 0 } })
  })

  test('a health URL is checked on the new generation, not on the old one that shares the port', async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (probe.address() as net.AddressInfo).port
        probe.close(() => resolve(p))
      })
    })
    const first = { port }
    // The old generation is healthy, the new one is not: only the new one's answer may count.
    const t = supervise(['--health', `http://127.0.0.1:${port}/health`], {}, { PORT: String(port) })
    const one = await readyLine(t.sup, 1)
    expect(one.port).toBe(port)
    t.setConfig({ unhealthy: true })
    const traffic = load(one.port)
    const r = await cli(['reload', '--socket', t.socket, '--json'])
    expect(r.code).toBe(1)
    expect(JSON.parse(r.stdout)).toMatchObject({
      outcome: 'rolled-back',
      reason: `rolled back: health check http://127.0.0.1:${first.port}/health answered 500`,
    })
    t.setConfig({})
    expect((await cli(['reload', '--socket', t.socket])).code).toBe(0)
    await traffic.served(30)
    await traffic.stop()
    expect(traffic.failed()).toBe(0)
  })

  test('a new generation that crashes during --probation is rolled back; the old one serves on, no connection refused', async () => {
    const s = supervise(['--probation', '3000'])
    const first = await readyLine(s.sup, 1)
    s.setConfig({ crashAfterListenMs: 500 })
    const traffic = load(first.port)
    const r = await cli(['reload', '--socket', s.socket, '--json'])
    expect(r.code).toBe(1)
    expect(JSON.parse(r.stdout)).toMatchObject({ outcome: 'rolled-back', generation: 2, reason: 'rolled back: exited (code 1) during probation' })
    await traffic.served(30)
    await traffic.stop()
    // It died of an exception: what it had accepted and not begun went back to the old generation.
    expect(traffic.failed()).toBe(0)
    const st = await status(s.socket)
    expect(st).toMatchObject({ serving: 1, restarts: 0, reloads: { rolledBack: 1 } })
    expect(alive(first.pid)).toBe(true)
  })

  // The canary's keep-alive connections: each is asked again, on the same connection, once the canary is gone.
  for (const [how, args, config] of [
    ['dies of an uncaught exception during probation', ['--probation', '8000'], { crashAfterListenMs: 2500 }],
    ['fails its health check', ['--health', 'sleep 2.5; test "$FDPASS_GENERATION" != 2'], {}],
  ] as const) {
    test(`a new generation that ${how} gives its idle keep-alive connections back: their next requests reach the old generation on the same connection`, async () => {
      const s = supervise([...args])
      const first = await readyLine(s.sup, 1)
      s.setConfig(config)
      const reload = cli(['reload', '--socket', s.socket, '--json'])
      const canary = await nextWhere(s.sup, (l) => l.took && l.generation === 2, 'generation 2 took the listeners')
      const onCanary = await connectionsTo(first.port, canary.pid, 4)
      const r = await reload
      expect(JSON.parse(r.stdout)).toMatchObject({ outcome: 'rolled-back', generation: 2 })
      await until(() => !alive(canary.pid), 'the canary exits')
      for (const c of onCanary) {
        expect(await c.get()).toBe(String(first.pid))
        c.close()
      }
      expect(s.sup.stderr()).toMatch(/gave \d+ connections back/)
    })
  }

  test.each([
    ['SIGTERM to the supervisor', false],
    ['Ctrl-C to the process group', true],
  ])('fdpass run stopped (%s) while a new generation is on probation: a request in progress on the new generation completes', async (_how, ctrlC) => {
    const s = supervise(['--probation', '8000'], {}, {}, { ownGroup: ctrlC })
    const first = await readyLine(s.sup, 1)
    void cli(['reload', '--socket', s.socket])
    const canary = await nextWhere(s.sup, (l) => l.took && l.generation === 2, 'generation 2 took the listeners')
    const [c] = await connectionsTo(first.port, canary.pid, 1)
    const slow = c.get('/slow?ms=1500')
    await sleep(300)
    if (ctrlC) process.kill(-s.sup.proc.pid!, 'SIGINT')
    else s.sup.proc.kill('SIGTERM')
    expect(await slow).toBe(`slow ${canary.pid}`)
    expect((await s.sup.exit).code).toBe(0)
    expect(alive(canary.pid)).toBe(false)
    expect(alive(first.pid)).toBe(false)
    c.close()
  })
})

/** `n` connections made at once, then (once the workers have accepted them) a request on each: each answer, and how long it took. */
async function burstOf(port: number, n: number): Promise<Array<{ body: string; ms: number }>> {
  const sockets = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Socket>((resolve, reject) =>
          net
            .connect(port, '127.0.0.1')
            .once('connect', function (this: net.Socket) {
              resolve(this)
            })
            .once('error', reject),
        ),
    ),
  )
  await sleep(200)
  return Promise.all(
    sockets.map(
      (socket) =>
        new Promise<{ body: string; ms: number }>((resolve, reject) => {
          const started = Date.now()
          let reply = ''
          socket.on('data', (d) => {
            reply += d
            const body = reply.split('\r\n\r\n')[1]
            if (body) {
              socket.destroy()
              resolve({ body, ms: Date.now() - started })
            }
          })
          socket.once('error', reject)
          socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        }),
    ),
  )
}

const countBy = (values: string[]) => values.reduce<Record<string, number>>((c, v) => ({ ...c, [v]: (c[v] ?? 0) + 1 }), {})

/** `count` keep-alive connections that `pid` answered (the kernel splits the accepts between two generations). */
async function connectionsTo(port: number, pid: number, count: number): Promise<KeepAlive[]> {
  const found: KeepAlive[] = []
  for (let i = 0; i < 400 && found.length < count; i++) {
    const c = await keepAlive(port)
    if ((await c.get()) === String(pid)) found.push(c)
    else c.close()
  }
  expect(found.length).toBe(count)
  return found
}

interface KeepAlive {
  /** GET `urlPath` on this one connection: the answer's body (the serving pid). */
  get(urlPath?: string): Promise<string>
  close(): void
}

/** One HTTP/1.1 keep-alive connection, never redialled: a request on a closed one fails. */
async function keepAlive(port: number): Promise<KeepAlive> {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  let buffered = ''
  let waiter: ((body: string) => void) | null = null
  let failed: ((e: Error) => void) | null = null
  socket.setEncoding('utf8')
  socket.on('data', (d: string) => {
    buffered += d
    const end = buffered.indexOf('\r\n\r\n')
    const length = /content-length: (\d+)/i.exec(buffered)
    if (end < 0 || !length || buffered.length < end + 4 + Number(length[1])) return
    const body = buffered.slice(end + 4, end + 4 + Number(length[1]))
    buffered = buffered.slice(end + 4 + Number(length[1]))
    waiter?.(body)
  })
  let closed: Error | null = null
  const gone = (e?: Error) => {
    closed ??= e ?? new Error('the connection closed')
    failed?.(closed)
  }
  socket.on('error', gone)
  socket.on('close', () => gone())
  return {
    get: (urlPath = '/') =>
      new Promise((resolve, reject) => {
        if (closed) return reject(closed)
        const timer = setTimeout(() => reject(new Error('no answer within 10 s')), 10_000)
        waiter = (body) => {
          clearTimeout(timer)
          resolve(body)
        }
        failed = (e) => {
          clearTimeout(timer)
          reject(e)
        }
        socket.write(`GET ${urlPath} HTTP/1.1\r\nHost: test\r\n\r\n`)
      }),
    close: () => socket.destroy(),
  }
}
