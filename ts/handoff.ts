// fdpass/handoff: zero-downtime restarts. A new generation of a server
// takes the listening sockets of the running one over a Unix control
// socket, starts accepting on the same kernel sockets, and only then does
// the old generation stop accepting, drain and exit. See docs/handoff.md.
import { createHash } from 'node:crypto'
import * as dgram from 'node:dgram'
import * as dns from 'node:dns'
import * as fs from 'node:fs'
import type * as http from 'node:http'
import * as net from 'node:net'
import { WorkerBalance } from './balance'
import { Emitter } from './events'
import { FdpassError, type FdpassErrorCode, type ResolverErrorCode, callNative, fromNative, invalidArgType, invalidArgValue } from './errors'
import { adoptServer, connect } from './open'
import { binding, fdStat, hot, type InetKind } from './native'
import {
  ConnectionMigration,
  type ControlChannel,
  MIGRATION_PROTOCOL_VERSION,
  type MigratedConnectionHandler,
  type MigratedConnectionOptions,
  type MigrationResult,
  type MigrationState,
  type MigrationSummary,
} from './migration'
import { notify } from './notify'
import { type ListenFd, listenFds } from './systemd'
import type { FdServer } from './server'
import type { FdSocket, Message } from './socket'

/** Version of the control protocol (docs/handoff.md, "Handoff protocol"). */
export const HANDOFF_PROTOCOL_VERSION = 1

export {
  HTTP1_KIND,
  MAX_CONNECTIONS_PER_BATCH,
  MIGRATION_PROTOCOL_VERSION,
  type MigratedConnectionHandler,
  type MigratedConnectionInfo,
  type MigratedConnectionOptions,
  type MigrationResult,
  type MigrationState,
  type MigrationSummary,
} from './migration'

export type ListenerSpec =
  | { tcp: { port: number; host?: string; backlog?: number } }
  | { unix: { path: string; mode?: number; backlog?: number } }
  | { udp: { port: number; host?: string; reusePort?: boolean } }
  /** A socket-activated listener (LISTEN_FDNAMES name), used when no previous generation has it. */
  | { systemd: string }

export interface HandoffOptions<L extends Record<string, ListenerSpec> = Record<string, ListenerSpec>> {
  /**
   * Path of the control socket (created with mode 0600; its directory must
   * exist). @default $FDPASS_CONTROL (set by `fdpass run`)
   */
  control?: string
  /** The named listeners this server uses. */
  listeners: L
  /** How long to wait for the running generation's answers. @default 5000 */
  connectTimeout?: number
  /** How long the running generation waits for a successor's "ready". @default 30000 */
  readyTimeout?: number
  /** How long draining may take before remaining connections are closed. @default 30000 */
  drainTimeout?: number
  /** Exit the process once drained (after a successor took over). @default true */
  exitAfterDrain?: boolean
  /** Peer uids allowed on the control socket. @default [process.getuid()] */
  allowedUids?: number[]
  /** Where log lines go; `false` for none. @default a line on stderr per phase */
  log?: ((line: string) => void) | false
  /**
   * Move established connections to the successor during a handoff (idle
   * HTTP/1.1 keep-alive connections, and what the app hands over with
   * `migrate()`), and adopt them from the predecessor. `false`: drain them
   * as before (keep-alive clients get `Connection: close`).
   * See docs/handoff-connections.md. @default true
   */
  migrateConnections?: boolean
}

/** One completed or aborted handoff, as seen by either side. */
export interface HandoffRecord {
  role: 'predecessor' | 'successor'
  peerPid: number | null
  outcome: 'completed' | 'aborted'
  /** Milliseconds from the successor's hello to the predecessor's release. */
  durationMs: number
  reason?: string
}

type Kind = InetKind | 'unix'

interface Entry {
  name: string
  kind: Kind
  /** What identifies the socket across generations: kind and address. */
  key: string
  /** Our own copy of the descriptor, -1 once released. */
  fd: number
  servers: net.Server[]
  sockets: dgram.Socket[]
}

interface WireListener {
  name: string
  key: string
  kind: Kind
}

type ResolvedOptions = Required<Omit<HandoffOptions, 'log' | 'allowedUids'>> & { allowedUids: number[] }

type State = 'starting' | 'serving' | 'handing-off' | 'draining' | 'closed'

const LOG_PREFIX = '[fdpass handoff]'

function normalize(name: string, spec: ListenerSpec): { kind: Kind; key: string } {
  if (spec === null || typeof spec !== 'object') throw invalidArgType(`listeners.${name}`, 'a listener spec', spec)
  if ('tcp' in spec) return { kind: 'tcp', key: `tcp:${spec.tcp.host ?? '0.0.0.0'}:${port(name, spec.tcp.port)}` }
  if ('udp' in spec) return { kind: 'udp', key: `udp:${spec.udp.host ?? '0.0.0.0'}:${port(name, spec.udp.port)}` }
  if ('systemd' in spec) return { kind: systemdKind(name, spec.systemd), key: `systemd:${spec.systemd}` }
  if ('unix' in spec) {
    if (typeof spec.unix?.path !== 'string') throw invalidArgType(`listeners.${name}.unix.path`, 'a string', spec.unix?.path)
    return { kind: 'unix', key: `unix:${spec.unix.path}` }
  }
  throw invalidArgValue(`listeners.${name}`, spec, 'must have one of tcp, unix or udp')
}

/** What stops a generation under `fdpass run`: the supervisor's SIGTERM, and a terminal's Ctrl-C. */
const STOP_SIGNALS = ['SIGTERM', 'SIGINT'] as const

let activated: ListenFd[] | null = null

function systemdFd(name: string): number {
  activated ??= listenFds()
  // After a restart from a fd store, the socket-activated listener comes back under its store name.
  const stored = storeName(`systemd:${name}`)
  const found = activated.find((l) => l.name === name) ?? activated.find((l) => l.name === stored)
  if (!found)
    throw invalidArgValue('listeners', name, `names no socket-activated listener (LISTEN_FDNAMES has: ${activated.map((l) => l.name).join(', ') || 'none'})`)
  return found.fd
}

function systemdKind(listener: string, name: string): Kind {
  const fd = systemdFd(name)
  const stat = callNative(() => fdStat(fd))
  if (stat.kind !== 'socket') throw invalidArgValue(`listeners.${listener}`, name, 'is not a socket')
  const info = callNative(() => binding.inspectSocket(fd))
  if (info.family === 'unix') {
    if (info.type === 'dgram') throw invalidArgValue(`listeners.${listener}`, name, 'is a Unix datagram socket; handoff takes Unix stream listeners')
    return 'unix'
  }
  return info.type === 'dgram' ? 'udp' : 'tcp'
}

function port(name: string, p: unknown): number {
  if (typeof p !== 'number' || !Number.isInteger(p) || p < 0 || p > 65535) {
    throw invalidArgValue(`listeners.${name}.port`, p, 'must be an integer from 0 to 65535')
  }
  return p
}

async function bindFresh(spec: ListenerSpec): Promise<number> {
  if ('systemd' in spec) return callNative(() => binding.dupFd(systemdFd(spec.systemd)))
  if ('tcp' in spec) {
    const host = await hostAddress(spec.tcp.host ?? '0.0.0.0')
    return callNative(() => binding.bindInetSocket('tcp', host, spec.tcp.port, spec.tcp.backlog ?? 511, false))
  }
  if ('udp' in spec) {
    const host = await hostAddress(spec.udp.host ?? '0.0.0.0')
    return callNative(() => binding.bindInetSocket('udp', host, spec.udp.port, 0, spec.udp.reusePort ?? false))
  }
  return callNative(() => binding.listenUnixSocket(spec.unix.path, spec.unix.backlog ?? 511, spec.unix.mode, true))
}

/**
 * The IP address to bind for `host`: itself when it is one, else the first
 * the system resolver gives, as net.Server.listen takes it (dns.lookup runs
 * off the JavaScript thread; the addon binds literal addresses only). The
 * resolver's own code is kept: ENOTFOUND, EAI_AGAIN, ...
 */
async function hostAddress(host: string): Promise<string> {
  if (net.isIP(host) !== 0) return host
  try {
    return (await dns.promises.lookup(host)).address
  } catch (e) {
    const { code = 'ENOTFOUND', errno } = e as NodeJS.ErrnoException & { code?: ResolverErrorCode }
    const what =
      code === 'EAI_AGAIN'
        ? 'the resolver could not answer for now; try again, or use an IP address'
        : "no address is known for this name; check the listener's host, or use an IP address"
    throw new FdpassError(code, `getaddrinfo ${code} ${host}: ${what}`, { errno: errno ?? 0, syscall: 'getaddrinfo', hostname: host, cause: e })
  }
}

function closeQuietly(fd: number): void {
  if (fd < 0) return
  try {
    hot.closeFd(fd)
  } catch {
    // already closed
  }
}

/** FDNAME of the control listener in a supervisor's fd store. */
export const CONTROL_STORE_NAME = 'fdpass.control'

/**
 * FDNAME under which a listener (by its key, e.g. 'tcp:0.0.0.0:8080') is
 * kept in a supervisor's fd store: 'fdpass.tcp.0.0.0.0.8080'. systemd
 * takes names of printable ASCII without ':' (LISTEN_FDNAMES' separator),
 * at most 255 bytes; these keep to [A-Za-z0-9._-], with other bytes
 * written as _XX, so different keys get different names.
 */
export function storeName(key: string): string {
  const colon = key.indexOf(':')
  const kind = key.slice(0, colon)
  const rest = key.slice(colon + 1)
  const escape = (text: string) =>
    [...Buffer.from(text, 'utf8')]
      .map((b) => (/[A-Za-z0-9.-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `_${b.toString(16).padStart(2, '0').toUpperCase()}`))
      .join('')
  let name: string
  if (kind === 'tcp' || kind === 'udp') {
    const portAt = rest.lastIndexOf(':')
    name = `fdpass.${kind}.${escape(rest.slice(0, portAt))}.${rest.slice(portAt + 1)}`
  } else {
    name = `fdpass.${kind}.${escape(rest)}`
  }
  return name.length <= 255 ? name : `fdpass.${kind}.sha256-${createHash('sha256').update(key).digest('hex').slice(0, 40)}`
}

/** $FDSTORE: how many descriptors the service manager keeps for us (systemd >= 254, `fdpass run`); 0 when it keeps none. */
function fdStoreMax(): number {
  const n = Number(process.env.FDSTORE)
  return Number.isInteger(n) && n > 0 ? n : 0
}

/**
 * The listeners a supervisor gave back from its fd store (LISTEN_FDNAMES
 * with fdpass.* names). With 'fdpass.control', the previous generation
 * died, so nobody serves the control socket and a connect would wait in
 * its backlog: take the control listener and every stored listener
 * instead, and bind what is not stored. Without it (a new worker of
 * `fdpass run --workers`), take the listeners and make a control socket.
 * Null when this start is not from a store.
 */
async function restoreFromStore(
  control: string,
  specs: Array<{ name: string; spec: ListenerSpec; kind: Kind; key: string }>,
): Promise<{ controlFd: number; entries: Entry[]; restored: number } | null> {
  activated ??= listenFds()
  const stored = new Map(activated.map((l) => [l.name, l.fd]))
  if (![...stored.keys()].some((name) => name.startsWith('fdpass.'))) return null
  let controlFd = stored.get(CONTROL_STORE_NAME) ?? -1
  const used = new Set<number>()
  const entries: Entry[] = []
  try {
    // A stored control listener whose file is gone (a generation's close() removed it) cannot be reached: make a new one.
    if (controlFd < 0 || !fs.existsSync(control)) controlFd = callNative(() => binding.listenUnixSocket(control, 64, 0o600, true))
    else used.add(controlFd)
    for (const s of specs) {
      const fd = stored.get(storeName(s.key))
      if (fd !== undefined) used.add(fd)
      entries.push({ name: s.name, kind: s.kind, key: s.key, fd: fd ?? (await bindFresh(s.spec)), servers: [], sockets: [] })
    }
  } catch (e) {
    if (!used.has(controlFd)) closeQuietly(controlFd)
    for (const entry of entries) if (!used.has(entry.fd)) closeQuietly(entry.fd)
    throw e
  }
  // Stored listeners this version no longer declares; socket-activated ones stay for { systemd } specs.
  for (const [name, fd] of stored) if (name.startsWith('fdpass.') && !used.has(fd)) closeQuietly(fd)
  return { controlFd, entries, restored: entries.filter((e) => used.has(e.fd)).length }
}

function handoffError(code: FdpassErrorCode, message: string): FdpassError {
  return new FdpassError(code, message)
}

async function receiveJson(socket: FdSocket, timeoutMs: number, waitingFor: string): Promise<{ json: Record<string, unknown>; message: Message }> {
  const signal = AbortSignal.timeout(timeoutMs)
  let message: Message
  try {
    message = await socket.receive({ signal })
  } catch (e) {
    const err = e as FdpassError
    if (err.code === 'ABORT_ERR') {
      throw handoffError('ERR_FDPASS_HANDOFF_TIMEOUT', `no ${waitingFor} within ${timeoutMs} ms`)
    }
    if (err.code === 'ERR_FDPASS_SOCKET_CLOSED') {
      throw handoffError('ERR_FDPASS_HANDOFF_PEER_GONE', `the peer closed the control connection before ${waitingFor}`)
    }
    throw err
  }
  return { json: parseMessage(message, waitingFor), message }
}

/** A control message's JSON; on a malformed one its fds are closed and it throws ERR_FDPASS_HANDOFF_PROTOCOL. */
function parseMessage(message: Message, waitingFor: string): Record<string, unknown> {
  let json: Record<string, unknown>
  try {
    json = JSON.parse(message.data.toString('utf8'))
  } catch {
    for (const fd of message.fds) fd.close()
    throw handoffError('ERR_FDPASS_HANDOFF_PROTOCOL', `${waitingFor}: the peer sent something that is not JSON`)
  }
  if (json.v !== HANDOFF_PROTOCOL_VERSION) {
    for (const fd of message.fds) fd.close()
    throw handoffError('ERR_FDPASS_HANDOFF_PROTOCOL', `${waitingFor}: protocol version ${String(json.v)}, expected ${HANDOFF_PROTOCOL_VERSION}`)
  }
  return json
}

function controlChannel(socket: FdSocket): ControlChannel {
  return {
    socket,
    send: (body, fds) => sendJson(socket, body, fds),
    sendSync: (body, fds) => socket.sendSync(JSON.stringify({ v: HANDOFF_PROTOCOL_VERSION, pid: process.pid, ...body }), fds ?? []),
    parse: parseMessage,
  }
}

function sendJson(socket: FdSocket, body: Record<string, unknown>, fds: number[] = []): Promise<void> {
  return socket.send(JSON.stringify({ v: HANDOFF_PROTOCOL_VERSION, pid: process.pid, ...body }), fds)
}

/** Generation's events and their listeners' arguments. */
export interface GenerationEvents {
  handoff: [record: HandoffRecord]
  drain: []
  drained: [result: { durationMs: number; timedOut: boolean }]
  error: [error: Error]
  /** Old side: one handoff's connections, by outcome. */
  migration: [summary: MigrationSummary]
  /** New side per batch of migrated connections; old side per message of connections given back. */
  'connections-received': [received: ConnectionsReceived]
}

/** A batch of connections adopted from another generation (`fromPid`). */
export interface ConnectionsReceived {
  adopted: number
  declined: number
  fromPid: number | null
}

/**
 * This process's generation of a server. Get it from `takeover()`, plug
 * its listeners into servers, call `ready()`. When a newer generation
 * takes over, it stops accepting, drains and (by default) exits.
 *
 * Events: `'handoff'` (HandoffRecord), `'drain'`, `'drained'`
 * ({ durationMs, timedOut }), `'error'`; with connection migration
 * (docs/handoff-connections.md) `'migration'` (MigrationSummary, old side)
 * and `'connections-received'` ({ adopted, declined, fromPid }, new side; on
 * the old side for connections a turned-down successor gives back).
 */
export class Generation<Names extends string = string> extends Emitter<GenerationEvents> {
  /** True when the listeners came from a previous generation. */
  readonly inherited: boolean
  /** pid of the generation that handed its listeners over, if any. */
  readonly previousPid: number | null
  /** Every handoff this generation took part in. */
  readonly handoffs: HandoffRecord[] = []

  readonly #options: ResolvedOptions
  readonly #log: (line: string) => void
  readonly #entries = new Map<string, Entry>()
  #control: FdServer | null = null
  #controlFd: number
  #predecessor: FdSocket | null
  #startedAt: number
  #state: State = 'starting'
  #drainHooks: Array<() => unknown> = []
  readonly #migration: ConnectionMigration
  /** Under `fdpass run --workers`: the connections this generation passes to and takes from the other workers. */
  readonly #balance: WorkerBalance | null

  /** @internal Use takeover(). */
  constructor(
    options: ResolvedOptions,
    log: (line: string) => void,
    entries: Entry[],
    controlFd: number,
    predecessor: FdSocket | null,
    previousPid: number | null,
    startedAt: number,
  ) {
    super()
    this.#options = options
    this.#log = log
    for (const e of entries) this.#entries.set(e.name, e)
    this.#controlFd = controlFd
    this.#predecessor = predecessor
    this.inherited = predecessor !== null
    this.previousPid = previousPid
    this.#startedAt = startedAt
    this.#balance = WorkerBalance.fromEnv(log)
    this.#migration = new ConnectionMigration(
      log,
      (event, ...args) => this.emit(event, ...args),
      // Handing off, it still adopts: what its predecessor migrates, or a turned-down successor gives back.
      () => this.#state === 'serving' || this.#state === 'handing-off',
    )
    if (predecessor) {
      process.on('uncaughtExceptionMonitor', this.#onFatalException)
      process.on('exit', this.#onExit)
      if (process.env.FDPASS_RUN) for (const signal of STOP_SIGNALS) process.once(signal, this.#onStopBeforeTakeover)
    } else this.#serveControl()
  }

  /**
   * `fdpass run` stops while this generation waits at its gate: the
   * predecessor is stopping too, so nothing is given back; drain what this
   * generation accepted (as a serving one does on SIGTERM) and exit.
   */
  readonly #onStopBeforeTakeover = (signal: NodeJS.Signals): void => {
    const predecessor = this.#predecessor
    if (this.#state !== 'starting' || !predecessor) return
    // After a Ctrl-C the supervisor's SIGTERM follows: it must not end this
    // drain. Listen before #forgetPredecessor() removes the other listener:
    // with none, Node restores the signal's default action, and a SIGTERM
    // arriving then would kill.
    if (signal !== 'SIGTERM') process.once('SIGTERM', () => {})
    this.#forgetPredecessor()
    predecessor.close()
    this.#log(`${signal} before it took over: stopping; draining`)
    this.#state = 'draining'
    const stopping = this.#stopAccepting()
    this.#closeIdleConnections()
    void this.#drain(stopping).then(() => process.exit(0))
  }

  /**
   * Until it takes over, a new generation that dies of an uncaught
   * exception (or exits) gives its idle connections back to the
   * predecessor, which serves on: the requests its clients send next are
   * not lost with it.
   */
  readonly #onFatalException = (): void => {
    // An 'uncaughtException' listener (or capture callback) keeps the process alive.
    if (process.listenerCount('uncaughtException') > 0 || process.hasUncaughtExceptionCaptureCallback()) return
    this.#giveBackAsItDies()
  }

  readonly #onExit = (): void => this.#giveBackAsItDies()

  #giveBackAsItDies(): void {
    const predecessor = this.#predecessor
    this.#forgetPredecessor()
    if (!predecessor) return
    try {
      const given = this.#migration.giveBack(controlChannel(predecessor))
      if (given > 0) this.#log(`dying before it took over: gave ${given} connections back to pid ${this.previousPid}`)
    } catch {
      // Nothing more can be done for them in a dying process.
    }
  }

  /** The control connection to the predecessor is no longer this generation's to use. */
  #forgetPredecessor(): void {
    this.#predecessor = null
    process.off('uncaughtExceptionMonitor', this.#onFatalException)
    process.off('exit', this.#onExit)
    for (const signal of STOP_SIGNALS) process.off(signal, this.#onStopBeforeTakeover)
  }

  /** 'starting', 'serving', 'handing-off', 'draining' or 'closed'. */
  get state(): State {
    return this.#state
  }

  /** Listener names. */
  get names(): Names[] {
    return [...this.#entries.keys()] as Names[]
  }

  /**
   * Serve the named TCP or Unix listener with `server` (an `http`,
   * `https`, `http2`, Express or Fastify server: anything built on
   * `net.Server`). Resolves once it listens. On drain, the server stops
   * accepting, answers in-flight keep-alive requests with
   * `Connection: close`, and is closed when its connections are done.
   */
  listen<S extends net.Server>(name: Names, server: S): Promise<S> {
    const entry = this.#entry(name, ['tcp', 'unix'])
    const fd = callNative(() => binding.dupFd(entry.fd))
    entry.servers.push(server)
    this.#migration.track(name, server)
    // `fdpass run --health URL` tells this generation's answers from the previous one's by this header.
    if (process.env.FDPASS_PID_HEADER) {
      server.prependListener('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
        if (!res.headersSent) res.setHeader('fdpass-pid', String(process.pid))
      })
    }
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e)
      server.once('error', onError)
      server.listen({ fd }, () => {
        server.off('error', onError)
        if (entry.kind === 'tcp') this.#balance?.attach(name, server)
        resolve(server)
      })
    })
  }

  /** A `dgram.Socket` on the named UDP listener (the same kernel socket in every generation). */
  dgram(name: Names, type: 'udp4' | 'udp6' = 'udp4'): dgram.Socket {
    const entry = this.#entry(name, ['udp'])
    const fd = callNative(() => binding.dupFd(entry.fd))
    const socket = dgram.createSocket(type)
    socket.bind({ fd })
    entry.sockets.push(socket)
    return socket
  }

  /**
   * This generation's own descriptor for a listener, for servers that are
   * not `net.Server`s. It stays owned by the generation (do not close it);
   * pass a duplicate to anything that closes what it is given, and stop
   * using it in an `onDrain` hook.
   */
  fd(name: Names): number {
    return this.#entry(name).fd
  }

  /**
   * Old side: hand `socket` and the app's state for it to the successor
   * (call it from an `onDrain` hook). Resolves `{ migrated: true }` once the
   * successor adopted it (this process's socket is then destroyed without
   * FIN or RST), or `{ migrated: false, reason }`: the socket stays here,
   * reading again; serve it on or close it. See docs/handoff-connections.md.
   */
  migrate(socket: net.Socket, state: MigrationState): Promise<MigrationResult> {
    return this.#migration.migrate(socket, state)
  }

  /**
   * New side: adopt connections the previous generation hands over with
   * `migrate(socket, { kind, version, state })`. `handler(socket, state,
   * info)` gets a `net.Socket` whose unprocessed bytes are unshifted into it;
   * a kind without a handler, a version not in `options.versions` (default
   * `[1]`), or a handler that throws, declines: the connection stays with the
   * old generation. Register before `ready()`.
   */
  onMigratedConnection(kind: string, handler: MigratedConnectionHandler, options?: MigratedConnectionOptions): this {
    this.#migration.onMigratedConnection(kind, handler, options)
    return this
  }

  /** Run `hook` when a newer generation has taken over, before draining servers. */
  onDrain(hook: () => unknown): this {
    this.#drainHooks.push(hook)
    return this
  }

  /**
   * Say that this generation accepts on its listeners. The previous
   * generation, if any, then stops accepting and drains; this one starts
   * serving the control socket for the next.
   */
  async ready(): Promise<void> {
    if (this.#state !== 'starting') return
    const predecessor = this.#predecessor
    if (predecessor) {
      const go = await this.#supervisorGate()
      if (this.#state !== 'starting') return // stopped meanwhile
      if (!go) return this.#rollBack(predecessor)
      this.#forgetPredecessor()
      const record: HandoffRecord = { role: 'successor', peerPid: this.previousPid, outcome: 'completed', durationMs: 0 }
      let migrating = false
      try {
        await sendJson(predecessor, { type: 'ready' })
        const { json } = await receiveJson(predecessor, this.#options.connectTimeout, 'release')
        if (json.type !== 'released') throw handoffError('ERR_FDPASS_HANDOFF_PROTOCOL', `expected release, got ${String(json.type)}`)
        migrating = json.migrate === MIGRATION_PROTOCOL_VERSION
      } catch (e) {
        // The predecessor died or timed out after handing over: its
        // listeners are ours either way, so serve on.
        record.reason = (e as Error).message
      } finally {
        // Migrating: the predecessor sends its connections on this socket next.
        if (!migrating) predecessor.close()
      }
      if (migrating) this.#migration.beginReceiving(controlChannel(predecessor), this.previousPid)
      record.durationMs = Date.now() - this.#startedAt
      this.handoffs.push(record)
      this.#log(`took over from pid ${this.previousPid} in ${record.durationMs} ms${record.reason ? ` (${record.reason})` : ''}`)
      this.emit('handoff', record)
      this.#serveControl()
    }
    this.#balance?.start()
    this.#state = 'serving'
    this.#log(`pid ${process.pid} serving ${this.names.join(', ')}`)
    await this.#storeListeners()
    this.#drainOnStopSignal()
    // Under a service manager or `fdpass run`: this process is the one serving now.
    await notify({ READY: 1, MAINPID: process.pid }).catch((e) => this.#log(`could not notify $NOTIFY_SOCKET: ${(e as Error).message}`))
  }

  /** Close the listeners and the control socket without a successor. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return
    // The control socket file is ours to remove unless a newer generation serves it (or an older one still does).
    const ownsControl = this.#state === 'serving' || (this.#state === 'starting' && !this.#predecessor)
    this.#state = 'closed'
    this.#predecessor?.close()
    this.#forgetPredecessor()
    const stopping = this.#stopAccepting()
    if (ownsControl) fs.rmSync(this.#options.control, { force: true })
    await stopping
  }

  /**
   * Keep the listeners and the control listener in the service manager's
   * fd store ($FDSTORE set by `fdpass run`, or systemd >= 254 with
   * FileDescriptorStoreMax=), one FDNAME each, so that a restart after
   * this process dies gets them back (restoreFromStore) instead of
   * closing the ports.
   */
  async #storeListeners(): Promise<void> {
    const max = fdStoreMax()
    if (max === 0) return
    const stored: Array<[string, number]> = [...this.#entries.values()].map((e) => [storeName(e.key), e.fd])
    if (this.#control) stored.push([CONTROL_STORE_NAME, this.#control.fd])
    if (stored.length > max)
      this.#log(`FDSTORE=${max} keeps fewer descriptors than the ${stored.length} listeners (with the control socket); raise FileDescriptorStoreMax`)
    for (const [name, fd] of stored) {
      try {
        await notify({ FDSTORE: 1, FDNAME: name }, [fd])
      } catch (e) {
        this.#log(`could not store ${name} in the fd store: ${(e as Error).message}`)
      }
    }
  }

  /**
   * Under `fdpass run --health/--probation` ($FDPASS_GATE: the supervisor's
   * socket): before telling the predecessor "ready" (after which it stops
   * accepting), let the supervisor check this generation while both serve.
   * False when the supervisor rolls back.
   */
  async #supervisorGate(): Promise<boolean> {
    const gate = process.env.FDPASS_GATE
    if (!gate) return true
    try {
      const conn = await connect(gate, { timeout: this.#options.connectTimeout })
      try {
        await conn.send(JSON.stringify({ cmd: 'gate', pid: process.pid }))
        const answer = JSON.parse((await conn.receive()).data.toString('utf8'))
        if (answer.go !== true) this.#log(`the supervisor rolls back: ${String(answer.reason)}`)
        return answer.go === true
      } finally {
        conn.close()
      }
    } catch (e) {
      this.#log(`no answer from the supervisor at ${gate} (${(e as Error).message}); going on`)
      return true
    }
  }

  /**
   * The supervisor said no: the predecessor serves on (it sees us go
   * before "ready"). Stop accepting, give connections back to it as they
   * turn idle, drain the rest, exit.
   */
  async #rollBack(predecessor: FdSocket): Promise<void> {
    this.#forgetPredecessor()
    this.#state = 'draining'
    const stopping = this.#stopAccepting()
    const given = await this.#migration.giveBackWhileDraining(controlChannel(predecessor), Date.now() + this.#options.drainTimeout)
    if (given > 0) this.#log(`gave ${given} connections back to pid ${this.previousPid}`)
    predecessor.close()
    await this.#drain(stopping)
    process.exit(0)
  }

  /**
   * Under `fdpass run` ($FDPASS_RUN), SIGTERM means "stop": stop accepting
   * and drain as after a handoff (bounded by drainTimeout), then exit, so
   * in-flight requests complete. SIGINT too: a Ctrl-C in a terminal reaches
   * the whole process group, the generations as well as the supervisor,
   * and must not kill a request the supervisor's stop would let finish.
   * The supervisor's SIGTERM that follows a Ctrl-C finds this drain under
   * way; a second Ctrl-C kills (Node's default again, as `once` leaves it).
   */
  #drainOnStopSignal(): void {
    if (!process.env.FDPASS_RUN) return
    const stop = (signal: NodeJS.Signals) => {
      if (this.#state !== 'serving' && this.#state !== 'handing-off') return
      this.#log(`${signal}: stopping; draining`)
      const handingOff = this.#state === 'handing-off'
      this.#state = 'draining'
      const stopping = this.#stopAccepting()
      // Handing off, idle connections are on their way to the successor.
      if (!handingOff) this.#closeIdleConnections()
      void this.#drain(stopping).then(() => process.exit(0))
    }
    for (const signal of STOP_SIGNALS) process.once(signal, stop)
  }

  /**
   * A stop with nobody to hand connections to: close the HTTP connections
   * with no request in progress now, as Node's own server.close() does,
   * instead of waiting out their keep-alive timeout (5 s by default, a Ctrl-C
   * that hangs). A request already under way completes; its response
   * carries `Connection: close` (stopServer).
   */
  #closeIdleConnections(): void {
    for (const entry of this.#entries.values()) for (const server of entry.servers) (server as Partial<http.Server>).closeIdleConnections?.call(server)
  }

  /** The named listener's entry, which must be of one of `kinds` when they are given. */
  #entry(name: string, kinds?: readonly Kind[]): Entry {
    const entry = this.#entries.get(name)
    if (!entry) throw invalidArgValue('name', name, `is not a declared listener (have: ${this.names.join(', ')})`)
    if (kinds && !kinds.includes(entry.kind)) throw invalidArgValue('name', name, `is a ${entry.kind} listener`)
    if (entry.fd < 0) throw new FdpassError('ERR_FDPASS_HANDOFF_RELEASED', `listener ${name} was handed to a newer generation`)
    return entry
  }

  #serveControl(): void {
    const fd = this.#controlFd
    this.#controlFd = -1
    const server = adoptServer(fd)
    this.#control = server
    server.on('connection', (conn: FdSocket) => {
      this.#onControlConnection(conn).catch((e) => this.emit('error', e))
    })
  }

  async #onControlConnection(conn: FdSocket): Promise<void> {
    const creds = conn.peerCredentials()
    if (!this.#options.allowedUids.includes(creds.uid)) {
      this.#log(`refused a control connection from uid ${creds.uid} (pid ${creds.pid})`)
      await sendJson(conn, { type: 'refused', reason: `uid ${creds.uid} is not allowed` }).catch(() => {})
      conn.close()
      return
    }
    if (this.#state !== 'serving') {
      await sendJson(conn, { type: 'busy', state: this.#state }).catch(() => {})
      conn.close()
      return
    }
    this.#state = 'handing-off'
    const started = Date.now()
    const record: HandoffRecord = { role: 'predecessor', peerPid: creds.pid, outcome: 'aborted', durationMs: 0 }
    this.#log(`pid ${creds.pid} asks for the listeners`)
    let successorMigrates = false
    try {
      const { json: hello, message } = await receiveJson(conn, this.#options.connectTimeout, 'hello')
      for (const fd of message.fds) fd.close()
      if (hello.type !== 'hello') throw handoffError('ERR_FDPASS_HANDOFF_PROTOCOL', `expected hello, got ${String(hello.type)}`)
      successorMigrates = hello.migrate === MIGRATION_PROTOCOL_VERSION && this.#options.migrateConnections
      const entries = [...this.#entries.values()]
      const listeners: WireListener[] = entries.map((e) => ({ name: e.name, key: e.key, kind: e.kind }))
      const control = this.#control?.fd ?? -1
      await sendJson(conn, { type: 'listeners', listeners }, [control, ...entries.map((e) => e.fd)])
      const deadline = Date.now() + this.#options.readyTimeout
      for (;;) {
        const { json: ready, message: m } = await receiveJson(conn, Math.max(1, deadline - Date.now()), 'ready')
        if (ready.type === 'returned') {
          // The successor, turned down at the gate or dying, gives connections back.
          const { adopted } = this.#migration.adoptReturned(
            ready,
            m.fds.map((fd) => fd.release()),
            creds.pid,
          )
          this.#log(`pid ${creds.pid} gave ${adopted} connections back`)
          continue
        }
        if (ready.type !== 'ready') throw handoffError('ERR_FDPASS_HANDOFF_PROTOCOL', `expected ready, got ${String(ready.type)}`)
        break
      }
    } catch (e) {
      record.reason = (e as Error).message
      record.durationMs = Date.now() - started
      this.handoffs.push(record)
      conn.close()
      this.#state = 'serving'
      this.#log(`handoff to pid ${creds.pid} aborted (${record.reason}); still serving`)
      this.emit('handoff', record)
      return
    }
    // The successor accepts on the same sockets now: stop accepting here.
    this.#state = 'draining'
    const stopping = this.#stopAccepting()
    let released = true
    await sendJson(conn, { type: 'released', ...(successorMigrates ? { migrate: MIGRATION_PROTOCOL_VERSION } : {}) }).catch(() => {
      released = false
    })
    // Established connections follow on the same control connection.
    if (successorMigrates && released) this.#migration.beginSending(controlChannel(conn))
    else {
      conn.close()
      this.#migration.beginSending(null)
    }
    record.outcome = 'completed'
    record.durationMs = Date.now() - started
    this.handoffs.push(record)
    this.#log(`handed over to pid ${creds.pid} in ${record.durationMs} ms; draining`)
    this.emit('handoff', record)
    await this.#drain(stopping)
  }

  /** Stop accepting everywhere; returns when every server has finished its connections. */
  #stopAccepting(): Promise<void> {
    this.#balance?.stop()
    this.#control?.close().catch(() => {})
    this.#control = null
    closeQuietly(this.#controlFd)
    this.#controlFd = -1
    const waits: Promise<void>[] = []
    for (const entry of this.#entries.values()) {
      closeQuietly(entry.fd)
      entry.fd = -1
      for (const socket of entry.sockets) socket.close()
      for (const server of entry.servers) waits.push(stopServer(server, () => this.#migration.keepsAlive(server)))
    }
    return Promise.all(waits).then(() => {})
  }

  async #drain(stopping: Promise<void>): Promise<void> {
    const started = Date.now()
    this.emit('drain')
    for (const hook of this.#drainHooks) {
      try {
        await hook()
      } catch (e) {
        this.emit('error', fromNative(e))
      }
    }
    let timer: NodeJS.Timeout | undefined
    // Connections still moving to the successor (or waiting for its ack) are this generation's until then.
    const done = Promise.all([stopping, this.#migration.settled()])
    const timedOut = await Promise.race([
      done.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(resolve, this.#options.drainTimeout, true)
      }),
    ])
    clearTimeout(timer)
    if (timedOut) {
      for (const entry of this.#entries.values()) {
        for (const server of entry.servers) (server as http.Server).closeAllConnections?.()
      }
    }
    const result = { durationMs: Date.now() - started, timedOut }
    this.#log(`drained in ${result.durationMs} ms${timedOut ? ' (drain timeout: closed the remaining connections)' : ''}`)
    this.#state = 'closed'
    this.emit('drained', result)
    if (this.#options.exitAfterDrain) process.exit(0)
  }
}

/**
 * Stop accepting on a server without dropping a request: unless its
 * connections are migrating (`keepsAlive()`), HTTP responses from now on
 * carry `Connection: close`, idle keep-alive connections are
 * left to close after their next response (closing them now would race
 * with a request already on the wire), and the promise resolves when the
 * last connection is gone.
 */
function stopServer(server: net.Server, keepsAlive: () => boolean): Promise<void> {
  const isHttp = typeof (server as http.Server).closeIdleConnections === 'function'
  if (isHttp) {
    server.prependListener('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
      // While its connections migrate, a response keeps its connection: it moves once written.
      if (!res.headersSent && !keepsAlive()) res.setHeader('Connection', 'close')
    })
  }
  // net.Server's close, not http.Server's: the latter also closes idle
  // keep-alive connections at once (Node >= 19).
  return new Promise((resolve) => net.Server.prototype.close.call(server, () => resolve()))
}

/**
 * Become this server's current generation: take the named listeners from
 * the generation serving `options.control`, or bind them fresh when there
 * is none. Then plug them into servers and call `ready()`.
 *
 * Rejects with ERR_FDPASS_HANDOFF_BUSY when another new generation is
 * taking over at the same moment, ERR_FDPASS_HANDOFF_REFUSED when the
 * running generation refuses this uid, and ERR_FDPASS_HANDOFF_PEER_UID when
 * the process at the control path is not an allowed uid.
 */
export async function takeover<L extends Record<string, ListenerSpec>>(options: HandoffOptions<L>): Promise<Generation<Extract<keyof L, string>>> {
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'an object', options)
  const control = options.control ?? process.env.FDPASS_CONTROL
  if (typeof control !== 'string' || control === '') {
    throw invalidArgType('options.control', 'a socket path (or set FDPASS_CONTROL)', options.control)
  }
  if (options.listeners === null || typeof options.listeners !== 'object') throw invalidArgType('options.listeners', 'an object', options.listeners)
  const specs = Object.entries(options.listeners).map(([name, spec]) => ({ name, spec, ...normalize(name, spec) }))
  const resolved = {
    control,
    listeners: options.listeners,
    connectTimeout: options.connectTimeout ?? 5_000,
    readyTimeout: options.readyTimeout ?? 30_000,
    drainTimeout: options.drainTimeout ?? 30_000,
    exitAfterDrain: options.exitAfterDrain ?? true,
    migrateConnections: options.migrateConnections ?? true,
    allowedUids: options.allowedUids ?? [process.getuid?.() ?? 0],
  }
  const log = options.log === false ? () => {} : (options.log ?? ((line: string) => process.stderr.write(`${LOG_PREFIX} ${line}\n`)))
  const startedAt = Date.now()

  const restored = await restoreFromStore(control, specs)
  if (restored) {
    log(`pid ${process.pid}: restarted from the fd store with ${restored.restored} of ${specs.length} listeners`)
    return new Generation(resolved, log, restored.entries, restored.controlFd, null, null, startedAt)
  }

  let predecessor: FdSocket | null = null
  try {
    predecessor = await connect(control, { timeout: resolved.connectTimeout })
  } catch (e) {
    const code = (e as FdpassError).code
    if (code !== 'ENOENT' && code !== 'ECONNREFUSED') throw e
  }

  if (!predecessor) {
    const entries: Entry[] = []
    let controlFd = -1
    try {
      controlFd = callNative(() => binding.listenUnixSocket(control, 64, 0o600, true))
      for (const s of specs) entries.push({ name: s.name, kind: s.kind, key: s.key, fd: await bindFresh(s.spec), servers: [], sockets: [] })
    } catch (e) {
      closeQuietly(controlFd)
      for (const entry of entries) closeQuietly(entry.fd)
      throw e
    }
    log(`pid ${process.pid}: no running generation at ${control}; bound ${specs.map((s) => s.key).join(', ')}`)
    return new Generation(resolved, log, entries, controlFd, null, null, startedAt)
  }

  const received: number[] = []
  const entries: Entry[] = []
  try {
    const peer = predecessor.peerCredentials()
    if (!resolved.allowedUids.includes(peer.uid)) {
      throw handoffError('ERR_FDPASS_HANDOFF_PEER_UID', `the process at ${control} runs as uid ${peer.uid}, which is not allowed`)
    }
    // A refusal may already be on its way (and the socket closed behind
    // it): a failed hello is not the answer, the next message is.
    await sendJson(predecessor, {
      type: 'hello',
      listeners: specs.map((s) => s.name),
      ...(resolved.migrateConnections ? { migrate: MIGRATION_PROTOCOL_VERSION } : {}),
    }).catch(() => {})
    const { json, message } = await receiveJson(predecessor, resolved.connectTimeout, 'the listeners')
    for (const fd of message.fds) received.push(fd.release())
    if (json.type === 'busy') {
      throw handoffError(
        'ERR_FDPASS_HANDOFF_BUSY',
        `pid ${String(json.pid)} is already handing over to another new generation (state ${String(json.state)}); try again when it is done`,
      )
    }
    if (json.type === 'refused') throw handoffError('ERR_FDPASS_HANDOFF_REFUSED', `pid ${String(json.pid)} refused: ${String(json.reason)}`)
    if (json.type !== 'listeners' || !Array.isArray(json.listeners) || received.length !== json.listeners.length + 1) {
      throw handoffError('ERR_FDPASS_HANDOFF_PROTOCOL', 'the running generation sent a malformed listener list')
    }
    const offered = new Map<string, { key: string; fd: number }>()
    ;(json.listeners as WireListener[]).forEach((l, i) => offered.set(l.name, { key: l.key, fd: received[i + 1] }))
    const used = new Set<number>([received[0]])
    for (const s of specs) {
      const old = offered.get(s.name)
      let fd: number
      if (old && old.key === s.key) {
        fd = old.fd
        used.add(fd)
      } else {
        fd = await bindFresh(s.spec) // new, or moved to another address
      }
      entries.push({ name: s.name, kind: s.kind, key: s.key, fd, servers: [], sockets: [] })
    }
    for (const fd of received) if (!used.has(fd)) closeQuietly(fd) // listeners this version dropped
    const previousPid = typeof json.pid === 'number' ? json.pid : null
    log(`pid ${process.pid}: received ${entries.filter((e) => used.has(e.fd)).length} listeners from pid ${previousPid}`)
    return new Generation(resolved, log, entries, received[0], predecessor, previousPid, startedAt)
  } catch (e) {
    predecessor.close()
    for (const fd of received) closeQuietly(fd)
    for (const entry of entries) if (!received.includes(entry.fd)) closeQuietly(entry.fd)
    throw e
  }
}
