// FdSocket: a connected (or datagram) Unix socket that carries messages
// with descriptors, with net.Socket's lifecycle conventions.
import { constants as osConstants } from 'node:os'
import { type Waiter as WaiterOf, waitInLine } from './waiters'
import { type Address, formatAddress, toNativeAddress } from './address'
import { type EventName, Emitter, type Listener } from './events'
import { FdpassError, abortError, callNative, fromNative, invalidArgType, outOfRange, socketClosed } from './errors'
import { dataBytes, fdArray, sendArgs, type FdLike } from './fd-like'
import { type Message, deliveredMessages, lentMessage } from './delivery'
import { EV_END, EV_ERROR, EV_MESSAGES, EV_SEND_FAILED, EV_SENT, binding, hot, type NativeSocket, type SocketType } from './native'
import { type FdKind, type FdOrigin, ReceivedFd } from './received-fd'

/** The kind of a Unix socket (its values are the addon's: binding.d.ts). */
export type { SocketType } from './native'

export type { Message } from './delivery'

export interface PeerCredentials {
  /** null where the platform cannot tell (some macOS socketpairs). */
  pid: number | null
  uid: number
  gid: number
}

export interface ReceiveOptions {
  signal?: AbortSignal
}

export interface ReceiveSyncOptions {
  /** Milliseconds to wait for a message; throws ETIMEDOUT after that. Default: no limit. */
  timeout?: number
}

/** @internal */
export interface SocketSettings {
  highWaterMark: number
  raw: boolean
  /** When set, messages carrying another kind of descriptor are rejected. */
  acceptFds: readonly FdKind[] | undefined
}

type Pending = { resolve: () => void; reject: (e: Error) => void }
type Waiter = WaiterOf<Message | typeof DONE>

const DONE: unique symbol = Symbol('done')
// FdSocket's #state bits.
const STATE_PAUSED = 1
/** The native socket is asked to read. */
const STATE_READING_NATIVE = 2
/** The peer ended the connection. */
const STATE_ENDED = 4
const STATE_EMITTED_CLOSE = 8
/** receiveSync() is reading: what arrives is queued for it, never emitted. */
const STATE_RECEIVING_SYNC = 16
const receiveClosed = () => socketClosed('receive')
// What send() returns when the kernel took the message at once: one settled
// promise for all of them rather than a new one per message.
const SENT: Promise<void> = Promise.resolve()
/** Buffered descriptors before reading pauses, whatever highWaterMark says: they are open files. */
const MAX_BUFFERED_FDS = 4096
const asyncDispose: typeof Symbol.asyncDispose = Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose')

/** FdSocket's events and their listeners' arguments. */
export interface FdSocketEvents {
  /** A message arrived (only while the socket is not paused). */
  message: [message: Message]
  /** A received message was refused or truncated, or the connection failed; 'close' follows a failure. */
  error: [error: FdpassError]
  /** The peer closed its side; 'close' follows. */
  end: []
  /** The socket is closed; `hadError` when an error closed it. */
  close: [hadError: boolean]
}

/**
 * A Unix socket that sends and receives messages with file descriptors.
 *
 * Receive with the `'message'` event, with `receive()`, or with
 * `for await (const message of socket)`; use one style per socket.
 * Messages are read as soon as the socket exists and buffered up to
 * `highWaterMark`; past that, reading pauses and the sender's `send()`
 * waits, so nothing is lost and memory stays bounded.
 *
 * Events: `'message'` (Message), `'error'` (Error), `'end'` (the peer
 * closed its side), `'close'` (hadError: boolean).
 */
export class FdSocket extends Emitter<FdSocketEvents> {
  #native: NativeSocket | null
  /**
   * The native socket's handle for the per-message calls (ts/native.ts
   * `hot`), made at the first of them: an idle socket does without it.
   */
  #hotHandle: object | null = null
  readonly #type: SocketType
  /** Shared by the sockets of one server (or one connect() call). */
  readonly #settings: SocketSettings
  // Made when first needed: most sockets never buffer a message, wait on a
  // receive() or a full buffer, and a thousand idle ones then cost less memory.
  #queue: Array<Message | Error> | null = null
  #queuedFds = 0
  #waiters: Waiter[] | null = null
  #sends: Pending[] | null = null
  /** What few sockets need: one field for both, made when first needed. */
  #rare: { drained: Array<() => void> | null; origin: SocketOrigin | null } | null = null
  /** Flags, one bit each (STATE_*): one field rather than five. */
  #state = STATE_READING_NATIVE
  #fd: number

  /** @internal Use connect(), socketpair(), bind() or adopt(). */
  constructor(native: NativeSocket, settings: SocketSettings) {
    super()
    this.#native = native
    // The native getter makes a new string per call; these literals are
    // one string each for every socket (31 bytes of an idle one's ~500).
    const type = native.type
    this.#type = type === 'seqpacket' ? 'seqpacket' : type === 'stream' ? 'stream' : 'dgram'
    this.#settings = settings
    this.#fd = native.fd
    native.start(this)
    native.setReading(true)
  }

  static {
    // Every socket's events come through this one function, with the socket
    // as `this`: a closure per socket would cost an idle one 93 bytes.
    binding.setSocketDispatcher(function (this: FdSocket, event: number, a: unknown, b: unknown, c: unknown) {
      this.#onEvent(event, a, b, c)
    })
  }

  #has(bit: number): boolean {
    return (this.#state & bit) !== 0
  }
  #setState(bit: number, on: boolean): void {
    this.#state = on ? this.#state | bit : this.#state & ~bit
  }

  /** Messages and errors buffered for receive(), iteration or a later listener. */
  #queued(): number {
    return this.#queue === null ? 0 : this.#queue.length
  }

  // A 'message' listener added later takes the messages buffered before it.
  // (Overriding the methods instead of listening for 'newListener' saves a
  // closure and a listener per socket.)
  override on<E extends EventName<FdSocketEvents>>(event: E, listener: Listener<FdSocketEvents, E>): this
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    super.on(event as EventName<FdSocketEvents>, listener)
    return this.#added(event)
  }

  override addListener<E extends EventName<FdSocketEvents>>(event: E, listener: Listener<FdSocketEvents, E>): this
  override addListener(event: string | symbol, listener: (...args: any[]) => void): this {
    super.addListener(event as EventName<FdSocketEvents>, listener)
    return this.#added(event)
  }

  override once<E extends EventName<FdSocketEvents>>(event: E, listener: Listener<FdSocketEvents, E>): this
  override once(event: string | symbol, listener: (...args: any[]) => void): this {
    super.once(event as EventName<FdSocketEvents>, listener)
    return this.#added(event)
  }

  override prependListener<E extends EventName<FdSocketEvents>>(event: E, listener: Listener<FdSocketEvents, E>): this
  override prependListener(event: string | symbol, listener: (...args: any[]) => void): this {
    super.prependListener(event as EventName<FdSocketEvents>, listener)
    return this.#added(event)
  }

  override prependOnceListener<E extends EventName<FdSocketEvents>>(event: E, listener: Listener<FdSocketEvents, E>): this
  override prependOnceListener(event: string | symbol, listener: (...args: any[]) => void): this {
    super.prependOnceListener(event as EventName<FdSocketEvents>, listener)
    return this.#added(event)
  }

  #added(event: string | symbol): this {
    if (event === 'message') process.nextTick(() => this.#drainToListeners())
    return this
  }

  /** 'stream', 'seqpacket' or 'dgram'. */
  get type(): SocketType {
    return this.#type
  }

  /** True when the stream carries no fdpass framing (always true for seqpacket and dgram). */
  get raw(): boolean {
    return this.#settings.raw || this.#type !== 'stream'
  }

  /** The socket's own descriptor, or -1 once closed. It can itself be sent. */
  get fd(): number {
    return this.#native ? this.#fd : -1
  }

  /** 'open' until the socket is closed or the peer ended it. */
  get readyState(): 'open' | 'closed' {
    return this.#native ? 'open' : 'closed'
  }

  /** Sends that wait for room in the kernel's socket buffer. */
  get pendingSends(): number {
    return this.#sends?.length ?? 0
  }

  /**
   * This end's address, or null when unbound or closed. Throws the system
   * error (getsockname) if the descriptor is no longer the socket.
   */
  get localAddress(): Address | null {
    const native = this.#native
    return native ? callNative(() => native.localAddress()) : null
  }

  /**
   * The peer's address, or null when the peer is unbound, when there is no
   * peer (an unconnected datagram socket) and when closed. Throws the
   * system error (getpeername) if the descriptor is no longer the socket.
   */
  get remoteAddress(): Address | null {
    const native = this.#native
    return native ? callNative(() => native.remoteAddress()) : null
  }

  /**
   * Send `data` with `fds` as one message. Resolves when the whole message
   * is in the kernel, so the caller may close its own copies of the
   * descriptors then (the receiver gets new ones). While the peer's buffer
   * is full the message waits in order behind earlier ones; the caller's
   * descriptors are duplicated for that time, so closing them early is safe.
   * Bad arguments throw synchronously; I/O failures reject.
   */
  send(data: string | Uint8Array, fds?: readonly FdLike[]): Promise<void> {
    const args = sendArgs(data, fds)
    if (!this.#native) return Promise.reject(socketClosed('send'))
    let queued: boolean
    try {
      queued = hot.socketSend(this.#hot(), args.bytes, args.byteLength, args.fds, args.fdCount)
    } catch (e) {
      return Promise.reject(fromNative(e))
    }
    return queued ? this.#pending() : SENT
  }

  /** Datagram sockets: send one message to `address`. */
  sendTo(address: Address, data: string | Uint8Array, fds?: readonly FdLike[]): Promise<void> {
    if (this.#type !== 'dgram') {
      throw new FdpassError('ERR_FDPASS_UNSUPPORTED', `sendTo() is for dgram sockets; this one is ${this.#type}: use send()`)
    }
    const to = toNativeAddress(address)
    const bytes = dataBytes(data)
    const nums = fdArray(fds)
    const native = this.#native
    if (!native) return Promise.reject(socketClosed('sendTo'))
    let queued: boolean
    try {
      queued = native.sendTo(to, bytes, nums)
    } catch (e) {
      return Promise.reject(fromNative(e))
    }
    return queued ? this.#pending() : SENT
  }

  /**
   * The next message. Rejects with ERR_FDPASS_SOCKET_CLOSED once the socket
   * is closed or ended and every buffered message was taken, with
   * ERR_FDPASS_TRUNCATED for a message whose descriptors the kernel dropped
   * (the socket stays usable), and with ABORT_ERR when `signal` aborts.
   */
  receive(options?: ReceiveOptions): Promise<Message> {
    const signal = options?.signal
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an AbortSignal', signal)
    // One promise: the end of the queue rejects it, rather than a then() that turns DONE into an error.
    return this.#next(signal, receiveClosed) as Promise<Message>
  }

  /**
   * Send `data` with `fds` as one message now, blocking the thread while
   * the peer's buffer is full (no limit: like a blocking write). When it
   * returns the whole message is in the kernel. For code that may block:
   * a worker thread, a short-lived helper, a request/response loop where
   * latency matters more than the event loop. Throws
   * ERR_FDPASS_SENDS_QUEUED while earlier send() calls still wait (it
   * cannot overtake them: await them first).
   */
  sendSync(data: string | Uint8Array, fds?: readonly FdLike[]): void {
    const args = sendArgs(data, fds)
    if (!this.#native) throw socketClosed('sendSync')
    if (this.pendingSends > 0) {
      throw new FdpassError(
        'ERR_FDPASS_SENDS_QUEUED',
        `sendSync() cannot overtake the ${this.pendingSends} send()s still waiting for room in the peer's buffer: await them (or socket.end()) first`,
      )
    }
    try {
      hot.socketSendSync(this.#hot(), args.bytes, args.byteLength, args.fds, args.fdCount)
    } catch (e) {
      throw fromNative(e)
    }
  }

  /**
   * The next message, blocking the thread until one arrives (or `timeout`
   * ms pass: then it throws ETIMEDOUT). A buffered message is returned at
   * once. Throws as `receive()` rejects: ERR_FDPASS_SOCKET_CLOSED after the
   * peer closed and every message was taken, ERR_FDPASS_TRUNCATED for a
   * truncated message. Messages read along with the first wait, in order,
   * for the next call (or for `receive()` and `'message'`). For code that
   * may block, as `sendSync()`; do not mix it with a waiting `receive()`.
   * Without a timeout, on a seqpacket or datagram socket, it waits in
   * recvmsg itself and leaves the socket's file without O_NONBLOCK
   * (fdpass's own sends and reads never wait on it regardless): a process
   * you gave `socket.fd` to shares that flag.
   */
  receiveSync(options?: ReceiveSyncOptions): Message {
    const timeout = options?.timeout
    if (timeout !== undefined) {
      if (typeof timeout !== 'number' || Number.isNaN(timeout)) throw invalidArgType('options.timeout', 'a number', timeout)
      if (timeout < 0) throw outOfRange('options.timeout', '>= 0', timeout)
    }
    let item = this.#dequeue()
    if (item === undefined && this.#native) {
      if (this.#waiters !== null && this.#waiters.length > 0) {
        throw new FdpassError('ERR_FDPASS_RECEIVE_PENDING', 'receiveSync() cannot take a message while a receive() waits for it: use one style per socket')
      }
      this.#setState(STATE_RECEIVING_SYNC, true)
      let got: number
      try {
        got = hot.socketReceiveSync(this.#hot(), timeout === undefined || timeout === Infinity ? -1 : Math.ceil(timeout))
      } catch (e) {
        throw fromNative(e)
      } finally {
        this.#setState(STATE_RECEIVING_SYNC, false)
      }
      if (got > 0) {
        // One message in the lent buffers rather than through #onEvent: read it now.
        item = lentMessage(this.#settings.acceptFds)
        const origin = this.#fdOrigin()
        if (!(item instanceof Error)) ReceivedFd.guard(item.fds, origin, origin.messages)
        origin.messages++
      } else {
        item = this.#dequeue()
      }
      if (item === undefined && got < 0 && this.#native) {
        throw new FdpassError('ETIMEDOUT', `receiveSync ETIMEDOUT: no message within ${timeout} ms`, {
          errno: -osConstants.errno.ETIMEDOUT,
          syscall: 'recvmsg',
        })
      }
    }
    this.#updateReading()
    if (item === undefined) throw socketClosed('receiveSync')
    if (item instanceof Error) throw item
    return item
  }

  async *[Symbol.asyncIterator](): AsyncIterableIterator<Message> {
    for (;;) {
      const m = await this.#next(undefined)
      if (m === DONE) return
      yield m
    }
  }

  /** Stop reading; messages stay in the kernel and the sender's send() waits. */
  pause(): this {
    this.#setState(STATE_PAUSED, true)
    this.#updateReading()
    return this
  }

  /** Resume reading after pause(). */
  resume(): this {
    this.#setState(STATE_PAUSED, false)
    this.#updateReading()
    this.#drainToListeners()
    return this
  }

  /** Keep the event loop alive while this socket is active (the default). */
  ref(): this {
    this.#native?.setRef(true)
    return this
  }

  /** Let the process exit even while this socket is open. */
  unref(): this {
    this.#native?.setRef(false)
    return this
  }

  /** pid, uid and gid of the process at the other end (SO_PEERCRED / getpeereid). */
  peerCredentials(): PeerCredentials {
    const native = this.#native
    if (!native) throw socketClosed('peerCredentials')
    const c = callNative(() => native.peerCredentials())
    return { pid: c.pid ?? null, uid: c.uid, gid: c.gid }
  }

  /** Wait for queued sends to reach the kernel (or fail), then close. */
  async end(): Promise<void> {
    if (this.pendingSends > 0) await new Promise<void>((resolve) => ((this.#rare ??= { drained: null, origin: null }).drained ??= []).push(resolve))
    this.close()
  }

  /**
   * Close now. Idempotent. Queued sends reject with ERR_FDPASS_SOCKET_CLOSED
   * (their descriptor copies are closed); buffered messages nobody took
   * have their descriptors closed; 'close' follows on the next tick.
   */
  close(): void {
    this.#destroy(null)
  }

  async [asyncDispose](): Promise<void> {
    this.close()
  }

  /** Where this socket's descriptors come from, for FDPASS_UNCLOSED_FD; made at the first delivery. */
  #fdOrigin(): SocketOrigin {
    return ((this.#rare ??= { drained: null, origin: null }).origin ??= new SocketOrigin(this))
  }

  #hot(): object {
    return (this.#hotHandle ??= this.#native!.hotHandle())
  }

  #pending(): Promise<void> {
    return new Promise((resolve, reject) => (this.#sends ??= []).push({ resolve, reject }))
  }

  #settleSends(count: number, error: Error | null): void {
    if (this.#sends === null) return
    for (const p of this.#sends.splice(0, count)) {
      if (error) p.reject(error)
      else p.resolve()
    }
    const drained = this.#rare?.drained
    if (this.#sends.length === 0 && drained) for (const done of drained.splice(0)) done()
  }

  /** The next item; at the end DONE, or the rejection `closedError` makes. */
  #next(signal: AbortSignal | undefined, closedError?: () => Error): Promise<Message | typeof DONE> {
    if (signal?.aborted) return Promise.reject(abortError(signal.reason))
    const item = this.#dequeue()
    if (item !== undefined) {
      this.#updateReading()
      return item instanceof Error ? Promise.reject(item) : Promise.resolve(item)
    }
    if (!this.#native) return closedError ? Promise.reject(closedError()) : Promise.resolve(DONE)
    const waiting = waitInLine((this.#waiters ??= []), signal, closedError)
    this.#updateReading()
    return waiting
  }

  #enqueue(item: Message | Error): void {
    this.#queue ??= []
    this.#queue.push(item)
    if (!(item instanceof Error)) this.#queuedFds += item.fds.length
  }

  #dequeue(): Message | Error | undefined {
    const item = this.#queue?.shift()
    if (item && !(item instanceof Error)) this.#queuedFds -= item.fds.length
    return item
  }

  #updateReading(): void {
    const queued = this.#queued()
    const room = queued < this.#settings.highWaterMark && (queued === 0 || this.#queuedFds < MAX_BUFFERED_FDS)
    const want = !this.#has(STATE_PAUSED) && ((this.#waiters !== null && this.#waiters.length > 0) || room)
    if (want !== this.#has(STATE_READING_NATIVE) && this.#native) {
      this.#setState(STATE_READING_NATIVE, want)
      if (this.#native.setReading(want)) {
        // Whole messages already sit in user space: no readiness event will come for them.
        const native = this.#native
        process.nextTick(() => {
          if (this.#native === native) native.readBuffered()
        })
      }
    }
  }

  /** Hand an item to a waiting receive(), a 'message' listener, or the buffer. */
  #dispatch(item: Message | Error): void {
    const waiter = this.#waiters?.shift()
    if (waiter) {
      waiter.cleanup?.()
      if (item instanceof Error) waiter.reject(item)
      else waiter.resolve(item)
      return
    }
    if (!this.#has(STATE_PAUSED) && !this.#has(STATE_RECEIVING_SYNC) && this.#queued() === 0) {
      if (item instanceof Error) {
        // Flowing ('message' listeners): errors go where Node sends them,
        // to 'error' (uncaught without a listener), never silently queued
        // in front of the messages that follow.
        if (this.listenerCount('error') > 0 || this.listenerCount('message') > 0) {
          this.emit('error', item)
          return
        }
      } else if (this.listenerCount('message') > 0) {
        this.emit('message', item)
        return
      }
    }
    this.#enqueue(item)
  }

  #drainToListeners(): void {
    while (!this.#has(STATE_PAUSED) && this.#queue !== null && this.#queue.length > 0 && this.listenerCount('message') > 0) {
      const item = this.#queue[0]
      if (item instanceof Error && this.listenerCount('error') === 0) break
      this.#dequeue()
      if (item instanceof Error) this.emit('error', item)
      else this.emit('message', item)
    }
    this.#updateReading()
    if (!this.#native && this.#queued() === 0) this.#finishWaiters()
  }

  #onEvent(event: number, a: unknown, b: unknown, c: unknown): void {
    switch (event) {
      case EV_MESSAGES:
        // Read now: the lent delivery buffers are reused by the next delivery.
        this.#onMessages(deliveredMessages(a as Buffer | number, b as Int32Array | number, c as Array<Address | null> | undefined, this.#settings.acceptFds))
        break
      case EV_SENT:
        this.#settleSends(a as number, null)
        break
      case EV_SEND_FAILED:
        this.#settleSends(b as number, fromNative(a))
        break
      case EV_END:
        this.#setState(STATE_ENDED, true)
        this.emit('end')
        this.#destroy(null)
        break
      case EV_ERROR:
        this.#destroy(fromNative(a))
        break
    }
  }

  /** `items` from deliveredMessages(): every descriptor already has an owner, so a throwing listener can lose no message and leak no descriptor. */
  #onMessages(items: Array<Message | Error>): void {
    let thrown: unknown = null
    const origin = this.#fdOrigin()
    for (const item of items) {
      const index = origin.messages++
      if (!this.#native && !this.#has(STATE_ENDED)) {
        if (!(item instanceof Error)) for (const fd of item.fds) fd.close()
        continue
      }
      try {
        this.#dispatch(item)
      } catch (e) {
        thrown ??= e
      } finally {
        if (!(item instanceof Error)) ReceivedFd.guard(item.fds, origin, index)
      }
    }
    this.#updateReading()
    if (thrown !== null) throw thrown
  }

  #finishWaiters(): void {
    if (this.#waiters === null) return
    for (const w of this.#waiters.splice(0)) {
      w.cleanup?.()
      if (w.closedError) w.reject(w.closedError())
      else w.resolve(DONE)
    }
  }

  #destroy(error: Error | null): void {
    const native = this.#native
    if (!native) return
    this.#native = null
    native.close()
    // An Error (and its stack) only when a send is there to reject.
    if (this.pendingSends > 0) this.#settleSends(this.pendingSends, socketClosed('send'))
    if (!this.#has(STATE_ENDED)) {
      // Closed by us or by an error: buffered messages are nobody's now.
      for (const item of this.#queue?.splice(0) ?? []) if (!(item instanceof Error)) for (const fd of item.fds) fd.close()
      this.#queuedFds = 0
    }
    if (error) this.#dispatchFatal(error)
    if (this.#queued() === 0) this.#finishWaiters()
    process.nextTick(() => {
      if (this.#has(STATE_EMITTED_CLOSE)) return
      this.#setState(STATE_EMITTED_CLOSE, true)
      this.emit('close', error !== null)
    })
  }

  /**
   * Report the error that closed the socket: to 'error' listeners, else to
   * a waiting receive(), else, when the socket is flowing ('message'
   * listeners), to 'error' anyway, as Node does: with no listener it is
   * thrown, rather than lost behind a 'close' with hadError. With no
   * taker at all yet, the next receive() or iteration step gets it.
   * receiveSync() reports it to its caller, like a receive() would.
   */
  #dispatchFatal(error: Error): void {
    const sync = this.#has(STATE_RECEIVING_SYNC)
    if (this.listenerCount('error') > 0 && !sync) {
      process.nextTick(() => this.emit('error', error))
      return
    }
    const waiter = this.#waiters?.shift()
    if (waiter) {
      waiter.cleanup?.()
      waiter.reject(error)
      return
    }
    if (this.listenerCount('message') > 0 && !sync) {
      process.nextTick(() => this.emit('error', error))
      return
    }
    this.#enqueue(error)
  }
}

/**
 * A socket as FDPASS_UNCLOSED_FD names it. It holds the socket only until
 * it has described it: a ReceivedFd is guarded (and this asked) a
 * microtask after its delivery, while the socket is still open.
 */
class SocketOrigin implements FdOrigin {
  messages = 0
  #socket: FdSocket | null
  #description: string | null = null

  constructor(socket: FdSocket) {
    this.#socket = socket
  }

  describe(): string {
    if (this.#description !== null) return this.#description
    const socket = this.#socket as FdSocket
    this.#socket = null
    const fd = socket.fd
    let text = `the ${socket.type} socket`
    if (fd < 0) {
      this.#description = `${text} (closed)`
      return this.#description
    }
    try {
      const local = socket.localAddress
      const remote = socket.remoteAddress
      text += ` fd ${fd}`
      if (local !== null) text += ` at ${formatAddress(local)}`
      if (remote !== null) text += ` connected to ${formatAddress(remote)}`
      if (socket.type !== 'dgram') {
        const peer = socket.peerCredentials()
        text += ` (peer pid ${peer.pid ?? 'unknown'}, uid ${peer.uid})`
      }
    } catch {
      // The peer left between the delivery and now: what was found is all there is.
    }
    this.#description = text
    return text
  }
}
