// The private interface to the Rust binding, and the one place where the
// readiness mechanism is chosen for this runtime (see README "Design").
import { FdpassError } from './errors'
import { FD_KINDS, type FdKind } from './fd-kind'

export { FD_KINDS, type FdKind } from './fd-kind'
export type { NativeAddress, NativeSocket, NativeServer } from '../binding.js'

type Binding = typeof import('../binding.js')

const SUPPORTED = ['linux-x64-gnu', 'linux-x64-musl', 'linux-arm64-gnu', 'linux-arm64-musl', 'darwin-x64', 'darwin-arm64']

function libc(): 'gnu' | 'musl' {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined
  return report?.header?.glibcVersionRuntime ? 'gnu' : 'musl'
}

/** Load the addon through napi-rs's loader, with errors that say what to do. */
function load(): Binding {
  if (process.platform === 'win32') {
    throw new FdpassError(
      'ERR_FDPASS_UNSUPPORTED_PLATFORM',
      'fdpass passes file descriptors with SCM_RIGHTS over Unix domain sockets, which Windows does not have (its handles are duplicated with DuplicateHandle instead). fdpass supports Linux and macOS.',
    )
  }
  const base = `${process.platform}-${process.arch}`
  if (!SUPPORTED.some((t) => t.startsWith(base))) {
    throw new FdpassError('ERR_FDPASS_UNSUPPORTED_PLATFORM', `fdpass has no binary for ${base}; supported: ${SUPPORTED.join(', ')}`)
  }
  try {
    return require('../binding.js') as Binding
  } catch (e) {
    // Only now is the libc worth its cost (a process report).
    const target = process.platform === 'linux' ? `${base}-${libc()}` : base
    const pkg = `fdpass-${target}`
    throw new FdpassError(
      'ERR_FDPASS_BINARY_MISSING',
      `fdpass could not load its native binary for ${target}. It comes in the optional dependency ${pkg}: ` +
        `install it (npm install ${pkg}). npm skips optional dependencies when package-lock.json was written on another platform ` +
        `(npm/cli#4828): remove node_modules and package-lock.json and install again. Inside Electron, unpack *.node files from ` +
        `the asar archive (asarUnpack). Cause: ${(e as Error).message}`,
      { cause: e },
    )
  }
}

export const binding: Binding = load()

/**
 * The per-message and per-descriptor calls, as plain Node-API callbacks
 * (crates/fdpass-napi/src/hot.rs: napi-rs's glue cost 4–10 times their
 * own price). napi-rs does not describe them in binding.d.ts, so here.
 * A socket is the handle its NativeSocket's hotHandle() made.
 */
export interface HotBinding {
  /** The first `byteLength` bytes of `data` and the first `fdCount` of `fds`; null: the lent send scratch (ts/fd-like.ts). */
  socketSend(socket: object, data: Uint8Array | null, byteLength: number, fds: Int32Array | null, fdCount: number): boolean
  socketSendSync(socket: object, data: Uint8Array | null, byteLength: number, fds: Int32Array | null, fdCount: number): void
  /** -1: the time ran out; 0: delivered through the socket's callback; else the metadata length of the one message left in the lent buffers. */
  socketReceiveSync(socket: object, timeoutMs: number): number
  closeFd(fd: number): void
  closeFds(fds: Int32Array, count: number): void
  fdStatInto(fd: number, out: Float64Array): number
  fdStatMany(fds: Int32Array, count: number, out: Float64Array): void
}
export const hot = binding as unknown as HotBinding

/** Event codes of the native callbacks (crates/fdpass-napi/src/deliver.rs). */
export const EV_MESSAGES = 1
export const EV_SENT = 2
export const EV_SEND_FAILED = 3
export const EV_END = 4
export const EV_ERROR = 5
export const EV_ACCEPTABLE = 6

export type Reactor = 'uv' | 'thread'

declare const Bun: unknown
declare const Deno: unknown

/**
 * `uv`: a uv_poll handle per socket on Node's own loop (fastest, Node and
 * Electron). `thread`: one poller thread per environment that wakes
 * JavaScript through a threadsafe function (needs only Node-API: Bun, Deno).
 * FDPASS_REACTOR=uv|thread forces one, for tests and benchmarks.
 */
function chooseReactor(): Reactor {
  const forced = process.env.FDPASS_REACTOR
  if (forced === 'uv' && runtimeName !== 'node') {
    // Bun aborts the process on uv_poll_*; Deno's shim stops after one callback.
    throw new FdpassError('ERR_FDPASS_UNSUPPORTED', `FDPASS_REACTOR=uv needs Node's own libuv, which ${runtimeName} does not have: use 'thread' or unset it`)
  }
  if (forced === 'uv' || forced === 'thread') return forced
  if (forced !== undefined && forced !== '') {
    throw new FdpassError('ERR_INVALID_ARG_VALUE', `FDPASS_REACTOR must be 'uv' or 'thread', not '${forced}'`)
  }
  if (runtimeName !== 'node') return 'thread'
  return binding.hasLibuv() ? 'uv' : 'thread'
}

/** The JavaScript runtime: Node-API behaves the same in each but for teardown. */
export const runtimeName: 'node' | 'bun' | 'deno' =
  typeof Bun !== 'undefined' ? 'bun' : typeof Deno !== 'undefined' ? 'deno' : 'node'

export const reactor = binding.configure(chooseReactor(), runtimeName) as Reactor

/**
 * What the runtime's own node modules cannot do with a descriptor they did
 * not open (seen on Bun 1.4 and Deno 2.9; README "Runtimes").
 */
export const runtimeLimits = {
  /** Deno's node:fs rejects foreign fds with EBADF: fs streams go through the addon. */
  fsRefusesForeignFds: runtimeName === 'deno',
  /** Bun's `new net.Socket({ fd })` closes at once (ERR_SOCKET_CLOSED). */
  noNetSocketFromFd: runtimeName === 'bun',
  /** Deno's `dgram` bind({ fd }) fails with ERR_INVALID_FD_TYPE. */
  noDgramFromFd: runtimeName === 'deno',
}
export const platform = binding.platformInfo()

/** What fstat says of the file a descriptor refers to: its kind and identity. */
export interface FileStat {
  kind: FdKind
  /** Device and inode: together they identify the file. */
  dev: number
  ino: number
  mode: number
  size: number
}

/** FileStat, and the descriptor's own close-on-exec flag. */
export interface FdStat extends FileStat {
  /** Whether the descriptor is close-on-exec (every received one is). */
  cloexec: boolean
}

// Off-heap from the start, so that handing it to the addon costs nothing.
const STAT = new Float64Array(new ArrayBuffer(5 * 8))

/** fstat of a descriptor (the addon fills numbers; the object is built here, where it is cheap). */
export function fdStat(fd: number): FdStat {
  const kind = FD_KINDS[hot.fdStatInto(fd, STAT)] ?? 'unknown'
  return { kind, dev: STAT[0], ino: STAT[1], mode: STAT[2], size: STAT[3], cloexec: STAT[4] === 1 }
}

/**
 * Descriptor numbers for the batch calls below: fill the first `n`
 * (at most FD_BATCH_SIZE), then call. Off-heap, so handing it over is
 * free; no user code may run between filling and the call.
 */
export const FD_BATCH_SIZE = 256
export const FD_BATCH = new Int32Array(new ArrayBuffer(4 * FD_BATCH_SIZE))
const BATCH_STATS = new Float64Array(new ArrayBuffer(8 * 5 * FD_BATCH_SIZE))

/** fstat of FD_BATCH's first `n`, appended to `out`, one syscall each. */
export function fileStatBatch(n: number, out: FileStat[]): void {
  hot.fdStatMany(FD_BATCH, n, BATCH_STATS)
  for (let r = 0; r < 5 * n; r += 5) out.push(batchStatAt(r))
}

/** fstat of one descriptor, and nothing else: one syscall. */
export function fileStat(fd: number): FileStat {
  FD_BATCH[0] = fd
  hot.fdStatMany(FD_BATCH, 1, BATCH_STATS)
  return batchStatAt(0)
}

function batchStatAt(r: number): FileStat {
  return { kind: FD_KINDS[BATCH_STATS[r]] ?? 'unknown', dev: BATCH_STATS[r + 1], ino: BATCH_STATS[r + 2], mode: BATCH_STATS[r + 3], size: BATCH_STATS[r + 4] }
}

/** Close FD_BATCH's first `n`: all of them, then the first failure throws. */
export function closeBatch(n: number): void {
  hot.closeFds(FD_BATCH, n)
}
