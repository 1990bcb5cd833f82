// Errors shaped like Node's own: a stable `code`, and for system errors
// `errno` (negative, as libuv reports it), `syscall` and `address`.
import type { FdKind } from './fd-kind'

/**
 * The codes of system errors (those with `errno` and `syscall`): Node's
 * errno names, as crates/fdpass-core error.rs ERRNO_NAMES lists them, and
 * 'UNKNOWN' for an errno outside that list.
 */
export type SystemErrorCode =
  | 'E2BIG'
  | 'EACCES'
  | 'EADDRINUSE'
  | 'EADDRNOTAVAIL'
  | 'EAFNOSUPPORT'
  | 'EAGAIN'
  | 'EALREADY'
  | 'EBADF'
  | 'EBUSY'
  | 'ECANCELED'
  | 'ECONNABORTED'
  | 'ECONNREFUSED'
  | 'ECONNRESET'
  | 'EDESTADDRREQ'
  | 'EDQUOT'
  | 'EEXIST'
  | 'EFAULT'
  | 'EFBIG'
  | 'EHOSTDOWN'
  | 'EHOSTUNREACH'
  | 'EILSEQ'
  | 'EINTR'
  | 'EINVAL'
  | 'EIO'
  | 'EISCONN'
  | 'EISDIR'
  | 'ELOOP'
  | 'EMFILE'
  | 'EMLINK'
  | 'EMSGSIZE'
  | 'ENAMETOOLONG'
  | 'ENETDOWN'
  | 'ENETUNREACH'
  | 'ENFILE'
  | 'ENOBUFS'
  | 'ENODATA'
  | 'ENODEV'
  | 'ENOENT'
  | 'ENOMEM'
  | 'ENOPROTOOPT'
  | 'ENOSPC'
  | 'ENOSYS'
  | 'ENOTCONN'
  | 'ENOTDIR'
  | 'ENOTEMPTY'
  | 'ENOTSOCK'
  | 'ENOTSUP'
  | 'ENOTTY'
  | 'ENXIO'
  | 'EOPNOTSUPP'
  | 'EOVERFLOW'
  | 'EPERM'
  | 'EPIPE'
  | 'EPROTO'
  | 'EPROTONOSUPPORT'
  | 'EPROTOTYPE'
  | 'ERANGE'
  | 'EROFS'
  | 'ESHUTDOWN'
  | 'ESOCKTNOSUPPORT'
  | 'ESPIPE'
  | 'ESRCH'
  | 'ESTALE'
  | 'ETIMEDOUT'
  | 'ETOOMANYREFS'
  | 'ETXTBSY'
  | 'EXDEV'
  | 'UNKNOWN'

/** What getaddrinfo gives when a handoff listener's host does not resolve (Node's dns names). */
export type ResolverErrorCode = 'ENOTFOUND' | 'EAI_AGAIN' | 'EAI_FAIL' | 'EAI_NODATA' | 'EAI_MEMORY'

/**
 * fdpass's own codes, each with the extra fields its errors carry
 * (docs/api.md, "Errors"). Codes are permanent.
 */
export interface FdpassErrorFields {
  /** More descriptors in one message than the kernel takes. */
  ERR_FDPASS_TOO_MANY_FDS: { count: number; limit: number }
  /** The kernel dropped descriptors, or a message was longer than maxMessageSize. */
  ERR_FDPASS_TRUNCATED: {
    /** How many descriptors the kernel dropped; null when it does not say. */
    fdsLost: number | null
    /** How many arrived (all closed). */
    fdsReceived: number
    dataTruncated: boolean
    /** The bytes that arrived. */
    data: Buffer
  }
  ERR_FDPASS_ADDRESS_TOO_LONG: { length: number; limit: number }
  ERR_FDPASS_NOT_A_SOCKET: { address: string }
  ERR_FDPASS_INVALID_FD: { fd?: number }
  ERR_FDPASS_SOCKET_CLOSED: {}
  ERR_FDPASS_SENDS_QUEUED: {}
  ERR_FDPASS_RECEIVE_PENDING: {}
  ERR_FDPASS_FD_CLOSED: {}
  /** A framed-stream peer broke the framing; the connection is closed. */
  ERR_FDPASS_PROTOCOL: {}
  ERR_FDPASS_MESSAGE_TOO_LARGE: { size: number; limit: number }
  ERR_FDPASS_UNSUPPORTED: {}
  ERR_FDPASS_INSECURE_DIRECTORY: {}
  ERR_FDPASS_FD_KIND_REJECTED: { kinds: FdKind[]; fdsReceived: number }
  ERR_FDPASS_UNSUPPORTED_PLATFORM: {}
  ERR_FDPASS_BINARY_MISSING: {}
  ERR_FDPASS_HANDOFF_BUSY: {}
  ERR_FDPASS_HANDOFF_REFUSED: {}
  ERR_FDPASS_HANDOFF_PEER_UID: {}
  ERR_FDPASS_HANDOFF_TIMEOUT: {}
  ERR_FDPASS_HANDOFF_PEER_GONE: {}
  ERR_FDPASS_HANDOFF_PROTOCOL: {}
  ERR_FDPASS_HANDOFF_RELEASED: {}
  ERR_INVALID_ARG_TYPE: {}
  ERR_INVALID_ARG_VALUE: {}
  ERR_OUT_OF_RANGE: {}
  /** An AbortSignal aborted the operation (`name` is 'AbortError', `cause` its reason). */
  ABORT_ERR: {}
}

/** Every code an FdpassError can have: an errno name, or one of fdpass's own. */
export type FdpassErrorCode = SystemErrorCode | ResolverErrorCode | keyof FdpassErrorFields

/** What every FdpassError has, whatever its code. */
export interface FdpassErrorBase extends Error {
  /** Negative errno, for system errors. */
  errno?: number
  /** The failing syscall, for system errors. */
  syscall?: string
  /** The socket path involved, when there is one. */
  address?: string
}

/** A system error, shaped like Node's: the errno name, negative errno, the syscall. */
export interface FdpassSystemError extends FdpassErrorBase {
  code: SystemErrorCode | ResolverErrorCode
  errno: number
  syscall: string
  /** getaddrinfo errors: the name that did not resolve. */
  hostname?: string
}

/** The FdpassError with code `C`, and the fields of that code. */
export type FdpassErrorOf<C extends FdpassErrorCode> = C extends keyof FdpassErrorFields
  ? FdpassErrorBase & { code: C } & FdpassErrorFields[C]
  : FdpassSystemError & { code: C }

/**
 * Every error fdpass throws or rejects with is an FdpassError: a union
 * over `code`, so that checking the code gives the fields it carries:
 * `if (e instanceof FdpassError && e.code === 'ERR_FDPASS_TRUNCATED') e.fdsLost`.
 */
export type FdpassError = FdpassSystemError | { [C in keyof FdpassErrorFields]: FdpassErrorOf<C> }[keyof FdpassErrorFields]

export interface FdpassErrorConstructor {
  new <C extends FdpassErrorCode>(
    code: C,
    message: string,
    extra?: (C extends keyof FdpassErrorFields ? FdpassErrorFields[C] : { errno: number; syscall: string }) & {
      address?: string
      /** The name a getaddrinfo error is about, as Node's dns errors carry it. */
      hostname?: string
      cause?: unknown
    },
  ): FdpassErrorOf<C>
  readonly prototype: FdpassError
}

class FdpassErrorClass extends Error {
  /** `E*` for system errors, `ERR_*` for fdpass's own. Codes are permanent. */
  code: FdpassErrorCode

  constructor(code: FdpassErrorCode, message: string, extra?: object) {
    super(message)
    this.code = code
    if (extra) Object.assign(this, extra)
  }

  override get name(): string {
    return 'FdpassError'
  }
}

export const FdpassError = FdpassErrorClass as unknown as FdpassErrorConstructor

/** Give an error thrown by the binding the FdpassError prototype. */
export function fromNative(e: unknown): Error {
  if (e instanceof Error && !(e instanceof FdpassErrorClass) && typeof (e as { code?: unknown }).code === 'string') {
    Object.setPrototypeOf(e, FdpassErrorClass.prototype)
  }
  return e as Error
}

/** Run a binding call, turning what it throws into an FdpassError. */
export function callNative<T>(f: () => T): T {
  try {
    return f()
  } catch (e) {
    throw fromNative(e)
  }
}

export function socketClosed(operation: string): FdpassError {
  return new FdpassError('ERR_FDPASS_SOCKET_CLOSED', `${operation}: the socket is closed`)
}

export function invalidArgType(name: string, expected: string, actual: unknown): FdpassError {
  return new FdpassError('ERR_INVALID_ARG_TYPE', `The "${name}" argument must be ${expected}. Received ${describe(actual)}`)
}

/** `'a', 'b' or 'c'`: the values a message offers. */
export function quotedChoices(values: readonly string[]): string {
  const quoted = values.map((v) => `'${v}'`)
  return quoted.length > 1 ? `${quoted.slice(0, -1).join(', ')} or ${quoted[quoted.length - 1]}` : quoted.join('')
}

export function invalidArgValue(name: string, value: unknown, reason: string): FdpassError {
  return new FdpassError('ERR_INVALID_ARG_VALUE', `The "${name}" argument ${reason}. Received ${describe(value)}`)
}

export function outOfRange(name: string, range: string, value: unknown): FdpassError {
  return new FdpassError('ERR_OUT_OF_RANGE', `The value of "${name}" is out of range. It must be ${range}. Received ${describe(value)}`)
}

export function abortError(reason: unknown): FdpassError {
  const e = new FdpassError('ABORT_ERR', 'The operation was aborted', { cause: reason })
  Object.defineProperty(e, 'name', { value: 'AbortError' })
  return e
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (v === undefined) return 'undefined'
  if (typeof v === 'function') return `function ${v.name || '<anonymous>'}`
  if (typeof v === 'object') return v.constructor?.name ? `an instance of ${v.constructor.name}` : 'an object'
  const s = typeof v === 'string' ? `'${v.length > 28 ? `${v.slice(0, 25)}...` : v}'` : String(v)
  return `type ${typeof v} (${s})`
}
