// Errors shaped like Node's own: a stable `code`, and for system errors
// `errno` (negative, as libuv reports it), `syscall` and `address`.

/** Every error fdpass throws or rejects with is an FdpassError. */
export class FdpassError extends Error {
  /** `E*` for system errors, `ERR_*` for fdpass's own. Codes are permanent. */
  code: string
  /** Negative errno, for system errors. */
  errno?: number
  /** The failing syscall, for system errors. */
  syscall?: string
  /** The socket path involved, when there is one. */
  address?: string
  /** Extra facts some codes carry: `limit`, `count`, `fd`, `fdsLost`, ... */
  [key: string]: unknown

  constructor(code: string, message: string, extra?: Record<string, unknown>) {
    super(message)
    this.code = code
    if (extra) Object.assign(this, extra)
  }

  override get name(): string {
    return 'FdpassError'
  }
}

/** Give an error thrown by the binding the FdpassError prototype. */
export function fromNative(e: unknown): Error {
  if (e instanceof Error && !(e instanceof FdpassError) && typeof (e as { code?: unknown }).code === 'string') {
    Object.setPrototypeOf(e, FdpassError.prototype)
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
  return new FdpassError(
    'ERR_INVALID_ARG_TYPE',
    `The "${name}" argument must be ${expected}. Received ${describe(actual)}`,
  )
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
