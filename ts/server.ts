// FdServer: a listening Unix socket that yields FdSockets.
import { type Waiter as WaiterOf, waitInLine } from './waiters'
import type { Address } from './address'
import { Emitter } from './events'
import { type FdpassError, abortError, callNative, fromNative, invalidArgType, socketClosed } from './errors'
import { EV_ACCEPTABLE, EV_ERROR, type NativeServer, type NativeSocket } from './native'
import { FdSocket, type PeerCredentials, type ReceiveOptions, type SocketSettings, type SocketType } from './socket'

const acceptClosed = () => socketClosed('accept')

/**
 * Who may connect to a server: allowed uids and/or gids (a peer passes if
 * either list has it), or a function that decides from the credentials.
 */
export type PeerFilter = { uids?: readonly number[]; gids?: readonly number[] } | ((peer: PeerCredentials) => boolean)

type Waiter = WaiterOf<FdSocket | null>

const asyncDispose: typeof Symbol.asyncDispose = Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose')

/** Connections accepted ahead of accept() calls before accepting pauses. */
const MAX_QUEUED_CONNECTIONS = 128
/** Back-off after EMFILE/ENFILE from accept(), so a full fd table is no busy loop. */
const ACCEPT_BACKOFF_MS = 50

/** FdServer's events and their listeners' arguments. */
export interface FdServerEvents {
  /** A connection was accepted (and, with `allow`, admitted). */
  connection: [socket: FdSocket]
  /** The `allow` filter turned a peer away; its connection was closed. */
  refused: [peer: PeerCredentials]
  /** accept() failed (it is retried), or a peer's credentials could not be read. */
  error: [error: FdpassError]
  close: []
}

/**
 * A listening Unix socket. Take connections with the `'connection'` event,
 * with `accept()`, or with `for await (const socket of server)`.
 *
 * Events: `'connection'` (FdSocket), `'refused'` (PeerCredentials: a peer
 * the `allow` filter turned away), `'error'` (Error), `'close'`.
 */
export class FdServer extends Emitter<FdServerEvents> {
  #native: NativeServer | null
  readonly #settings: SocketSettings
  readonly #address: Address | null
  readonly #unlinkOnClose: boolean
  readonly #allow: PeerFilter | undefined
  #queue: FdSocket[] = []
  readonly #waiters: Waiter[] = []
  #accepting = true
  #backoff: NodeJS.Timeout | null = null
  #refed = true

  /** @internal Use listen() or adoptServer(). */
  constructor(native: NativeServer, settings: SocketSettings, unlinkOnClose: boolean, allow?: PeerFilter) {
    super()
    this.#native = native
    this.#settings = settings
    this.#address = native.localAddress()
    this.#unlinkOnClose = unlinkOnClose
    this.#allow = allow
    native.start((event, error) => {
      if (event === EV_ACCEPTABLE) this.#acceptReady()
      else if (event === EV_ERROR) this.#acceptFailed(fromNative(error))
    })
  }

  /** The address it listens on: a path, or { abstract }. */
  get address(): Address | null {
    return this.#address
  }

  /** 'stream' or 'seqpacket'. */
  get type(): SocketType {
    return this.#native?.type ?? 'stream'
  }

  /** The listening descriptor, or -1 once closed. It can be sent to another process. */
  get fd(): number {
    return this.#native?.fd ?? -1
  }

  get listening(): boolean {
    return this.#native !== null
  }

  /** The next connection. Rejects with ERR_FDPASS_SOCKET_CLOSED once closed. */
  accept(options?: ReceiveOptions): Promise<FdSocket> {
    const signal = options?.signal
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an AbortSignal', signal)
    return this.#next(signal, acceptClosed) as Promise<FdSocket>
  }

  async *[Symbol.asyncIterator](): AsyncIterableIterator<FdSocket> {
    for (;;) {
      const s = await this.#next(undefined)
      if (s === null) return
      yield s
    }
  }

  ref(): this {
    this.#refed = true
    this.#native?.setRef(true)
    return this
  }

  unref(): this {
    this.#refed = false
    this.#native?.setRef(false)
    return this
  }

  /**
   * Stop listening and remove the socket file this server created (only if
   * it is still the same file). Connections already accepted stay open;
   * queued ones nobody took are closed. Idempotent.
   */
  close(): Promise<void> {
    const native = this.#native
    if (!native) return Promise.resolve()
    this.#native = null
    if (this.#backoff) clearTimeout(this.#backoff)
    let error: Error | null = null
    try {
      native.close(this.#unlinkOnClose)
    } catch (e) {
      error = fromNative(e)
    }
    for (const s of this.#queue.splice(0)) s.close()
    for (const w of this.#waiters.splice(0)) {
      w.cleanup?.()
      if (w.closedError) w.reject(w.closedError())
      else w.resolve(null)
    }
    return new Promise((resolve, reject) => {
      process.nextTick(() => {
        this.emit('close')
        if (error) reject(error)
        else resolve()
      })
    })
  }

  async [asyncDispose](): Promise<void> {
    await this.close()
  }

  /** The next connection; at the end null, or the rejection `closedError` makes. */
  #next(signal: AbortSignal | undefined, closedError?: () => Error): Promise<FdSocket | null> {
    if (signal?.aborted) return Promise.reject(abortError(signal.reason))
    const queued = this.#queue.shift()
    if (queued) {
      this.#setAccepting(true)
      return Promise.resolve(queued)
    }
    if (!this.#native) return closedError ? Promise.reject(closedError()) : Promise.resolve(null)
    const waiting = waitInLine(this.#waiters, signal, closedError)
    this.#setAccepting(true)
    return waiting
  }

  #setAccepting(on: boolean): void {
    if (on === this.#accepting || !this.#native || this.#backoff) return
    this.#accepting = on
    this.#native.setAccepting(on)
  }

  #acceptReady(): void {
    while (this.#native) {
      const hasTaker = this.#waiters.length > 0 || this.listenerCount('connection') > 0
      if (!hasTaker && this.#queue.length >= MAX_QUEUED_CONNECTIONS) {
        this.#setAccepting(false)
        return
      }
      let native: NativeSocket | null
      try {
        native = this.#native.accept()
      } catch (e) {
        this.#acceptFailed(fromNative(e))
        return
      }
      if (!native) return
      if (this.#allow && !this.#admit(native)) continue
      const socket = new FdSocket(native, this.#settings)
      if (!this.#refed) socket.unref()
      const waiter = this.#waiters.shift()
      if (waiter) {
        waiter.cleanup?.()
        waiter.resolve(socket)
      } else if (this.listenerCount('connection') > 0) {
        this.emit('connection', socket)
      } else {
        this.#queue.push(socket)
      }
    }
  }

  /** Check the peer before anything is read from it or sent to it. */
  #admit(native: NativeSocket): boolean {
    let peer: PeerCredentials
    let allowed = false
    try {
      const c = native.peerCredentials()
      peer = { pid: c.pid ?? null, uid: c.uid, gid: c.gid }
      const allow = this.#allow
      if (typeof allow === 'function') allowed = allow(peer) === true
      else if (allow) allowed = (allow.uids?.includes(peer.uid) ?? false) || (allow.gids?.includes(peer.gid) ?? false)
    } catch (e) {
      // The peer is already gone (or the platform cannot tell): refuse.
      native.close()
      if (this.listenerCount('error') > 0) this.emit('error', fromNative(e))
      return false
    }
    if (!allowed) {
      native.close()
      this.emit('refused', peer)
    }
    return allowed
  }

  #acceptFailed(error: Error): void {
    // EMFILE/ENFILE: the connection stays in the backlog; try again shortly.
    const native = this.#native
    if (native) {
      native.setAccepting(false)
      this.#backoff = setTimeout(() => {
        this.#backoff = null
        if (this.#native) {
          this.#accepting = true
          this.#native.setAccepting(true)
        }
      }, ACCEPT_BACKOFF_MS)
      if (!this.#refed) this.#backoff.unref()
    }
    if (this.listenerCount('error') > 0) this.emit('error', error)
    else process.emitWarning(`fdpass: accept failed (${(error as { code?: string }).code}); retrying`, { code: 'FDPASS_ACCEPT_FAILED' })
  }
}

/** @internal */
export function wrapServer(native: NativeServer, settings: SocketSettings, unlinkOnClose: boolean, allow: PeerFilter | undefined): FdServer {
  return callNative(() => new FdServer(native, settings, unlinkOnClose, allow))
}
