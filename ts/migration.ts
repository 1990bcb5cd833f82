// Connection migration for fdpass/handoff: established connections move
// to the next generation during a handoff instead of being drained.
// docs/handoff-connections.md describes what moves, what drains and the
// protocol messages; handoff.ts calls in at the protocol's hooks.
import type * as http from 'node:http'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { FdpassError, callNative, invalidArgType, invalidArgValue } from './errors'
import { binding, hot, platform } from './native'
import type { FdSocket, Message } from './socket'

/** Version of the migration messages, announced in hello and released. */
export const MIGRATION_PROTOCOL_VERSION = 1

/** At most this many connections (descriptors) per message: SCM_MAX_FD is 253 on Linux. */
export const MAX_CONNECTIONS_PER_BATCH = Math.min(253, platform.maxFdsPerMessage)

/** How often idle connections are looked for while migrating, besides on each response written. */
const SWEEP_INTERVAL_MS = 50

/** Sockets built per turn of the event loop on the new side. */
const BUILD_CHUNK = 32
/** Batches sent ahead of their acknowledgements. */
const MAX_BATCHES_IN_FLIGHT = 4

/** The kind of a migrated HTTP/1.1 keep-alive connection (built in: nothing to configure). */
export const HTTP1_KIND = 'http1'

/** What the old generation hands over with a connection (the app's part). */
export interface MigrationState {
  /** What protocol/handler the connection belongs to, e.g. 'chat' or 'ws'. 'http1' is reserved. */
  kind: string
  /** Version of `state`'s shape; the successor accepts only versions it knows. */
  version: number
  /** JSON-serializable state, or a Buffer. */
  state?: unknown
  /** Bytes this process read from the socket and did not process: the successor sees them first. */
  pending?: Buffer
}

/** How a `generation.migrate()` ended. */
export type MigrationResult =
  | { migrated: true }
  | {
      migrated: false
      /**
       * 'no-successor' (no migration under way), 'tls' (TLS state lives in
       * this process), 'declined' (the successor refused the kind or
       * version), 'successor-gone', 'not-a-socket', 'unread-bytes' (the
       * socket's own readable buffer holds bytes: consume them first),
       * 'closed'.
       */
      reason: string
      detail?: string
    }

/** What a successor's handler gets with a migrated connection. */
export interface MigratedConnectionInfo {
  kind: string
  version: number
  /** pid of the generation the connection came from. */
  fromPid: number | null
  /** Bytes that were read but not processed by the old generation, already unshifted into the socket. */
  pendingBytes: number
}

/** Successor side: handler for a kind of migrated connection. Throwing declines it. */
export type MigratedConnectionHandler = (socket: net.Socket, state: unknown, info: MigratedConnectionInfo) => void

export interface MigratedConnectionOptions {
  /** State versions this handler understands. @default [1] */
  versions?: number[]
}

/** Counts of one handoff's connections, by outcome, emitted as the `'migration'` event on the old side. */
export interface MigrationSummary {
  /** Connections the successor adopted, by kind. */
  migrated: Record<string, number>
  /** Connections that stayed and drained here, by reason: 'tls', 'http2', 'declined', 'successor-gone', 'unsupported-server'. */
  drained: Record<string, number>
  /** Messages (batches) sent. */
  batches: number
  /** From the start of the migration to the last acknowledgement. */
  durationMs: number
}

/** The control connection as handoff.ts speaks it (JSON messages with fds). */
export interface ControlChannel {
  socket: FdSocket
  send(body: Record<string, unknown>, fds?: number[]): Promise<void>
  /** Blocking send: for a process that may have no event loop turn left. */
  sendSync(body: Record<string, unknown>, fds?: number[]): void
  parse(message: Message, waitingFor: string): Record<string, unknown>
}

interface WireConnection {
  kind: string
  listener?: string
  version?: number
  /** JSON state. */
  state?: unknown
  /** Buffer state, base64. */
  stateBytes?: string
  /** Read-but-unprocessed bytes, base64. */
  pending?: string
}

type ServerKind = 'http1' | 'tls' | 'http2' | 'other'

/** What this module uses of an `http2.ServerHttp2Session`. */
interface Http2SessionLike extends NodeJS.EventEmitter {
  /** Sends GOAWAY; streams in flight finish. */
  close(callback?: () => void): void
}

interface Tracked {
  name: string
  server: net.Server
  kind: ServerKind
  /** The http server's parser list (Node's ConnectionsList), for idle(); looked up when migration begins. */
  connections: { idle(): Array<{ socket?: net.Socket | null }> } | null
  sockets: Set<net.Socket>
  sessions: Set<Http2SessionLike>
  /** HTTP/1.1 migration disabled on this server (the successor declined it): drain it. */
  drainOnly: boolean
}

/** One connection handed to the successor and not yet acknowledged. */
interface InFlight {
  wire: WireConnection
  /** This process's copy: closed on ack, served again on decline. */
  fd: number
  tracked: Tracked | null
  /** Generic migrations: the socket stays paused here until the ack. */
  socket: net.Socket | null
  settle: ((r: MigrationResult) => void) | null
}

const CONNECTIONS_SYMBOL = 'http.server.connections'

/**
 * Node's http server connection list (Node >= 19, created when the server
 * listens): `idle()` lists the parsers with no message begun, what
 * `server.closeIdleConnections()` closes. null when this Node has none:
 * then that server's connections drain.
 */
/**
 * A copy of the descriptor of a socket whose reading was stopped; when no
 * copy can be made (EMFILE), reading starts again and the error says why.
 */
function copyStopped(handle: NonNullable<SocketInternals['_handle']>): number | Error {
  try {
    return callNative(() => binding.dupFd(handle.fd!))
  } catch (e) {
    handle.readStart?.()
    handle.reading = true
    return e as Error
  }
}

function connectionList(server: net.Server): Tracked['connections'] {
  const sym = Object.getOwnPropertySymbols(server).find((s) => s.description === CONNECTIONS_SYMBOL)
  const list = sym ? (server as unknown as Record<symbol, unknown>)[sym] : undefined
  if (list && typeof (list as { idle?: unknown }).idle === 'function') return list as Tracked['connections']
  return null
}

function classify(server: net.Server): ServerKind {
  if (server instanceof tls.Server) return 'tls' // https and http2 secure servers: OpenSSL state lives here
  if (typeof (server as http.Server).closeIdleConnections === 'function') return 'http1'
  if (server.constructor?.name === 'Http2Server') return 'http2'
  return 'other'
}

interface SocketInternals {
  _handle?: { fd?: number; readStop?(): number; readStart?(): number; reading?: boolean } | null
}

/**
 * Sockets of an HTTP/1.1 server whose parser has no message begun (Node
 * counts a connection that has sent nothing yet as active, so those are
 * added by bytesRead). #detachIdleHttp checks the rest.
 */
function idleCandidates(t: Tracked): Set<net.Socket> {
  const candidates = new Set<net.Socket>()
  for (const parser of t.connections?.idle() ?? []) if (parser.socket && t.sockets.has(parser.socket)) candidates.add(parser.socket)
  for (const socket of t.sockets) if (socket.bytesRead === 0) candidates.add(socket)
  return candidates
}

function closeQuietly(fd: number): void {
  try {
    hot.closeFd(fd)
  } catch {
    // already closed
  }
}

function count(record: Record<string, number>, key: string, n = 1): void {
  record[key] = (record[key] ?? 0) + n
}

/**
 * Both sides of connection migration for one generation. The old side
 * (`beginSending`) hands idle HTTP/1.1 connections and app-migrated
 * sockets to the successor in batches and closes its copies on ack; the
 * new side (`beginReceiving`) adopts them and acknowledges each batch.
 */
export class ConnectionMigration {
  readonly #log: (line: string) => void
  readonly #emit: (event: string, ...args: unknown[]) => void
  readonly #isServing: () => boolean
  readonly #tracked: Tracked[] = []
  /** Acknowledged HTTP/1.1 connections whose sockets are not built yet. */
  readonly #toBuild: Array<{ wire: WireConnection; fd: number; fromPid: number | null }> = []
  #building = false
  readonly #handlers = new Map<string, { handler: MigratedConnectionHandler; versions: number[] }>()

  // Old side.
  #channel: ControlChannel | null = null
  #sending = false
  #queued: InFlight[] = []
  /** Batches sent and not yet acknowledged, by id. */
  readonly #inFlight = new Map<number, InFlight[]>()
  #batchId = 0
  #scheduled = false
  #summary: MigrationSummary | null = null
  #startedAt = 0
  #settledWaiters: Array<() => void> = []
  #sweep: NodeJS.Timeout | null = null
  /** New side, turned down at the gate: connections go back to the predecessor as they turn idle. */
  #givingBack = false

  constructor(log: (line: string) => void, emit: (event: string, ...args: unknown[]) => void, isServing: () => boolean) {
    this.#log = log
    this.#emit = emit
    this.#isServing = isServing
  }

  /** A server plugged into listener `name`: track its connections (HTTP/1.1) or sessions (HTTP/2). */
  track(name: string, server: net.Server): void {
    const kind = classify(server)
    const tracked: Tracked = {
      name,
      server,
      kind,
      connections: null,
      sockets: new Set(),
      sessions: new Set(),
      drainOnly: false,
    }
    this.#tracked.push(tracked)
    if (kind === 'http1') {
      server.on('connection', (socket: net.Socket) => {
        tracked.sockets.add(socket)
        socket.once('close', () => {
          tracked.sockets.delete(socket)
          this.#checkSettled()
        })
        if (this.#sending) this.#schedule()
      })
      // A response written while migrating: its connection may be idle now
      // (responses begun earlier are found by the sweep).
      server.on('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
        if (this.#sending) res.once('finish', () => this.#schedule())
      })
    } else if (kind === 'tls') {
      server.on('connection', (socket: net.Socket) => {
        tracked.sockets.add(socket)
        socket.once('close', () => tracked.sockets.delete(socket))
      })
    }
    if (kind === 'http2' || kind === 'tls') {
      server.on('session', (session: Http2SessionLike) => {
        tracked.sessions.add(session)
        session.once('close', () => tracked.sessions.delete(session))
      })
    }
  }

  /** Whether responses on `server` should keep their connection alive (it is migrating). */
  keepsAlive(server: net.Server): boolean {
    const t = this.#tracked.find((x) => x.server === server)
    return (this.#sending || this.#givingBack) && t !== undefined && t.kind === 'http1' && t.connections !== null && !t.drainOnly
  }

  // ---------------------------------------------------------------- old side

  /**
   * The successor accepts on the listeners and announced migration: hand
   * connections over on `channel` until every one has moved or drained.
   * `channel` null: no migration (an older successor); drain everything.
   */
  beginSending(channel: ControlChannel | null): void {
    this.#summary = { migrated: {}, drained: {}, batches: 0, durationMs: 0 }
    this.#startedAt = Date.now()
    for (const t of this.#tracked) {
      // TLS and HTTP/2 cannot move (OpenSSL and HPACK state live in this
      // process): HTTP/2 sessions get a GOAWAY now, in-flight streams finish.
      for (const session of t.sessions) session.close()
      if (t.kind === 'tls') count(this.#summary.drained, 'tls', t.sockets.size)
      else if (t.kind === 'http2') count(this.#summary.drained, 'http2', t.sessions.size)
    }
    if (!channel) {
      this.#finish('no migration')
      return
    }
    for (const t of this.#tracked) {
      // Node creates the list when the server starts listening.
      if (t.kind === 'http1') t.connections = connectionList(t.server)
      if (t.kind === 'http1' && t.connections === null) {
        t.drainOnly = true
        count(this.#summary.drained, 'unsupported-server', t.sockets.size)
        this.#log(`listener ${t.name}: this Node's http server exposes no connection list; its connections drain`)
      }
    }
    this.#channel = channel
    this.#sending = true
    this.#receiveAcks(channel).catch(() => {})
    this.#schedule()
    // A connection also turns idle on events this module does not see (a
    // request body read to its end after an early response): look again
    // now and then until every connection has moved or drained.
    this.#sweep = setInterval(() => this.#schedule(), SWEEP_INTERVAL_MS)
    this.#sweep.unref()
  }

  /**
   * Hand `socket` (with the app's state) to the successor. Resolves when
   * the successor adopted it (this process's socket is then destroyed,
   * without FIN or RST: the successor holds the connection) or declined it
   * (the socket reads again here; serve it on or close it).
   */
  migrate(socket: net.Socket, state: MigrationState): Promise<MigrationResult> {
    if (!(socket instanceof net.Socket)) return Promise.resolve({ migrated: false, reason: 'not-a-socket' })
    if (state === null || typeof state !== 'object') throw invalidArgType('state', 'an object { kind, version, state }', state)
    if (typeof state.kind !== 'string' || state.kind === '' || state.kind === HTTP1_KIND) {
      throw invalidArgValue('state.kind', state.kind, `must be a non-empty string other than '${HTTP1_KIND}'`)
    }
    if (!Number.isInteger(state.version)) throw invalidArgType('state.version', 'an integer', state.version)
    if (state.pending !== undefined && !Buffer.isBuffer(state.pending)) throw invalidArgType('state.pending', 'a Buffer', state.pending)
    if (socket instanceof tls.TLSSocket) return this.#drained('tls')
    if (!this.#sending || !this.#channel) return Promise.resolve({ migrated: false, reason: 'no-successor' })
    if (socket.destroyed) return Promise.resolve({ migrated: false, reason: 'closed' })
    const handle = (socket as unknown as SocketInternals)._handle
    if (!handle || typeof handle.fd !== 'number' || handle.fd < 0) return Promise.resolve({ migrated: false, reason: 'closed' })
    if (socket.readableLength > 0) return Promise.resolve({ migrated: false, reason: 'unread-bytes' })
    let json: string | undefined
    try {
      json = Buffer.isBuffer(state.state) ? undefined : JSON.stringify(state.state ?? null)
    } catch (e) {
      throw invalidArgValue('state.state', state.state, `is not JSON-serializable (${(e as Error).message}); pass a Buffer`)
    }
    const wire: WireConnection = { kind: state.kind, version: state.version }
    if (Buffer.isBuffer(state.state)) wire.stateBytes = state.state.toString('base64')
    else wire.state = JSON.parse(json!)
    if (state.pending?.length) wire.pending = state.pending.toString('base64')
    // Stop reading now, in the turn the app took its state: from here every
    // byte the client sends stays in the kernel and travels with the fd.
    handle.readStop?.()
    handle.reading = false
    return new Promise((resolve) => {
      const send = () => {
        if (socket.destroyed || !(socket as unknown as SocketInternals)._handle) {
          resolve({ migrated: false, reason: 'closed' })
          return
        }
        const fd = copyStopped(handle)
        if (typeof fd !== 'number') {
          resolve({ migrated: false, reason: 'closed', detail: fd.message })
          return
        }
        this.#queued.push({ wire, fd, tracked: null, socket, settle: resolve })
        this.#schedule()
      }
      // Only once everything written is in the kernel: a write still queued here would be lost.
      if (socket.writableLength === 0) send()
      else socket.once('drain', send)
    })
  }

  #drained(reason: string): Promise<MigrationResult> {
    if (this.#summary) count(this.#summary.drained, reason)
    return Promise.resolve({ migrated: false, reason })
  }

  /** Resolves once no connection of this generation is left to migrate or waiting for an ack. */
  settled(): Promise<void> {
    return new Promise((resolve) => {
      this.#settledWaiters.push(resolve)
      this.#checkSettled()
    })
  }

  /**
   * Once the drain hooks ran (someone waits in settled()): the migration
   * is over when nothing is on its way and no HTTP/1.1 connection that
   * could still move is left; the generation is settled when, besides, the
   * connections that drain here are gone. Upgraded connections (no
   * parser) are the app's to migrate, not waited for here.
   */
  #checkSettled(): void {
    if (this.#settledWaiters.length === 0) return
    if (this.#inFlight.size > 0 || this.#queued.length > 0) return
    let movable = false
    let remaining = false
    for (const t of this.#tracked) {
      if (t.kind !== 'http1') continue
      for (const s of t.sockets) {
        if (!(s as { parser?: unknown }).parser) continue
        remaining = true
        if (this.#sending && !t.drainOnly) movable = true
      }
    }
    if (movable) return
    if (this.#sending) this.#finish('done')
    if (remaining) return
    for (const w of this.#settledWaiters.splice(0)) w()
  }

  #schedule(): void {
    if (this.#scheduled) return
    this.#scheduled = true
    // After the current I/O callbacks: a response's last write and its
    // parser's message-complete land before the check.
    setImmediate(() => {
      this.#scheduled = false
      this.#pass()
    })
  }

  /**
   * Collect what can move now and send it in batches; several batches may
   * wait for their acks at once, so the successor adopts one while this
   * process prepares the next.
   */
  #pass(): void {
    while (this.#sending && this.#inFlight.size < MAX_BATCHES_IN_FLIGHT) {
      const batch = this.#collect()
      if (batch.length === 0) break
      this.#sendBatch(batch)
    }
    this.#checkSettled()
  }

  #collect(): InFlight[] {
    const batch: InFlight[] = this.#queued.splice(0, MAX_CONNECTIONS_PER_BATCH)
    for (const t of this.#tracked) {
      if (batch.length >= MAX_CONNECTIONS_PER_BATCH) break
      if (t.kind !== 'http1' || t.drainOnly || !t.connections || t.sockets.size === 0) continue
      for (const socket of idleCandidates(t)) {
        if (batch.length >= MAX_CONNECTIONS_PER_BATCH) break
        const item = this.#detachIdleHttp(t, socket)
        if (item) batch.push(item)
      }
    }
    return batch
  }

  /**
   * An idle HTTP/1.1 connection (no message begun, response written and
   * flushed, nothing buffered unread): stop reading, copy the fd, and
   * destroy the Node socket in one turn. The destroy closes only this
   * process's descriptor (no FIN, no RST while the copy lives), so no byte
   * of a next request ever enters this process: it waits in the kernel.
   */
  #detachIdleHttp(t: Tracked, socket: net.Socket): InFlight | null {
    const response = (socket as unknown as { _httpMessage?: { finished?: boolean } | null })._httpMessage
    if (response && !response.finished) return null
    if (socket.destroyed || socket.readableLength > 0) return null
    if (socket.writableLength > 0) {
      socket.once('drain', () => this.#schedule())
      return null
    }
    if (!socket.writable || !socket.readable) return null // half-closed: let it finish here
    const handle = (socket as unknown as SocketInternals)._handle
    if (!handle || typeof handle.fd !== 'number' || handle.fd < 0) return null
    handle.readStop?.()
    handle.reading = false
    const fd = copyStopped(handle)
    if (typeof fd !== 'number') {
      this.#log(`could not copy a connection's descriptor (${fd.message}); it drains here`)
      return null
    }
    t.sockets.delete(socket)
    socket.destroy()
    return { wire: { kind: HTTP1_KIND, listener: t.name }, fd, tracked: t, socket: null, settle: null }
  }

  #sendBatch(batch: InFlight[]): void {
    const channel = this.#channel!
    const id = ++this.#batchId
    this.#inFlight.set(id, batch)
    this.#summary!.batches++
    channel
      .send(
        { type: 'connections', batch: id, connections: batch.map((b) => b.wire) },
        batch.map((b) => b.fd),
      )
      .catch((e) => this.#successorGone((e as Error).message))
  }

  async #receiveAcks(channel: ControlChannel): Promise<void> {
    for (;;) {
      let message: Message
      try {
        message = await channel.socket.receive()
      } catch (e) {
        this.#successorGone((e as Error).message)
        return
      }
      for (const fd of message.fds) fd.close()
      let json: Record<string, unknown>
      try {
        json = channel.parse(message, 'an acknowledgement')
      } catch (e) {
        this.#successorGone((e as Error).message)
        return
      }
      const batch = this.#inFlight.get(json.batch as number)
      if (json.type !== 'adopted' || !batch) {
        this.#successorGone(`unexpected message ${String(json.type)} (batch ${String(json.batch)})`)
        return
      }
      this.#inFlight.delete(json.batch as number)
      const accepted = new Set(Array.isArray(json.accepted) ? (json.accepted as number[]) : [])
      const declined = new Map<number, string>()
      if (Array.isArray(json.declined)) for (const d of json.declined as Array<{ index: number; reason: string }>) declined.set(d.index, String(d.reason))
      batch.forEach((item, i) => {
        if (accepted.has(i)) this.#adopted(item)
        else this.#keepHere(item, 'declined', declined.get(i) ?? 'not acknowledged')
      })
      this.#summary!.durationMs = Date.now() - this.#startedAt
      this.#schedule()
      this.#checkSettled()
    }
  }

  #adopted(item: InFlight): void {
    closeQuietly(item.fd)
    count(this.#summary!.migrated, item.wire.kind)
    if (item.socket) {
      const socket = item.socket
      item.settle?.({ migrated: true })
      // After the promise's reactions (the app detaches its listeners first).
      setImmediate(() => socket.destroy())
    }
  }

  /** The successor did not take `item`: serve it here (HTTP/1.1 with Connection: close from now on). */
  #keepHere(item: InFlight, reason: string, detail: string): void {
    count(this.#summary!.drained, reason)
    if (item.socket) {
      closeQuietly(item.fd)
      const handle = (item.socket as unknown as SocketInternals)._handle
      if (handle && !item.socket.destroyed) {
        handle.readStart?.()
        handle.reading = true
      }
      item.settle?.({ migrated: false, reason, detail })
      return
    }
    const t = item.tracked!
    if (reason === 'declined') {
      // The successor serves no HTTP/1.1 on this listener: drain the rest of it here.
      if (!t.drainOnly) this.#log(`the successor declined connections of listener ${t.name} (${detail}); they drain here`)
      t.drainOnly = true
    }
    const socket = new net.Socket({ fd: item.fd, readable: true, writable: true })
    t.server.emit('connection', socket)
  }

  #successorGone(why: string): void {
    if (!this.#sending) return
    this.#log(`connection migration stopped: ${why}; the remaining connections drain here`)
    this.#sending = false
    const unacked = [...[...this.#inFlight.values()].flat(), ...this.#queued.splice(0)]
    this.#inFlight.clear()
    for (const item of unacked) this.#keepHere(item, 'successor-gone', why)
    for (const t of this.#tracked)
      if (t.kind === 'http1') count(this.#summary!.drained, 'successor-gone', t.sockets.size - unacked.filter((u) => u.tracked === t).length)
    this.#finish(why)
    this.#checkSettled()
  }

  #finish(why: string): void {
    const summary = this.#summary!
    this.#sending = false
    if (this.#sweep) clearInterval(this.#sweep)
    this.#sweep = null
    summary.durationMs = Date.now() - this.#startedAt
    const moved = Object.values(summary.migrated).reduce((a, b) => a + b, 0)
    this.#log(`migrated ${moved} connections in ${summary.batches} batches in ${summary.durationMs} ms (${why})`)
    this.#emit('migration', summary)
    const channel = this.#channel
    this.#channel = null
    channel?.socket.close()
  }

  /**
   * Old side, while its successor waits at `fdpass run`'s gate: the
   * successor was turned down or is dying, and gives its idle HTTP/1.1
   * connections back (a 'returned' message). Serve them here; bytes a
   * client sent meanwhile waited in the kernel and come with them.
   */
  adoptReturned(json: Record<string, unknown>, fds: number[], fromPid: number | null): { adopted: number; declined: number } {
    const wires = Array.isArray(json.connections) ? (json.connections as WireConnection[]) : []
    if (wires.length !== fds.length) {
      for (const fd of fds) closeQuietly(fd)
      throw new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', `expected returned connections with one descriptor each, got ${wires.length} for ${fds.length}`)
    }
    let adopted = 0
    wires.forEach((wire, i) => {
      // Only HTTP/1.1 comes back: an app's connection needs its state, which the dying side cannot hand over.
      if (wire.kind === HTTP1_KIND && this.#adopt(wire, fds[i], fromPid) === null) adopted++
      else if (wire.kind !== HTTP1_KIND) closeQuietly(fds[i])
    })
    const result = { adopted, declined: wires.length - adopted }
    this.#emit('connections-received', { ...result, fromPid })
    return result
  }

  // ---------------------------------------------------------------- new side

  /**
   * Before this generation took over (it waits at `fdpass run`'s gate
   * while its predecessor still serves): hand every idle HTTP/1.1
   * connection back to the predecessor now. Blocking sends and no
   * acknowledgement, so that it also works while the process dies of an
   * uncaught exception, with no turn of the event loop left: a descriptor
   * in flight keeps its connection open until the predecessor takes it.
   * Connections with a request in progress stay here. Returns how many
   * went back.
   */
  giveBack(channel: ControlChannel): number {
    let given = 0
    for (const t of this.#tracked) {
      if (t.kind !== 'http1' || t.drainOnly || t.sockets.size === 0) continue
      t.connections ??= connectionList(t.server)
      if (!t.connections) continue
      const items: InFlight[] = []
      for (const socket of idleCandidates(t)) {
        const item = this.#detachIdleHttp(t, socket)
        if (item) items.push(item)
      }
      for (let i = 0; i < items.length; i += MAX_CONNECTIONS_PER_BATCH) {
        const batch = items.slice(i, i + MAX_CONNECTIONS_PER_BATCH)
        try {
          channel.sendSync(
            { type: 'returned', connections: batch.map((b) => b.wire) },
            batch.map((b) => b.fd),
          )
        } catch (e) {
          // The predecessor is gone: these are served here after all.
          this.#log(`could not give connections back (${(e as Error).message}); they are served here`)
          for (const b of items.slice(i)) t.server.emit('connection', new net.Socket({ fd: b.fd, readable: true, writable: true }))
          return given
        }
        for (const b of batch) closeQuietly(b.fd)
        given += batch.length
      }
    }
    return given
  }

  /**
   * Turned down at the gate and draining: give idle connections back now
   * and each one as its response is written (responses keep their
   * connection meanwhile), until none is left here or `deadline` passes.
   */
  async giveBackWhileDraining(channel: ControlChannel, deadline: number): Promise<number> {
    this.#givingBack = true
    let given = 0
    try {
      for (;;) {
        given += this.giveBack(channel)
        const left = this.#tracked.some((t) => t.kind === 'http1' && !t.drainOnly && t.connections && [...t.sockets].some((s) => !s.destroyed))
        if (!left || Date.now() >= deadline) return given
        await new Promise((resolve) => setTimeout(resolve, SWEEP_INTERVAL_MS))
      }
    } finally {
      this.#givingBack = false
    }
  }

  // ---------------------------------------------------------------- new side

  /** Successor side: adopt connections of `kind` with `handler`. */
  onMigratedConnection(kind: string, handler: MigratedConnectionHandler, options: MigratedConnectionOptions = {}): void {
    if (typeof kind !== 'string' || kind === '' || kind === HTTP1_KIND)
      throw invalidArgValue('kind', kind, `must be a non-empty string other than '${HTTP1_KIND}'`)
    if (typeof handler !== 'function') throw invalidArgType('handler', 'a function', handler)
    const versions = options.versions ?? [1]
    if (!Array.isArray(versions) || !versions.every(Number.isInteger)) throw invalidArgType('options.versions', 'an array of integers', versions)
    this.#handlers.set(kind, { handler, versions })
  }

  /** The predecessor released its listeners and migrates: adopt what it sends until it closes. */
  beginReceiving(channel: ControlChannel, fromPid: number | null): void {
    this.#receiveConnections(channel, fromPid).catch((e) => this.#log(`connection migration from pid ${fromPid} ended: ${(e as Error).message}`))
  }

  async #receiveConnections(channel: ControlChannel, fromPid: number | null): Promise<void> {
    let adopted = 0
    try {
      for (;;) {
        let message: Message
        try {
          message = await channel.socket.receive()
        } catch (e) {
          const code = (e as FdpassError).code
          if (code === 'ERR_FDPASS_SOCKET_CLOSED') break
          throw e
        }
        const fds = message.fds.map((f) => f.release())
        let json: Record<string, unknown>
        try {
          json = channel.parse(message, 'connections')
        } catch (e) {
          for (const fd of fds) closeQuietly(fd)
          throw e
        }
        const wires = Array.isArray(json.connections) ? (json.connections as WireConnection[]) : []
        if (json.type !== 'connections' || wires.length !== fds.length) {
          for (const fd of fds) closeQuietly(fd)
          throw new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', `expected connections with one descriptor each, got ${String(json.type)}`)
        }
        const accepted: number[] = []
        const declined: Array<{ index: number; reason: string }> = []
        const http: number[] = []
        wires.forEach((wire, i) => {
          // An HTTP/1.1 connection is this generation's once its descriptor
          // is here and a server takes it: acknowledged before its socket is
          // built (~80 µs each), so that the old generation lets go of a
          // batch without waiting for that. An app's connection is
          // acknowledged after its handler took it (the handler may refuse).
          if (wire.kind === HTTP1_KIND && this.#declineReason(wire) === null) {
            http.push(i)
            accepted.push(i)
            return
          }
          // A declined connection's copy here is closed: the old generation still has its own.
          const reason = this.#adopt(wire, fds[i], fromPid)
          if (reason === null) accepted.push(i)
          else declined.push({ index: i, reason })
        })
        adopted += accepted.length
        this.#emit('connections-received', { adopted: accepted.length, declined: declined.length, fromPid })
        const acknowledged = channel.send({ type: 'adopted', batch: json.batch, accepted, declined }).catch(() => {})
        for (const i of http) this.#toBuild.push({ wire: wires[i], fd: fds[i], fromPid })
        this.#scheduleBuild()
        await acknowledged
      }
    } finally {
      channel.socket.close()
      if (adopted > 0) this.#log(`adopted ${adopted} connections from pid ${fromPid}`)
    }
  }

  /**
   * Build the sockets of acknowledged connections a few at a time, with a
   * turn of the event loop between (~80 µs each): a batch that arrives
   * meanwhile is acknowledged at once rather than after the sockets of the
   * one before it, so the old generation lets go sooner.
   */
  #scheduleBuild(): void {
    if (this.#building || this.#toBuild.length === 0) return
    this.#building = true
    setImmediate(() => {
      this.#building = false
      for (const { wire, fd, fromPid } of this.#toBuild.splice(0, BUILD_CHUNK)) this.#adopt(wire, fd, fromPid)
      this.#scheduleBuild()
    })
  }

  /** Adopt one connection (its fd is then the socket's), or close `fd` and say why not. */
  #adopt(wire: WireConnection, fd: number, fromPid: number | null): string | null {
    const reason = this.#declineReason(wire)
    if (reason !== null) {
      closeQuietly(fd)
      return reason
    }
    const pending = typeof wire.pending === 'string' ? Buffer.from(wire.pending, 'base64') : null
    if (wire.kind === HTTP1_KIND) {
      const t = this.#tracked.find((x) => x.name === wire.listener && x.kind === 'http1')!
      const socket = new net.Socket({ fd, readable: true, writable: true })
      if (pending?.length) socket.unshift(pending)
      t.server.emit('connection', socket)
      return null
    }
    const h = this.#handlers.get(wire.kind)!
    const state = typeof wire.stateBytes === 'string' ? Buffer.from(wire.stateBytes, 'base64') : wire.state
    const socket = new net.Socket({ fd, readable: true, writable: true })
    if (pending?.length) socket.unshift(pending)
    try {
      h.handler(socket, state, { kind: wire.kind, version: wire.version as number, fromPid, pendingBytes: pending?.length ?? 0 })
    } catch (e) {
      // Nothing was read yet (reads start on the next loop turn), and the
      // old generation still holds the connection: it serves on.
      socket.destroy()
      return `handler threw: ${(e as Error).message}`
    }
    return null
  }

  #declineReason(wire: WireConnection): string | null {
    if (!this.#isServing()) return 'the successor is no longer serving'
    if (wire.kind === HTTP1_KIND) {
      const t = this.#tracked.find((x) => x.name === wire.listener && x.kind === 'http1')
      return t ? null : `no HTTP/1.1 server on listener ${String(wire.listener)}`
    }
    const h = this.#handlers.get(wire.kind)
    if (!h) return `no handler for kind ${wire.kind}`
    if (!h.versions.includes(wire.version as number)) return `kind ${wire.kind} version ${String(wire.version)} is not one of ${h.versions.join(', ')}`
    return null
  }
}
