// The supervisor behind `fdpass run` (docs/supervisor.md): it starts
// generations of an app, keeps a duplicate of every listener in an fd store
// (the app stores them as in systemd's: FDSTORE=1 + FDNAME over
// $NOTIFY_SOCKET), starts a new generation at once on those listeners
// (LISTEN_FDS) when the serving one dies, reloads with zero downtime, and
// relays readiness to systemd (Type=notify) when it runs under it.
import { type ChildProcess, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as https from 'node:https'
import * as os from 'node:os'
import * as path from 'node:path'
import { BalanceHub } from './balance'
import type { FdpassError } from './errors'
import { bind, listen } from './open'
import { hot } from './native'
import { notify } from './notify'
import type { FdServer } from './server'
import type { FdSocket, Message } from './socket'
import { listenFds } from './systemd'
import { BACKOFF_FIRST_MS, CONTROL_NAME, FD_STORE_MAX, type RunOptions, UsageError, version } from './run-options'

/**
 * CLOCK_MONOTONIC in microseconds, as systemd expects in MONOTONIC_USEC
 * (it compares it with its own now(CLOCK_MONOTONIC) to match RELOADING=1
 * to this reload). On Linux, libuv's uv_hrtime (process.hrtime) reads
 * clock_gettime(CLOCK_MONOTONIC), the same clock and origin.
 */
function monotonicUsec(): bigint {
  return process.hrtime.bigint() / 1000n
}

type GenState = 'starting' | 'serving' | 'draining'

/** One worker position: its own control path and notify socket; one generation serves it at a time (two during a handoff). */
interface Slot {
  k: number
  control: string
  notifyPath: string
  notifySocket: FdSocket | null
  serving: Gen | null
  starting: Gen | null
  restartTimer: NodeJS.Timeout | null
  /** The outcome of the restart after a crash, while one is pending or starting. */
  restarting: Promise<ReloadOutcome> | null
}

export interface Gen {
  n: number
  slot: Slot
  child: ChildProcess
  pid: number
  startedAt: number
  readyAt: number | null
  state: GenState
  /** 'first', 'reload', or 'restart' (after a crash, from the fd store). */
  cause: 'first' | 'reload' | 'restart'
  onReady: (() => void) | null
  /** Why the health gate or probation turned it down. */
  rolledBack: string | null
  /** What it is in while it waits at the gate: its death then is a rollback too. */
  gate: 'probation' | 'the health check' | null
}

export interface ReloadOutcome {
  outcome: 'committed' | 'failed' | 'rolled-back'
  /** The last generation started (with workers: one per worker, in order). */
  generation: number
  pid: number | null
  durationMs: number
  reason?: string
  /** With --workers > 1: each worker's new generation. */
  workers?: Array<{ worker: number; generation: number; pid: number | null; outcome: string }>
}

interface PendingReload {
  reasons: string[]
  waiters: Array<(o: ReloadOutcome) => void>
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `signal ${signal}` : `code ${code}`
}

const isControlName = (name: string) => name === CONTROL_NAME || /^fdpass\.control\.\d+$/.test(name)

export class Supervisor {
  readonly #o: RunOptions
  readonly #log: (line: string) => void
  readonly #startedAt = Date.now()
  readonly #slots: Slot[]
  #server: FdServer | null = null
  readonly #gens = new Set<Gen>()
  /**
   * The fd store: FDNAME → our duplicates of the descriptors stored under it.
   * The listeners are the same for every worker; each worker's control
   * listener is kept as fdpass.control.<worker> (fdpass.control for worker 0).
   */
  readonly #store = new Map<string, number[]>()
  #crashes: number[] = []
  #restarts = 0
  readonly #reloads = { committed: 0, failed: 0, rolledBack: 0 }
  #pending: PendingReload | null = null
  #rolling = false
  #stopping = false
  #generation = 0
  #watchers: fs.FSWatcher[] = []
  /** With several workers: the counters and inboxes that balance connections among them (balance.ts). */
  #balance: BalanceHub | null = null

  constructor(o: RunOptions) {
    this.#o = o
    this.#log = o.quiet ? () => {} : (line) => process.stderr.write(`[fdpass run] ${line}\n`)
    this.#slots = Array.from({ length: o.workers }, (_, k) => ({
      k,
      control: o.workers === 1 ? o.control : `${o.control}.${k}`,
      notifyPath: path.join(os.tmpdir(), `fdpass-run-notify-${process.pid}${o.workers === 1 ? '' : `.${k}`}.sock`),
      notifySocket: null,
      serving: null,
      starting: null,
      restartTimer: null,
      restarting: null,
    }))
  }

  #name(g: Gen): string {
    return `generation ${g.n} (pid ${g.pid}${this.#slots.length > 1 ? `, worker ${g.slot.k}` : ''})`
  }

  async start(): Promise<void> {
    // Check what can fail on the user's input before creating anything that would be left behind.
    const watches = this.#o.watch.map((p) => {
      try {
        return { path: p, dir: fs.statSync(p).isDirectory() }
      } catch (e) {
        throw new UsageError(`cannot watch ${p}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (e as Error).message}`)
      }
    })
    // Listeners systemd kept for us (FileDescriptorStoreMax=, or socket activation): the fd store starts with them.
    for (const l of listenFds()) this.#store.set(l.name, [...(this.#store.get(l.name) ?? []), l.fd])

    try {
      for (const slot of this.#slots) {
        const socket = await bind(slot.notifyPath, { type: 'dgram' })
        slot.notifySocket = socket
        socket.unref()
        socket.on('message', (m: Message) =>
          this.#onNotify(
            slot,
            m.data.toString('utf8'),
            m.fds.map((fd) => fd.release()),
          ),
        )
      }
      if (this.#o.workers > 1 && this.#o.balance) this.#balance = new BalanceHub(this.#o.workers)
      this.#server = await listen(this.#o.socket, { allow: { uids: [process.getuid?.() ?? 0] } })
    } catch (e) {
      await this.#cleanup()
      throw e
    }
    this.#server.unref()
    this.#server.on('connection', (conn: FdSocket) => void this.#onClient(conn))

    // If this process dies of an error, its generations must not serve on unsupervised.
    process.on('exit', () => {
      for (const g of this.#gens) g.child.kill('SIGTERM')
    })
    for (const sig of ['SIGHUP', 'SIGUSR2'] as const) process.on(sig, () => void this.reload(sig))
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => void this.stop(sig))
    for (const w of watches) this.#watch(w.path, w.dir)

    // Worker 0 binds (or restores) the listeners and stores them; the others start from the store.
    const first = await this.#spawn(this.#slots[0], 'first')
    const rest = first.outcome === 'committed' ? await Promise.all(this.#slots.slice(1).map((s) => this.#spawn(s, 'first'))) : []
    const failed = [first, ...rest].find((o) => o.outcome !== 'committed')
    if (failed) {
      this.#log(`the first generation did not become ready (${failed.reason}); exiting`)
      return this.#shutdown(1)
    }
    await this.#notifyUp({ READY: 1, MAINPID: process.pid, STATUS: this.#statusLine() })
    this.#next() // a reload asked for while the first generation was starting
  }

  #statusLine(): string {
    const serving = this.#slots.map((s) => s.serving?.n ?? '-')
    return `serving (generation ${serving.join(', ')})`
  }

  #watch(target: string, isDir: boolean): void {
    let timer: NodeJS.Timeout | null = null
    const changed = (what: string) => {
      if (timer) clearTimeout(timer)
      timer = setTimeout(() => void this.reload(`change in ${what}`), 200)
    }
    if (isDir) {
      this.#watchers.push(fs.watch(target, { persistent: false, recursive: true }, (_e, name) => changed(name ? path.join(target, String(name)) : target)))
      return
    }
    // Watch the directory, not the file: an atomic save (sed -i, editors) renames a new file over it,
    // and a watch on the file would stay on the old, unlinked one.
    const base = path.basename(target)
    this.#watchers.push(
      fs.watch(path.dirname(target), { persistent: false }, (_e, name) => {
        if (name !== null && String(name) === base) changed(target)
      }),
    )
  }

  #onNotify(slot: Slot, text: string, fds: number[]): void {
    const fields: Record<string, string> = {}
    for (const line of text.split('\n')) {
      const eq = line.indexOf('=')
      if (eq > 0) fields[line.slice(0, eq)] = line.slice(eq + 1)
    }
    const storeAs = (name: string) => (name === CONTROL_NAME && slot.k > 0 ? `${CONTROL_NAME}.${slot.k}` : name)
    if (fields.FDSTORE === '1' && fds.length > 0) {
      this.#storeFds(storeAs(fields.FDNAME || 'stored'), fds)
      fds = []
    } else if (fields.FDSTOREREMOVE === '1' && fields.FDNAME) {
      this.#unstore(storeAs(fields.FDNAME))
    }
    for (const fd of fds) hot.closeFd(fd)
    if (fields.READY === '1') {
      const pid = Number(fields.MAINPID)
      const gen = [...this.#gens].find((g) => g.slot === slot && g.pid === pid && g.onReady) ?? (slot.starting?.onReady ? slot.starting : undefined)
      gen?.onReady?.()
    }
  }

  #storeFds(name: string, fds: number[]): void {
    const total = [...this.#store.values()].reduce((n, l) => n + l.length, 0) - (this.#store.get(name)?.length ?? 0)
    if (total + fds.length > FD_STORE_MAX) {
      this.#log(`fd store full (${FD_STORE_MAX}): not keeping ${name}`)
      for (const fd of fds) hot.closeFd(fd)
      return
    }
    this.#unstore(name)
    this.#store.set(name, fds)
    // Under systemd with its own fd store, keep them there too: they then survive this supervisor.
    if (Number(process.env.FDSTORE) > 0) void this.#notifyUp({ FDSTORE: 1, FDNAME: name }, fds)
  }

  #unstore(name: string): void {
    for (const fd of this.#store.get(name) ?? []) hot.closeFd(fd)
    this.#store.delete(name)
  }

  #notifyUp(state: Record<string, string | number>, fds?: number[]): Promise<boolean> {
    return notify(state, fds).catch((e) => {
      this.#log(`could not notify $NOTIFY_SOCKET: ${(e as Error).message}`)
      return false
    })
  }

  #busy(): string | null {
    for (const s of this.#slots) if (s.starting) return `generation ${s.starting.n} is starting`
    if (this.#rolling) return 'a reload is in progress'
    for (const s of this.#slots) if (s.restartTimer || !s.serving) return 'a restart is pending'
    return null
  }

  /** Reload now, or after the one in progress (reloads asked for meanwhile become one). */
  reload(reason: string): Promise<ReloadOutcome> {
    if (this.#stopping)
      return Promise.resolve({ outcome: 'failed', generation: this.#generation, pid: null, durationMs: 0, reason: 'the supervisor is stopping' })
    return new Promise((resolve) => {
      const busy = this.#busy()
      if (busy) {
        const queued = this.#pending !== null
        this.#pending ??= { reasons: [], waiters: [] }
        this.#pending.reasons.push(reason)
        this.#pending.waiters.push(resolve)
        this.#log(`${reason}: ${busy}; ${queued ? 'joined the reload queued' : 'reloading again'} after it`)
        return
      }
      void this.#runReload({ reasons: [reason], waiters: [resolve] })
    })
  }

  /** A reload: one handoff per worker, one worker after the other (a rolling restart); stops at the first that fails. */
  async #runReload(p: PendingReload): Promise<void> {
    this.#rolling = true
    const started = Date.now()
    this.#log(
      `${p.reasons.join(', ')}: starting generation ${this.#generation + 1}${this.#slots.length > 1 ? ` (rolling over ${this.#slots.length} workers)` : ''}`,
    )
    await this.#notifyUp({ RELOADING: 1, MONOTONIC_USEC: String(monotonicUsec()) })
    const outcomes: ReloadOutcome[] = []
    for (const slot of this.#slots) {
      if (this.#stopping) break
      // A worker that crashed meanwhile restarts from the store, with the new code too: that start counts.
      const o = slot.restarting ? await slot.restarting : await this.#spawn(slot, 'reload')
      outcomes.push(o)
      if (o.outcome !== 'committed') break
    }
    this.#rolling = false
    const failed = outcomes.find((o) => o.outcome !== 'committed')
    const last = failed ?? outcomes[outcomes.length - 1]
    const outcome: ReloadOutcome = {
      outcome: failed ? failed.outcome : outcomes.length === 0 ? 'failed' : 'committed',
      generation: last?.generation ?? this.#generation,
      pid: last?.pid ?? null,
      durationMs: Date.now() - started,
      ...(failed ? { reason: failed.reason } : outcomes.length === 0 ? { reason: 'the supervisor is stopping' } : {}),
      ...(this.#slots.length > 1 ? { workers: outcomes.map((o, k) => ({ worker: k, generation: o.generation, pid: o.pid, outcome: o.outcome })) } : {}),
    }
    if (outcome.outcome === 'committed') this.#reloads.committed++
    else if (outcome.outcome === 'rolled-back') this.#reloads.rolledBack++
    else this.#reloads.failed++
    await this.#notifyUp({ READY: 1, STATUS: outcome.outcome === 'committed' ? this.#statusLine() : `reload failed; ${this.#statusLine()}` })
    for (const w of p.waiters) w(outcome)
    this.#next()
  }

  /** Run a reload that was asked for while another start was in progress. */
  #next(): void {
    if (this.#stopping || !this.#pending || this.#busy()) return
    const p = this.#pending
    this.#pending = null
    void this.#runReload(p)
  }

  async stop(signal: NodeJS.Signals): Promise<void> {
    if (this.#stopping) {
      this.#log(`${signal} again: killing the generations`)
      for (const g of this.#gens) g.child.kill('SIGKILL')
      return
    }
    this.#stopping = true
    this.#log(`${signal}: stopping; generations drain (up to ${this.#o.stopTimeout} ms)`)
    await this.#notifyUp({ STOPPING: 1 })
    for (const s of this.#slots) {
      if (s.restartTimer) clearTimeout(s.restartTimer)
      s.restartTimer = null
    }
    const pending = this.#pending
    this.#pending = null
    for (const w of pending?.waiters ?? [])
      w({ outcome: 'failed', generation: this.#generation, pid: null, durationMs: 0, reason: 'the supervisor is stopping' })
    // A generation under fdpass run drains on SIGTERM; one still starting just exits.
    const exits = [...this.#gens].map((g) =>
      g.child.exitCode !== null || g.child.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => g.child.once('exit', () => r())),
    )
    for (const g of this.#gens) g.child.kill('SIGTERM')
    const timer = setTimeout(() => {
      this.#log(`generations still running after ${this.#o.stopTimeout} ms; killing them`)
      for (const g of this.#gens) g.child.kill('SIGKILL')
    }, this.#o.stopTimeout)
    await Promise.all(exits)
    clearTimeout(timer)
    this.#log('stopped')
    await this.#exit(0)
  }

  /** Start a generation in a worker slot (with the stored listeners, unless it is a reload); resolves once it is ready or failed. */
  #spawn(slot: Slot, cause: Gen['cause']): Promise<ReloadOutcome> {
    const n = ++this.#generation
    const [cmd, ...args] = this.#o.command
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      FDPASS_CONTROL: slot.control,
      FDPASS_GENERATION: String(n),
      FDPASS_WORKER: String(slot.k),
      FDPASS_RUN: String(process.pid),
      NOTIFY_SOCKET: slot.notifyPath,
      FDSTORE: String(FD_STORE_MAX),
    }
    // Workers accept from one shared queue, and libuv accepts every
    // connection waiting at once: one worker could take a burst of
    // keep-alive clients and keep them. One accept per turn, with a yield
    // between (libuv's UV_TCP_SINGLE_ACCEPT), lets the others take their share.
    if (this.#o.workers > 1 && env.UV_TCP_SINGLE_ACCEPT === undefined) env.UV_TCP_SINGLE_ACCEPT = '1'
    if (cause === 'reload' && (this.#o.health || this.#o.probation > 0)) {
      env.FDPASS_GATE = this.#o.socket
      if (this.#o.health && /^https?:\/\//.test(this.#o.health)) env.FDPASS_PID_HEADER = '1'
    }
    delete env.LISTEN_PID
    delete env.LISTEN_FDS
    delete env.LISTEN_FDNAMES
    const fds: number[] = []
    const names: string[] = []
    // A reload takes the listeners from the serving generation (handoff); a start with nobody
    // serving takes them from the store (a generation given both would serve beside the old one).
    if (cause !== 'reload') {
      const ownControl = slot.k === 0 ? CONTROL_NAME : `${CONTROL_NAME}.${slot.k}`
      for (const [name, list] of this.#store) {
        if (isControlName(name) && name !== ownControl) continue
        for (const fd of list) {
          fds.push(fd)
          names.push(isControlName(name) ? CONTROL_NAME : name)
        }
      }
    }
    // Balancing's descriptors follow the LISTEN_FDS ones, which they are not part of.
    const balance = this.#balance?.forGeneration(slot.k, fds.length, cause !== 'reload')
    if (balance) env.FDPASS_BALANCE = balance.env
    else delete env.FDPASS_BALANCE
    const extra = balance?.fds ?? []
    let child: ChildProcess
    if (fds.length > 0) {
      // The stored descriptors become the child's 3, 4, ... (sd_listen_fds). LISTEN_PID must be the
      // app's own pid, known only in the child: a shell sets it and execs the command (same pid).
      env.LISTEN_FDS = String(fds.length)
      env.LISTEN_FDNAMES = names.join(':')
      child = spawn('/bin/sh', ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"', cmd, ...args], {
        stdio: ['inherit', 'inherit', 'inherit', ...fds, ...extra],
        env,
      })
    } else {
      child = spawn(cmd, args, { stdio: ['inherit', 'inherit', 'inherit', ...extra], env })
    }
    const gen: Gen = {
      n,
      slot,
      child,
      pid: child.pid ?? -1,
      startedAt: Date.now(),
      readyAt: null,
      state: 'starting',
      cause,
      onReady: null,
      rolledBack: null,
      gate: null,
    }
    this.#gens.add(gen)
    slot.starting = gen
    return new Promise((resolve) => {
      let settled = false
      const settle = (ok: boolean, reason?: string) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        gen.onReady = null
        if (slot.starting === gen) slot.starting = null
        const durationMs = Date.now() - gen.startedAt
        if (ok) {
          gen.state = 'serving'
          gen.readyAt = Date.now()
          const previous = slot.serving
          if (previous && previous !== gen) previous.state = 'draining'
          slot.serving = gen
          const from = cause === 'restart' ? ` (restarted from the fd store: ${fds.length} descriptors)` : ''
          this.#log(`${this.#name(gen)} serving after ${durationMs} ms${from}`)
          resolve({ outcome: 'committed', generation: n, pid: gen.pid, durationMs })
        } else {
          const serving = slot.serving
          if (gen.rolledBack) reason = `rolled back: ${gen.rolledBack}`
          this.#log(`${this.#name(gen)} ${reason}${serving ? `; generation ${serving.n} serves on` : ''}`)
          resolve({ outcome: gen.rolledBack ? 'rolled-back' : 'failed', generation: n, pid: gen.pid, durationMs, reason })
          if (!serving && !this.#stopping && cause !== 'first') this.#noServer(slot)
        }
      }
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        settle(false, `not ready after ${this.#o.readyTimeout} ms; killed it`)
      }, this.#o.readyTimeout)
      gen.onReady = () => settle(true)
      child.on('error', (e) => {
        this.#gens.delete(gen)
        settle(false, `could not start ${cmd}: ${e.message}`)
      })
      child.on('exit', (code, signal) => {
        this.#gens.delete(gen)
        const how = describeExit(code, signal)
        if (!settled) {
          if (gen.gate && !gen.rolledBack) gen.rolledBack = `exited (${how}) during ${gen.gate}`
          return settle(false, `exited (${how}) before ready`)
        }
        if (this.#stopping) return this.#log(`${this.#name(gen)} exited (${how})`)
        if (gen !== slot.serving) return this.#log(`${this.#name(gen)} exited (${how}) after handing over`)
        slot.serving = null
        if (slot.starting) {
          // A predecessor exits once it handed over and drained, which can be before its
          // successor's READY=1 reaches us; if the successor fails, it restarts (settle above).
          this.#log(`${this.#name(gen)} exited (${how}) while generation ${slot.starting.n} is starting`)
          return
        }
        this.#log(`${this.#name(gen)} exited (${how}); no generation serves${this.#slots.length > 1 ? ` worker ${slot.k}` : ''}`)
        this.#noServer(slot)
      })
    })
  }

  /** Nothing serves a worker: restart from the fd store, at once the first time, later with backoff; give up past the limit. */
  #noServer(slot: Slot): void {
    this.#balance?.nobodyServes(slot.k)
    const now = Date.now()
    this.#crashes = this.#crashes.filter((t) => now - t < this.#o.restartWindow)
    this.#crashes.push(now)
    const crashes = this.#crashes.length
    if (crashes >= this.#o.restartLimit) {
      this.#log(
        `giving up: ${crashes} crashes within ${this.#o.restartWindow} ms (--restart-limit ${this.#o.restartLimit} --restart-window ${this.#o.restartWindow})`,
      )
      void this.#notifyUp({ STATUS: `gave up after ${crashes} crashes` })
      void this.#shutdown(1)
      return
    }
    const delay = crashes === 1 ? 0 : Math.min(this.#o.backoffMax, BACKOFF_FIRST_MS * 2 ** (crashes - 2))
    const stored = [...this.#store]
      .filter(([name]) => !isControlName(name) || name === (slot.k === 0 ? CONTROL_NAME : `${CONTROL_NAME}.${slot.k}`))
      .reduce((k, [, l]) => k + l.length, 0)
    this.#log(
      `restarting ${delay === 0 ? 'now' : `in ${delay} ms`} with ${stored} stored descriptors (crash ${crashes} of ${this.#o.restartLimit} within ${this.#o.restartWindow} ms)`,
    )
    const restarting = new Promise<ReloadOutcome>((resolve) => {
      slot.restartTimer = setTimeout(() => {
        slot.restartTimer = null
        this.#restarts++
        void this.#spawn(slot, 'restart').then((o) => {
          if (slot.restarting === restarting) slot.restarting = null
          resolve(o)
          if (o.outcome === 'committed') {
            void this.#notifyUp({ STATUS: this.#statusLine() })
            this.#next()
          }
        })
      }, delay)
    })
    slot.restarting = restarting
  }

  /** Kill what runs, then clean up and exit: for giving up. */
  async #shutdown(code: number): Promise<void> {
    this.#stopping = true
    for (const s of this.#slots) if (s.restartTimer) clearTimeout(s.restartTimer)
    for (const g of this.#gens) g.child.kill('SIGKILL')
    await Promise.all(
      [...this.#gens].map((g) => new Promise((r) => (g.child.exitCode !== null || g.child.signalCode !== null ? r(null) : g.child.once('exit', r)))),
    )
    await this.#exit(code)
  }

  /**
   * A new generation asks before it takes over (--health, --probation): both serve now.
   * Go when it survives the probation and passes the health check.
   */
  async #gate(pid: number): Promise<{ go: boolean; reason?: string }> {
    const gen = [...this.#gens].find((g) => g.pid === pid && g.state === 'starting')
    if (!gen) return { go: true }
    const died = new Promise<string>((resolve) => {
      if (gen.child.exitCode !== null || gen.child.signalCode !== null) resolve('exited')
      gen.child.once('exit', (code, signal) => resolve(`exited (${describeExit(code, signal)}) during ${gen.gate}`))
    })
    let reason: string | null = null
    gen.gate = 'probation'
    if (this.#o.probation > 0) {
      this.#log(`${this.#name(gen)} on probation for ${this.#o.probation} ms beside generation ${gen.slot.serving?.n}`)
      let timer: NodeJS.Timeout | undefined
      reason = await Promise.race([died, new Promise<null>((r) => (timer = setTimeout(r, this.#o.probation, null)))])
      clearTimeout(timer)
    }
    gen.gate = 'the health check'
    if (reason === null && this.#o.health) reason = await Promise.race([died, this.#health(gen)])
    if (reason === null) {
      this.#log(`${this.#name(gen)} passed${this.#o.health ? ' its health check' : ''}${this.#o.probation > 0 ? ' probation' : ''}`)
      return { go: true }
    }
    gen.rolledBack ??= reason
    this.#log(`${this.#name(gen)} ${reason}: rolling back`)
    return { go: false, reason }
  }

  /** Null when healthy, else why not. */
  #health(gen: Gen): Promise<string | null> {
    const check = this.#o.health as string
    const deadline = Date.now() + this.#o.readyTimeout
    if (/^https?:\/\//.test(check)) {
      // The old generation answers on the same port: only an answer carrying the new one's pid counts.
      const attempt = (): Promise<string | null> =>
        new Promise((resolve) => {
          const get = check.startsWith('https:') ? https.get : http.get
          const req = get(check, { agent: false, headers: { connection: 'close' }, timeout: 5_000 }, (res) => {
            res.resume()
            const from = Number(res.headers['fdpass-pid'])
            if (from !== gen.pid) return resolve('other')
            const ok = res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300
            resolve(ok ? null : `health check ${check} answered ${res.statusCode}`)
          })
          req.on('timeout', () => req.destroy(new Error('timed out')))
          req.on('error', (e) => resolve(`health check ${check} failed: ${e.message}`))
        })
      const loop = async (): Promise<string | null> => {
        for (;;) {
          const r = await attempt()
          if (r !== 'other') return r
          if (Date.now() > deadline) return `no answer from the new generation at ${check} within ${this.#o.readyTimeout} ms`
          await new Promise((res) => setTimeout(res, 10))
        }
      }
      return loop()
    }
    return new Promise((resolve) => {
      const env = { ...process.env, FDPASS_PID: String(gen.pid), FDPASS_GENERATION: String(gen.n), FDPASS_WORKER: String(gen.slot.k) }
      const child = spawn('/bin/sh', ['-c', check], { stdio: ['ignore', 'inherit', 'inherit'], env })
      const timer = setTimeout(() => child.kill('SIGKILL'), Math.max(0, deadline - Date.now()))
      child.on('error', (e) => resolve(`health check could not run: ${e.message}`))
      child.on('exit', (code, signal) => {
        clearTimeout(timer)
        resolve(code === 0 ? null : `health check exited (${describeExit(code, signal)})`)
      })
    })
  }

  async #onClient(conn: FdSocket): Promise<void> {
    try {
      const m = await conn.receive({ signal: AbortSignal.timeout(10_000) })
      for (const fd of m.fds) fd.close()
      const request = JSON.parse(m.data.toString('utf8')) as { cmd?: string; pid?: number }
      let answer: unknown
      if (request.cmd === 'status') answer = this.status()
      else if (request.cmd === 'gate') answer = await this.#gate(Number(request.pid))
      else if (request.cmd === 'reload') answer = await this.reload(`fdpass reload${request.pid ? ` (pid ${request.pid})` : ''}`)
      else answer = { error: `unknown command ${String(request.cmd)}` }
      await conn.send(JSON.stringify(answer))
    } catch (e) {
      // A client that closes before it asks anything (`fdpass status`
      // looking for a live supervisor) is not worth a line.
      if ((e as FdpassError).code !== 'ERR_FDPASS_SOCKET_CLOSED') this.#log(`a status/reload client: ${(e as Error).message}`)
    } finally {
      conn.close()
    }
  }

  status(): Record<string, unknown> {
    const now = Date.now()
    const gens = [...this.#gens].sort((a, b) => a.n - b.n)
    const allServing = this.#slots.every((s) => s.serving)
    return {
      pid: process.pid,
      version: version(),
      uptimeMs: now - this.#startedAt,
      command: this.#o.command,
      control: this.#o.control,
      socket: this.#o.socket,
      state: this.#stopping ? 'stopping' : allServing ? 'serving' : 'restarting',
      serving: this.#slots[0].serving?.n ?? null,
      workers: this.#slots.map((s) => ({
        worker: s.k,
        control: s.control,
        serving: s.serving?.n ?? null,
        // Balanced workers count their open connections; null without balancing.
        connections: this.#balance?.connections(s.k) ?? null,
      })),
      generations: gens.map((g) => ({
        generation: g.n,
        worker: g.slot.k,
        pid: g.pid,
        state: g.state,
        cause: g.cause,
        uptimeMs: now - g.startedAt,
        readyMs: g.readyAt === null ? null : g.readyAt - g.startedAt,
      })),
      stored: [...this.#store].map(([name, fds]) => ({ name, count: fds.length })),
      restarts: this.#restarts,
      recentCrashes: this.#crashes.filter((t) => now - t < this.#o.restartWindow).length,
      reloads: { ...this.#reloads, queued: this.#pending?.waiters.length ?? 0 },
    }
  }

  async #cleanup(): Promise<void> {
    for (const w of this.#watchers) w.close()
    for (const s of this.#slots) s.notifySocket?.close()
    await this.#server?.close().catch(() => {})
    for (const name of this.#store.keys()) this.#unstore(name)
    this.#balance?.close()
    this.#balance = null
    const files = [this.#o.socket, this.#o.control, ...this.#slots.flatMap((s) => [s.notifyPath, s.control])]
    for (const p of new Set(files)) await fs.promises.rm(p, { force: true })
  }

  async #exit(code: number): Promise<void> {
    await this.#cleanup()
    process.exit(code)
  }
}
