// One received descriptor, owned until closed or released.
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import * as net from 'node:net'
import { FdpassError, callNative, fromNative, invalidArgType } from './errors'
import { nativeReadFs, nativeWriteFs } from './fd-streams'
import {
  FD_BATCH,
  FD_BATCH_SIZE,
  closeBatch,
  hot,
  fdStat,
  fileStat,
  fileStatBatch,
  runtimeLimits,
  runtimeName,
  type FdKind,
  type FdStat,
  type FileStat,
} from './native'

// A ReceivedFd that is garbage-collected while still owning its descriptor
// closes it and warns, as fs.promises.FileHandle does. The registry holds a
// small shared cell rather than an unregister token: closing just empties
// the cell, which is cheaper than unregistering on every close. The cell is
// made only when the object is registered: most received descriptors are
// closed or released before that and never need one.
interface Cell {
  fd: number
  /** Where the descriptor came from, for the warning (FdOrigin.describe()). */
  where: string
  /** The index of the message it came with on its socket, or -1. */
  message: number
}
const unclaimed = new FinalizationRegistry<Cell>((cell) => {
  const fd = cell.fd
  if (fd < 0) return
  cell.fd = -1
  // What it refers to, looked at only now: a leak is rare, a stat per descriptor is not free.
  let kind: FdKind | 'closed' = 'unknown'
  try {
    kind = fileStat(fd).kind
  } catch {
    kind = 'closed'
  }
  try {
    hot.closeFd(fd)
  } catch {
    return
  }
  const from = cell.message >= 0 ? `message #${cell.message} on ${cell.where}` : cell.where
  const warning = new Error(
    `Closing file descriptor ${fd} (a ${kind}) on garbage collection: a ReceivedFd was never closed or released. It came with ${from}.`,
  ) as Error & UnclosedFdWarning
  warning.name = 'Warning'
  warning.code = 'FDPASS_UNCLOSED_FD'
  warning.fd = fd
  warning.kind = kind
  warning.origin = cell.where
  warning.messageIndex = cell.message >= 0 ? cell.message : null
  process.emitWarning(warning)
})

/**
 * The FDPASS_UNCLOSED_FD warning (a process 'warning' event): a
 * ReceivedFd was garbage-collected while it still owned its descriptor,
 * which fdpass then closed. Its fields say where the descriptor came from.
 */
export interface UnclosedFdWarning {
  code: 'FDPASS_UNCLOSED_FD'
  /** The descriptor number it had. */
  fd: number
  /** What it referred to. */
  kind: FdKind | 'closed'
  /** The socket it arrived on (type, addresses, peer pid), or the call that made it. */
  origin: string
  /** Which message on that socket carried it (0 for the first message the socket received), or null. */
  messageIndex: number | null
}

/**
 * @internal Where a socket's received descriptors come from, for the
 * FDPASS_UNCLOSED_FD warning: one per socket, made at its first delivery.
 */
export interface FdOrigin {
  /** Messages received on the socket so far: the next one's index. */
  messages: number
  /** E.g. "stream socket /tmp/a.sock (peer pid 1234)"; worked out once, when first asked. */
  describe(): string
}

export type { FdKind }

// Descriptors handed out and not yet guarded (ReceivedFd.guard): a bound,
// so that code that never yields to the event loop (a receiveSync() loop)
// holds no more than this many.
const UNGUARDED_MAX = 256
const unguarded: Array<ReceivedFd | undefined> = Array.from({ length: UNGUARDED_MAX }, () => undefined)
const unguardedOrigin: Array<FdOrigin | null> = Array.from({ length: UNGUARDED_MAX }, () => null)
const unguardedMessage = new Int32Array(UNGUARDED_MAX)
let unguardedCount = 0
let guardScheduled = false
// A resolved promise's then() queues the microtask: queueMicrotask() makes
// an AsyncResource and a bound function each time.
const RESOLVED = Promise.resolve()

/**
 * A descriptor that arrived with a message. It owns the descriptor: call
 * `close()` (or `using fd = ...`), or hand it on with `release()` or one of
 * the converters, which take ownership. One that is dropped unclosed is
 * closed by the garbage collector, with a process warning.
 */
export class ReceivedFd {
  #fd: number
  #cell: Cell | null = null

  /**
   * @internal With `guarded` false, the creator must call
   * `ReceivedFd.guard()` before it lets go of the object. `where`: the
   * origin a guarded one names in FDPASS_UNCLOSED_FD.
   */
  constructor(fd: number, guarded = true, where = 'a ReceivedFd made directly') {
    this.#fd = fd
    if (guarded) this.#register(where, -1)
  }

  /**
   * @internal Give the garbage collector's safety net to those still open
   * once the code they were handed to had its turn: in a microtask queued
   * after the one that resumes a receive(), or when UNGUARDED_MAX wait. A
   * socket hands out its descriptors first and guards them after: the ones
   * closed or released by then (the common case: in a listener, right after
   * `await receive()` or a receiveSync()) never pay for a registry entry
   * (14% of a sendSync, receiveSync and close in one process). Until then
   * the list holds them, so none can be collected unguarded. (setImmediate
   * instead: one more turn of the event loop per message, which doubled
   * W3's p99.)
   */
  static guard(fds: readonly ReceivedFd[], origin: FdOrigin | null, message: number): void {
    for (const r of fds) {
      if (r.#fd < 0 || r.#cell !== null) continue
      if (unguardedCount === UNGUARDED_MAX) ReceivedFd.#guardWaiting()
      unguardedOrigin[unguardedCount] = origin
      unguardedMessage[unguardedCount] = message
      unguarded[unguardedCount++] = r
    }
    if (!guardScheduled && unguardedCount > 0) {
      guardScheduled = true
      void RESOLVED.then(ReceivedFd.#guardScheduled)
    }
  }

  static #guardScheduled(): void {
    guardScheduled = false
    ReceivedFd.#guardWaiting()
  }

  static #guardWaiting(): void {
    for (let i = 0; i < unguardedCount; i++) {
      const r = unguarded[i] as ReceivedFd
      const origin = unguardedOrigin[i]
      unguarded[i] = undefined
      unguardedOrigin[i] = null
      if (r.#fd >= 0 && r.#cell === null) r.#register(origin === null ? 'an unknown socket' : origin.describe(), unguardedMessage[i])
    }
    unguardedCount = 0
  }

  /**
   * Close every descriptor in `fds` with one call into the addon, for a
   * message that carries many (`ReceivedFd.closeAll(message.fds)`): the
   * same as calling `close()` on each, at a fraction of the cost. Those
   * already closed or released are skipped. All are closed even if one
   * fails; then the first failure is thrown.
   */
  static closeAll(fds: Iterable<ReceivedFd>): void {
    const list = receivedList(fds, 'closeAll')
    let first: unknown = null
    const flush = (n: number) => {
      try {
        closeBatch(n)
      } catch (e) {
        first ??= e
      }
    }
    let n = 0
    for (const r of list) {
      const fd = r.#take()
      if (fd < 0) continue
      FD_BATCH[n++] = fd
      if (n === FD_BATCH_SIZE) {
        flush(n)
        n = 0
      }
    }
    if (n > 0) flush(n)
    if (first !== null) throw fromNative(first)
  }

  /**
   * fstat of every descriptor in `fds`, in order, with one call into the
   * addon and one syscall each: `stat()` without `cloexec` (a flag of the
   * descriptor, not of the file, that would cost a second syscall; every
   * descriptor fdpass receives is close-on-exec). For checking what a
   * message with many descriptors carries. Throws ERR_FDPASS_FD_CLOSED,
   * before it looks at any, if one of them was closed or released.
   */
  static statAll(fds: Iterable<ReceivedFd>): FileStat[] {
    const list = receivedList(fds, 'statAll')
    for (const r of list) if (r.#fd < 0) throw closedError()
    const out: FileStat[] = []
    for (let start = 0; start < list.length; start += FD_BATCH_SIZE) {
      const n = Math.min(FD_BATCH_SIZE, list.length - start)
      for (let i = 0; i < n; i++) FD_BATCH[i] = list[start + i].#fd
      callNative(() => fileStatBatch(n, out))
    }
    return out
  }

  /** The descriptor number. Throws ERR_FDPASS_FD_CLOSED after close() or release(). */
  get fd(): number {
    const fd = this.#fd
    if (fd < 0) throw closedError()
    return fd
  }

  /** True once closed or released. */
  get closed(): boolean {
    return this.#fd < 0
  }

  /** Close the descriptor. Idempotent. Closes natively, so it works on every runtime. */
  close(): void {
    const fd = this.#take()
    if (fd < 0) return
    try {
      hot.closeFd(fd)
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** Give up ownership and return the number; the caller must close it. */
  release(): number {
    const fd = this.fd
    this.#take()
    return fd
  }

  /**
   * fstat of the descriptor and its close-on-exec flag: kind, device and
   * inode (to compare identity), mode, size, cloexec. Two syscalls; to
   * check what arrived, `fileStat()` is one.
   */
  stat(): FdStat {
    return this.#query(fdStat)
  }

  /**
   * fstat of the descriptor: what it refers to (kind, device and inode,
   * mode, size), with one syscall. It is `stat()` without `cloexec`, a flag
   * of the descriptor rather than of the file, which costs a second syscall.
   */
  fileStat(): FileStat {
    return this.#query(fileStat)
  }

  /** `query` of the descriptor, a failure as an FdpassError. */
  #query<T>(query: (fd: number) => T): T {
    const fd = this.fd
    try {
      return query(fd)
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** What the descriptor refers to: 'file', 'pipe', 'socket', 'directory', ... (one fstat) */
  kind(): FdKind {
    return this.fileStat().kind
  }

  [Symbol.dispose](): void {
    this.close()
  }

  /**
   * A `net.Server` listening on this descriptor, which must be a listening
   * TCP or Unix socket. Takes ownership. For `http`, `https`, `express` and
   * the like, `server.listen({ fd: received.release() })` does the same.
   */
  toNetServer(options?: net.ServerOpts, connectionListener?: (socket: net.Socket) => void): net.Server {
    this.#expectKind('socket', 'toNetServer')
    const server = net.createServer(options ?? {}, connectionListener)
    server.listen({ fd: this.release() })
    return server
  }

  /** A `net.Socket` over this connected TCP or Unix socket. Takes ownership. */
  toNetSocket(options?: Omit<net.SocketConstructorOpts, 'fd'>): net.Socket {
    this.#expectKind('socket', 'toNetSocket')
    if (runtimeLimits.noNetSocketFromFd) {
      throw unsupported(
        'toNetSocket',
        'its net.Socket cannot wrap an existing descriptor; for a Unix socket, adopt(received.release(), { raw: true }) gives an FdSocket',
      )
    }
    return new net.Socket({ readable: true, writable: true, ...options, fd: this.release() })
  }

  /** A `dgram.Socket` over this UDP socket (already bound). Takes ownership. */
  toDgramSocket(type: 'udp4' | 'udp6', options?: Omit<dgram.SocketOptions, 'type'>): dgram.Socket {
    this.#expectKind('socket', 'toDgramSocket')
    if (runtimeLimits.noDgramFromFd) {
      throw unsupported('toDgramSocket', 'its dgram module cannot bind to an existing descriptor (ERR_INVALID_FD_TYPE)')
    }
    const socket = dgram.createSocket({ ...options, type })
    socket.bind({ fd: this.release() })
    return socket
  }

  /** A readable stream over this file or pipe. Takes ownership (closed when the stream ends). */
  createReadStream(options?: { start?: number; end?: number; highWaterMark?: number; autoClose?: boolean }): fs.ReadStream {
    return fs.createReadStream('', { ...options, ...streamFs('read'), fd: this.release() })
  }

  /** A writable stream over this file or pipe. Takes ownership. */
  createWriteStream(options?: { start?: number; highWaterMark?: number; autoClose?: boolean }): fs.WriteStream {
    return fs.createWriteStream('', { ...options, ...streamFs('write'), fd: this.release() })
  }

  #expectKind(kind: FdKind, method: string): void {
    const actual = this.kind()
    if (actual !== kind) {
      throw new FdpassError('ERR_FDPASS_INVALID_FD', `${method}() needs a ${kind}, but fd ${this.#fd} is a ${actual}`, { fd: this.#fd })
    }
  }

  #register(where: string, message: number): void {
    this.#cell = { fd: this.#fd, where, message }
    unclaimed.register(this, this.#cell)
  }

  #take(): number {
    const fd = this.#fd
    this.#fd = -1
    if (this.#cell !== null) this.#cell.fd = -1
    return fd
  }
}

function closedError(): FdpassError {
  return new FdpassError('ERR_FDPASS_FD_CLOSED', 'this ReceivedFd was closed or released')
}

/** The ReceivedFds of a batch call, all checked before any is touched. */
function receivedList(fds: Iterable<ReceivedFd>, method: string): readonly ReceivedFd[] {
  let list: readonly unknown[]
  if (Array.isArray(fds)) list = fds
  else if (fds !== null && typeof (fds as { [Symbol.iterator]?: unknown })?.[Symbol.iterator] === 'function') list = Array.from(fds)
  else throw invalidArgType('fds', 'an iterable of ReceivedFd', fds)
  for (let i = 0; i < list.length; i++) {
    if (!(list[i] instanceof ReceivedFd)) {
      throw invalidArgType(`fds[${i}]`, `a ReceivedFd (ReceivedFd.${method}() takes only descriptors a socket received)`, list[i])
    }
  }
  return list as readonly ReceivedFd[]
}

/** Close descriptor numbers that never got a ReceivedFd (error paths). */
export function closeRaw(fds: ArrayLike<number>, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    try {
      hot.closeFd(fds[i])
    } catch {
      // already closed: nothing leaks
    }
  }
}

function unsupported(method: string, why: string): FdpassError {
  return new FdpassError(
    'ERR_FDPASS_UNSUPPORTED',
    `${method}() does not work on ${runtimeName}: ${why}. The descriptor is still yours (use release() to take the number).`,
  )
}

/** On runtimes whose node:fs refuses foreign fds, streams do their I/O through the addon. */
function streamFs(direction: 'read' | 'write'): { fs?: never } {
  if (!runtimeLimits.fsRefusesForeignFds) return {}
  return { fs: (direction === 'read' ? nativeReadFs : nativeWriteFs) as never }
}
