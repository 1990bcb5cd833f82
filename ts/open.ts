// The constructors of sockets and servers (listen, connect, bind,
// socketpair, adopt, adoptServer) and the checks of their options.
import { constants as osConstants } from 'node:os'
import { type Address, toNativeAddress } from './address'
import { FdpassError, callNative, fromNative, invalidArgType, invalidArgValue, outOfRange, quotedChoices } from './errors'
import { fdOf } from './fd-like'
import { FD_KINDS, SOCKET_TYPES, binding, platform, type FdKind } from './native'
import { FdServer, type PeerFilter, wrapServer } from './server'
import { FdSocket, type SocketSettings, type SocketType } from './socket'

export interface SocketOptions {
  /** 'stream' (the default), 'seqpacket' (Linux only) or 'dgram'. */
  type?: SocketType
  /**
   * Stream sockets only: no fdpass framing. Each received Message is then
   * whatever one recvmsg returned (bytes plus the descriptors that came
   * with them), for peers that do not speak the framing. @default false
   */
  raw?: boolean
  /**
   * The largest message accepted. Framed streams refuse larger frames
   * (ERR_FDPASS_MESSAGE_TOO_LARGE); seqpacket and dgram sockets read into a
   * buffer of this size and report longer messages as truncated.
   * @default 64 MiB for framed streams, 256 KiB otherwise
   */
  maxMessageSize?: number
  /** Received messages buffered before reading pauses. @default 1024 */
  highWaterMark?: number
  /**
   * Accept only descriptors of these kinds (from fstat), e.g. `['file']`.
   * A message carrying another kind is rejected as an
   * ERR_FDPASS_FD_KIND_REJECTED error in the message stream, and all its
   * descriptors are closed. @default any kind
   */
  acceptFds?: readonly FdKind[]
}

export interface ListenOptions extends SocketOptions {
  /** @default 511 */
  backlog?: number
  /** Permission bits of the socket file. @default 0o600 */
  mode?: number
  /** Replace a socket file nobody listens on (a crashed server's). @default true */
  replaceStale?: boolean
  /**
   * Refuse to create the socket in a directory that another user could
   * change (not owned by you or root, or group/other-writable without the
   * sticky bit), where they could swap the socket file. @default true
   */
  checkDirectory?: boolean
  /**
   * Who may connect: allowed `uids` and/or `gids`, or a function of the
   * peer's credentials. Checked on accept, before any message or
   * descriptor is read from or sent to the peer; refused connections are
   * closed and reported by a 'refused' event. Abstract sockets have no
   * file permissions: this is how to protect them.
   */
  allow?: PeerFilter
}

export interface ConnectOptions extends SocketOptions {
  /**
   * Give up (ETIMEDOUT) after this many milliseconds while the server's
   * backlog is full, or, with `wait`, while no server listens yet. @default 10000
   */
  timeout?: number
  /**
   * Wait for a server that is not up yet: while the path does not exist
   * (ENOENT) or nobody listens on it (ECONNREFUSED), try again, less often
   * as time passes (at most every 100 ms), until `timeout`. For clients
   * that may start before their server. Not for 'dgram'. @default false
   */
  wait?: boolean
  /** dgram: bind this end to an address first, so the peer can reply. */
  bind?: Address
}

export interface BindOptions extends SocketOptions {
  /** Permission bits of the socket file. @default 0o600 */
  mode?: number
  /** See ListenOptions.checkDirectory. @default true */
  checkDirectory?: boolean
}

export interface AdoptOptions {
  /** Stream sockets only: no fdpass framing. @default false */
  raw?: boolean
  maxMessageSize?: number
  highWaterMark?: number
  acceptFds?: readonly FdKind[]
}

interface Resolved {
  type: SocketType
  framed: boolean
  maxMessage: number
  settings: SocketSettings
}

function resolve(options: unknown, fallbackType: SocketType = 'stream'): Resolved {
  if (options !== undefined && (options === null || typeof options !== 'object')) throw invalidArgType('options', 'an object', options)
  const o = (options ?? {}) as SocketOptions
  const type = o.type ?? fallbackType
  if (!SOCKET_TYPES.includes(type)) throw invalidArgValue('options.type', type, `must be ${quotedChoices(SOCKET_TYPES)}`)
  if (type === 'seqpacket' && !platform.supportsSeqpacket) {
    throw new FdpassError('ERR_FDPASS_UNSUPPORTED', `SOCK_SEQPACKET Unix sockets are not supported on ${process.platform}: use 'stream' or 'dgram'`)
  }
  const raw = o.raw ?? false
  if (typeof raw !== 'boolean') throw invalidArgType('options.raw', 'a boolean', raw)
  const framed = type === 'stream' && !raw
  const maxMessage = integer(o.maxMessageSize, 'options.maxMessageSize', framed ? 64 << 20 : 256 << 10, 1, 0x7fffffff)
  const highWaterMark = integer(o.highWaterMark, 'options.highWaterMark', 1024, 1, 1 << 30)
  const acceptFds = o.acceptFds
  if (acceptFds !== undefined && (!Array.isArray(acceptFds) || !acceptFds.every((k) => FD_KINDS.includes(k)))) {
    throw invalidArgValue('options.acceptFds', acceptFds, `must be an array of: ${FD_KINDS.join(', ')}`)
  }
  return { type, framed, maxMessage, settings: { highWaterMark, raw: !framed, acceptFds } }
}

function integer(v: unknown, name: string, fallback: number, min: number, max: number): number {
  if (v === undefined) return fallback
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalidArgType(name, 'an integer', v)
  if (v < min || v > max) throw outOfRange(name, `>= ${min} and <= ${max}`, v)
  return v
}

function bool(v: unknown, name: string, fallback: boolean): boolean {
  if (v === undefined) return fallback
  if (typeof v !== 'boolean') throw invalidArgType(name, 'a boolean', v)
  return v
}

function peerFilter(v: unknown): PeerFilter | undefined {
  if (v === undefined || typeof v === 'function') return v as PeerFilter | undefined
  if (v !== null && typeof v === 'object') {
    const { uids, gids } = v as { uids?: unknown; gids?: unknown }
    for (const [list, name] of [
      [uids, 'options.allow.uids'],
      [gids, 'options.allow.gids'],
    ] as const) {
      if (list !== undefined && (!Array.isArray(list) || !list.every(Number.isInteger))) throw invalidArgType(name, 'an array of integers', list)
    }
    if (uids === undefined && gids === undefined) throw invalidArgValue('options.allow', v, 'needs uids, gids, or a function')
    return v as PeerFilter
  }
  throw invalidArgType('options.allow', '{ uids?, gids? } or a function', v)
}

function mode(v: unknown, name: string): number {
  return integer(v, name, 0o600, 0, 0o777)
}

function attempt<T>(f: () => T): Promise<T> {
  try {
    return Promise.resolve(f())
  } catch (e) {
    return Promise.reject(fromNative(e))
  }
}

/**
 * Listen on a Unix socket path or abstract name. The socket file gets mode
 * 0600; a stale file left by a dead server is replaced; a live one is
 * EADDRINUSE; a path that is not a socket is never removed.
 */
export function listen(address: Address, options?: ListenOptions): Promise<FdServer> {
  const native = toNativeAddress(address)
  const r = resolve(options)
  if (r.type === 'dgram') {
    throw invalidArgValue('options.type', 'dgram', 'cannot listen: datagram sockets have no connections (use bind())')
  }
  const o = (options ?? {}) as ListenOptions
  const backlog = integer(o.backlog, 'options.backlog', 511, 1, 0x7fffffff)
  const bindOptions = {
    mode: mode(o.mode, 'options.mode'),
    replaceStale: bool(o.replaceStale, 'options.replaceStale', true),
    checkDirectory: bool(o.checkDirectory, 'options.checkDirectory', true),
  }
  const allow = peerFilter(o.allow)
  return attempt(() => {
    const server = binding.listen(r.type, native, backlog, bindOptions, r.framed, r.maxMessage)
    return wrapServer(server, r.settings, true, allow)
  })
}

/**
 * Connect to a listening socket. For 'dgram', this makes a socket whose
 * send() goes to `address` (bind it with `options.bind` to get replies).
 */
export function connect(address: Address, options?: ConnectOptions): Promise<FdSocket> {
  const target = toNativeAddress(address)
  const r = resolve(options)
  const o = (options ?? {}) as ConnectOptions
  const timeout = integer(o.timeout, 'options.timeout', 10_000, 0, 0x7fffffff)
  const wait = bool(o.wait, 'options.wait', false)
  if (r.type === 'dgram') {
    if (wait) throw invalidArgValue('options.wait', wait, "is only for 'stream' and 'seqpacket' sockets: a datagram socket has no server to wait for")
    const local = o.bind === undefined ? null : toNativeAddress(o.bind, 'options.bind')
    return attempt(() => new FdSocket(binding.bindDatagram(local, target, {}, r.maxMessage), r.settings))
  }
  if (o.bind !== undefined) throw invalidArgValue('options.bind', o.bind, 'is only for dgram sockets')
  const deadline = Date.now() + timeout
  return new Promise((resolvePromise, reject) => {
    const tryOnce = (delay: number) => {
      try {
        resolvePromise(new FdSocket(binding.connect(r.type, target, r.framed, r.maxMessage), r.settings))
      } catch (e) {
        const err = fromNative(e) as FdpassError
        // A full backlog: Linux answers EAGAIN to a non-blocking Unix connect.
        const retry = err.code === 'EAGAIN' || (wait && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED'))
        if (!retry) reject(err)
        else if (Date.now() < deadline) setTimeout(tryOnce, delay, Math.min(delay * 2, 100))
        else reject(connectTimedOut(err, timeout))
      }
    }
    tryOnce(1)
  })
}

/** ETIMEDOUT for a connect() that kept getting `last` for `timeout` ms. */
function connectTimedOut(last: FdpassError, timeout: number): FdpassError {
  const address = last.address ?? ''
  const why =
    last.code === 'EAGAIN'
      ? `the server's backlog stayed full for ${timeout} ms`
      : `no server listened there within ${timeout} ms (last attempt: ${last.code}); start the server, or raise options.timeout`
  return new FdpassError('ETIMEDOUT', `connect ETIMEDOUT ${address}: ${why}`, {
    errno: -osConstants.errno.ETIMEDOUT, // 110 on Linux, 60 on macOS
    syscall: 'connect',
    address: last.address,
    cause: last,
  })
}

/**
 * A datagram socket bound to `address` (or unbound when `address` is null),
 * which receives from anyone and answers with sendTo().
 */
export function bind(address: Address | null, options?: BindOptions): Promise<FdSocket> {
  const local = address === null ? null : toNativeAddress(address)
  const r = resolve(options, 'dgram')
  if (r.type !== 'dgram') throw invalidArgValue('options.type', r.type, "must be 'dgram' for bind(); use listen() for connections")
  const o = (options ?? {}) as BindOptions
  const bindOptions = { mode: mode(o.mode, 'options.mode'), checkDirectory: bool(o.checkDirectory, 'options.checkDirectory', true) }
  return attempt(() => new FdSocket(binding.bindDatagram(local, null, bindOptions, r.maxMessage), r.settings))
}

/** A connected pair of sockets, for a parent and the child it spawns, or for tests. */
export function socketpair(options?: SocketOptions): [FdSocket, FdSocket] {
  const r = resolve(options)
  const [a, b] = callNative(() => binding.socketpair(r.type, r.framed, r.maxMessage))
  return [new FdSocket(a, r.settings), new FdSocket(b, r.settings)]
}

/**
 * Take ownership of an inherited, connected Unix socket descriptor: a
 * child's stdio slot (e.g. fd 3 from `spawn(..., { stdio: [..., sock.fd] })`),
 * or a received one. It becomes non-blocking and close-on-exec.
 */
export function adopt(fd: number, options?: AdoptOptions): FdSocket {
  const n = fdOf(fd, 'fd')
  const info = callNative(() => binding.inspectSocket(n))
  if (info.family !== 'unix') throw invalidArgValue('fd', fd, `is an ${info.family} socket; descriptors travel only over Unix sockets`)
  if (info.listening) throw invalidArgValue('fd', fd, 'is a listening socket: use adoptServer()')
  const r = resolve({ ...options, type: info.type })
  const native = callNative(() => binding.adopt(n, r.framed, r.maxMessage)) as ReturnType<typeof binding.connect>
  return new FdSocket(native, r.settings)
}

/**
 * Take ownership of an inherited listening Unix socket (LISTEN_FDS from
 * systemd, or one handed over by a previous generation). Closing the
 * server does not remove its socket file: its creator owns that.
 */
export function adoptServer(fd: number, options?: AdoptOptions): FdServer {
  const n = fdOf(fd, 'fd')
  const info = callNative(() => binding.inspectSocket(n))
  if (info.family !== 'unix') throw invalidArgValue('fd', fd, `is an ${info.family} socket: serve it with net.Server.listen({ fd })`)
  if (!info.listening) throw invalidArgValue('fd', fd, 'is not a listening socket: use adopt()')
  const r = resolve({ ...options, type: info.type })
  const native = callNative(() => binding.adopt(n, r.framed, r.maxMessage)) as ReturnType<typeof binding.listen>
  return wrapServer(native, r.settings, false, undefined)
}
