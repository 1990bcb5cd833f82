// Turning what users pass as "an fd" into a descriptor number.
import * as dgram from 'node:dgram'
import type { FileHandle } from 'node:fs/promises'
import * as net from 'node:net'
import { FdpassError, invalidArgType, outOfRange } from './errors'
import { binding, platform, runtimeName } from './native'
import { ReceivedFd } from './received-fd'

/**
 * Anything that owns one descriptor: a number, a `ReceivedFd`, an
 * `FdSocket`/`FdServer`, a `net.Server` (listening), a `net.Socket`, a
 * `dgram.Socket` (bound), a `fs.promises.FileHandle`, or `{ fd: number }`.
 * Sending does not take the caller's descriptor: the kernel installs a new
 * one in the receiver, and the caller may close its own once `send` resolves.
 */
export type FdLike = number | net.Server | net.Socket | dgram.Socket | FileHandle | { readonly fd: number }

const EMPTY = new Int32Array(0)

interface WithHandle {
  _handle?: { fd?: number } | null
}

/**
 * The descriptor of a Node net or dgram object, read from Node's internals
 * (no public API gives it): the number, -1 for a handle without an open
 * descriptor, undefined where no handle is found. noDescriptor() tells a
 * closed object from one whose internals moved.
 */
function handleFd(obj: object): number | undefined {
  if (obj instanceof dgram.Socket) {
    // Its handle is in an internal state object; its `_handle` is a
    // deprecated getter (DEP0112) that warns, so it is never read.
    const stateKey = Object.getOwnPropertySymbols(obj).find((s) => s.description === 'state symbol')
    const handle = stateKey && (obj as unknown as Record<symbol, { handle?: { fd?: unknown } | null } | undefined>)[stateKey]?.handle
    return handle && typeof handle.fd === 'number' ? handle.fd : undefined
  }
  // net.Server and net.Socket (and their subclasses) keep their libuv handle in `_handle`.
  const h = (obj as WithHandle)._handle
  return h && typeof h.fd === 'number' ? h.fd : undefined
}

/**
 * What Node's public state says `obj` is when it must own a descriptor
 * (a listening server, a connected socket, a bound datagram socket), or
 * null. These getters follow Node's internals wherever they move, so they
 * tell "closed" from "fdpass looked in the wrong place".
 */
function openNodeObject(obj: object): string | null {
  if (obj instanceof net.Server) return obj.listening ? 'a listening net.Server' : null
  if (obj instanceof net.Socket) return !obj.destroyed && !obj.pending ? 'a connected net.Socket' : null
  if (obj instanceof dgram.Socket) {
    try {
      obj.address() // throws unless bound: EBADF before bind, ERR_SOCKET_DGRAM_NOT_RUNNING once closed
      return 'a bound dgram.Socket'
    } catch {
      return null
    }
  }
  return null
}

function runtimeLabel(): string {
  return runtimeName === 'bun' ? `Bun ${process.versions.bun} (process.version ${process.version})` : `Node ${process.version}`
}

/**
 * The error for a net/dgram object in which fdpass found no descriptor:
 * `handleHasNone` when it found the handle and the handle says it has
 * none (-1), rather than finding no handle.
 */
function noDescriptor(obj: object, name: string, handleHasNone: boolean): FdpassError {
  if (runtimeName === 'deno') {
    return new FdpassError(
      'ERR_FDPASS_UNSUPPORTED',
      `${name}: Deno's net and dgram objects have no file descriptor to send (Deno keeps its own resource ids); send a FileHandle, a ReceivedFd, an FdSocket/FdServer or a descriptor number instead`,
    )
  }
  const open = openNodeObject(obj)
  if (open && handleHasNone) {
    return new FdpassError(
      'ERR_FDPASS_INVALID_FD',
      `${name} has no open descriptor: it is ${open} whose handle has none (a socket over a JavaScript stream, such as TLS over a Duplex); send the socket underneath it`,
    )
  }
  if (open) {
    const where = obj instanceof dgram.Socket ? "the handle in its 'state symbol' property" : 'its `_handle`'
    return new FdpassError(
      'ERR_FDPASS_UNSUPPORTED',
      `${name} is ${open}, but fdpass found no descriptor in ${where}: ${runtimeLabel()} keeps it somewhere fdpass does not know. ` +
        'Send a FileHandle, an FdSocket/FdServer (fdpass.listen/connect/bind) or a descriptor number instead, ' +
        `and report this runtime version at https://github.com/fdpass/fdpass/issues`,
    )
  }
  return new FdpassError('ERR_FDPASS_INVALID_FD', `${name} has no open descriptor: it is closed, or not listening, connected or bound yet`)
}

export function fdOf(x: unknown, name: string): number {
  if (typeof x === 'number') {
    if (!Number.isInteger(x)) throw invalidArgType(name, 'an integer file descriptor', x)
    if (x < 0 || x > 0x7fffffff) throw outOfRange(name, '>= 0 and <= 2147483647', x)
    return x
  }
  if (x !== null && typeof x === 'object') {
    const fromHandle = handleFd(x)
    if (fromHandle !== undefined) {
      if (fromHandle < 0) throw noDescriptor(x, name, true)
      return fromHandle
    }
    const fd = (x as { fd?: unknown }).fd
    if (typeof fd === 'number') {
      if (fd < 0) throw new FdpassError('ERR_FDPASS_INVALID_FD', `${name} has no open descriptor (it was closed)`)
      return fdOf(fd, name)
    }
    if (fd === undefined && ('listening' in x || 'remoteAddress' in x || 'address' in x)) throw noDescriptor(x, name, false)
  }
  throw invalidArgType(name, 'a file descriptor number or an object that owns one (net.Server, net.Socket, dgram.Socket, FileHandle, ReceivedFd)', x)
}

/** Validate and convert the fds argument of sendTo(): an exact-length array. */
export function fdArray(fds: unknown): Int32Array {
  const nums = fdNumbers(fds)
  return nums === SCRATCH_FDS ? nums.subarray(0, (fds as unknown[]).length) : nums
}

/**
 * The fds argument validated and converted: into the shared array (its
 * first `fds.length` entries), or an exact-length one. A small Int32Array
 * lives on V8's heap, and handing it to the addon makes V8 move it
 * off-heap (a malloc per send, seen in profiles): one off-heap array is
 * reused instead; the addon copies the numbers before it returns. A getter
 * on an fd-like object could send from inside this loop: then (busy) a
 * fresh array.
 */
function fdNumbers(fds: unknown): Int32Array {
  if (fds === undefined || fds === null) return EMPTY
  if (!Array.isArray(fds)) throw invalidArgType('fds', 'an array', fds)
  if (fds.length === 0) return EMPTY
  if (fds.length > platform.maxFdsPerMessage) {
    throw new FdpassError(
      'ERR_FDPASS_TOO_MANY_FDS',
      `cannot send ${fds.length} file descriptors in one message: the limit is ${platform.maxFdsPerMessage} (SCM_MAX_FD); split them across messages`,
      { count: fds.length, limit: platform.maxFdsPerMessage },
    )
  }
  if (scratchBusy) {
    const out = new Int32Array(fds.length)
    for (let i = 0; i < fds.length; i++) out[i] = fdAt(fds[i], i)
    return out
  }
  scratchBusy = true
  try {
    for (let i = 0; i < fds.length; i++) SCRATCH_FDS[i] = fdAt(fds[i], i)
    return SCRATCH_FDS
  } finally {
    scratchBusy = false
  }
}

/**
 * fdOf() for element `i` of a send's fds, with the two kinds sent most
 * (numbers, and received descriptors sent on) first: the general path
 * checks the object's class and looks in Node's internals, and its
 * argument name is a string built for each element.
 */
function fdAt(x: unknown, i: number): number {
  if (typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0x7fffffff) return x
  if (x instanceof ReceivedFd) return x.fd
  return fdOf(x, `fds[${i}]`)
}

const SCRATCH_FDS = new Int32Array(new ArrayBuffer(4 * 512))
let scratchBusy = false

/** Validate and convert the data argument of send(). */
export function dataBytes(data: unknown): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data)
  if (data instanceof Uint8Array) return data
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  throw invalidArgType('data', 'a string, Buffer or Uint8Array', data)
}

/**
 * One send's arguments as the addon takes them: the first `byteLength` of
 * `bytes`, the first `fdCount` of `fds`; null for the shared array lent to
 * the addon (it then skips looking the array up: 40 ns of a send).
 */
export interface SendArgs {
  bytes: Uint8Array | null
  byteLength: number
  fds: Int32Array | null
  fdCount: number
}

// A string of up to this many UTF-16 units is encoded into one shared
// buffer rather than a new Buffer per send (at most 3 bytes each).
const SHORT_STRING = 4096
const STRING_SCRATCH = Buffer.from(new ArrayBuffer(3 * SHORT_STRING)) // off-heap: its memory never moves
const ARGS: SendArgs = { bytes: null, byteLength: 0, fds: EMPTY, fdCount: 0 }
binding.lendSendScratch(STRING_SCRATCH, SCRATCH_FDS)

/** A few characters (the usual tag beside descriptors) copied by hand when ASCII: a call into Buffer.write costs more. */
function shortAscii(data: string): number {
  for (let i = 0; i < data.length; i++) {
    const c = data.charCodeAt(i)
    if (c >= 0x80) return STRING_SCRATCH.write(data, 0, 'utf8')
    STRING_SCRATCH[i] = c
  }
  return data.length
}

/**
 * Validate and convert send()'s arguments, for the addon's per-message
 * calls (ts/native.ts `hot`), without a new object per send: short
 * strings are encoded into a shared buffer and the descriptors written
 * into a shared array, both read by the addon before it returns (it copies
 * what it must keep). The descriptors come first: an fd-like object's
 * getter may send from inside fdNumbers, and must find the shared buffer
 * free; nothing after that runs user code. Use the result at once.
 */
export function sendArgs(data: unknown, fds: unknown): SendArgs {
  const nums = fdNumbers(fds)
  if (typeof data === 'string' && data.length <= SHORT_STRING) {
    ARGS.bytes = null
    ARGS.byteLength = data.length <= 32 ? shortAscii(data) : STRING_SCRATCH.write(data, 0, 'utf8')
  } else {
    const bytes = dataBytes(data)
    ARGS.bytes = bytes
    ARGS.byteLength = bytes.length
  }
  ARGS.fds = nums === SCRATCH_FDS ? null : nums
  ARGS.fdCount = nums === SCRATCH_FDS ? (fds as unknown[]).length : nums.length
  return ARGS
}
