// The private interface to the Rust binding, and the one place where the
// readiness mechanism is chosen for this runtime (docs/design.md, "Readiness").
import { readFileSync } from 'node:fs'
import { FdpassError, quotedChoices } from './errors'
import type { FdKind } from './fd-kind'

export type { FdKind } from './fd-kind'
export type { InetKind, NativeAddress, NativeSocket, NativeServer, Reactor, Runtime, SocketType } from '../binding.js'
import type { InetKind, Reactor, Runtime, SocketType } from '../binding.js'

type Binding = typeof import('../binding.js')

const SUPPORTED = ['linux-x64-gnu', 'linux-x64-musl', 'linux-arm64-gnu', 'linux-arm64-musl', 'darwin-x64', 'darwin-arm64']

type Libc = 'gnu' | 'musl'

/**
 * Which C library a mapped file is, by its name: glibc's `libc.so.6`
 * (`libc-2.NN.so` before 2.34), musl's `ld-musl-<arch>.so.1` (Alpine; its
 * `libc.musl-<arch>.so.1` is a link to it) or Debian's `libc.so` (glibc's
 * `libc.so` is a linker script, never mapped).
 */
export function libcOfMappedFile(file: string): Libc | null {
  const name = file.slice(file.lastIndexOf('/') + 1)
  if (name === 'libc.so.6' || /^libc-2\.\d+\.so$/.test(name)) return 'gnu'
  if (name.startsWith('ld-musl-') || name.startsWith('libc.musl-') || name === 'libc.so') return 'musl'
  return null
}

/** The C library of a /proc/<pid>/maps text: the first libc mapped in it. */
export function libcOfMaps(maps: string): Libc | null {
  for (const line of maps.split('\n')) {
    // address perms offset dev inode path: the path starts at the first '/'.
    const slash = line.indexOf('/')
    if (slash < 0) continue
    const libc = libcOfMappedFile(line.slice(slash))
    if (libc) return libc
  }
  return null
}

/**
 * The C library of this process, which is not always the host's: Bun's
 * musl build runs on a glibc host through musl's loader, and a glibc
 * runtime runs on Alpine through gcompat. So it is read from the process
 * itself: the libc mapped into it, else (no /proc) the process report's
 * glibc version, which only a glibc process has. null: neither says.
 */
export function processLibc(readMaps: () => string = () => readFileSync('/proc/self/maps', 'latin1')): Libc | null {
  try {
    const libc = libcOfMaps(readMaps())
    if (libc) return libc
  } catch {
    // No /proc (a sandbox, Deno without read permission): the report below.
  }
  // Without excludeNetwork the report resolves the peers of open sockets, which waits on DNS.
  if (process.report) (process.report as { excludeNetwork?: boolean }).excludeNetwork = true
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string }; sharedObjects?: string[] } | undefined
  if (report?.header?.glibcVersionRuntime) return 'gnu'
  if (report?.sharedObjects?.some((f) => libcOfMappedFile(f) === 'musl')) return 'musl'
  return null
}

/**
 * Load the Linux binary for this process's libc: the file beside the
 * package (a source checkout), then the platform package. napi-rs's
 * generated loader (binding.js) decides musl by the host's /usr/bin/ldd
 * first, which picks the gnu binary in a musl process on a glibc host.
 */
function loadLinux(libc: Libc): Binding {
  const target = `linux-${process.arch}-${libc}`
  const errors: string[] = []
  for (const id of [`../fdpass.${target}.node`, `fdpass-${target}`]) {
    try {
      const binding = require(id) as Binding
      if (id.startsWith('fdpass-') && process.env.NAPI_RS_ENFORCE_VERSION_CHECK && process.env.NAPI_RS_ENFORCE_VERSION_CHECK !== '0') {
        const expected = (require('../package.json') as { version: string }).version
        const found = (require(`${id}/package.json`) as { version: string }).version
        if (found !== expected) throw new Error(`${id} is version ${found}, fdpass is ${expected}: install both at the same version`)
      }
      return binding
    } catch (e) {
      errors.push(`${id}: ${(e as Error).message.split('\n')[0]}`)
    }
  }
  throw missing(target, new Error(`Cannot find native binding for ${libc === 'musl' ? 'musl' : 'glibc'} (this process's libc): ${errors.join('; ')}`))
}

function missing(target: string, cause: unknown): FdpassError {
  const pkg = `fdpass-${target}`
  return new FdpassError(
    'ERR_FDPASS_BINARY_MISSING',
    `fdpass could not load its native binary for ${target}. It comes in the optional dependency ${pkg}: ` +
      `install it (npm install ${pkg}). npm skips optional dependencies when package-lock.json was written on another platform ` +
      `(npm/cli#4828): remove node_modules and package-lock.json and install again. Inside Electron, unpack *.node files from ` +
      `the asar archive (asarUnpack). Cause: ${(cause as Error).message}`,
    { cause },
  )
}

/** Load the addon (on Linux for this process's libc), with errors that say what to do. */
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
  // NAPI_RS_NATIVE_LIBRARY_PATH names the binary to load: binding.js honours it.
  const libc = process.platform === 'linux' && !process.env.NAPI_RS_NATIVE_LIBRARY_PATH ? processLibc() : null
  if (libc) return loadLinux(libc)
  try {
    return require('../binding.js') as Binding
  } catch (e) {
    const target = process.platform === 'linux' ? `${base}-${processLibc() ?? 'gnu'}` : base
    throw missing(target, e)
  }
}

export const binding: Binding = load()

/**
 * The per-message and per-descriptor calls, as plain Node-API callbacks
 * (crates/fdpass-napi/src/hot.rs: napi-rs's glue cost 4–10 times their
 * own price), declared in binding-hot.d.ts, which binding.d.ts re-exports.
 * A socket is the handle its NativeSocket's hotHandle() made.
 */
export const hot = binding

/** Event codes of the native callbacks (defined in crates/fdpass-napi/src/contract.rs). */
export const { EV_MESSAGES, EV_SENT, EV_SEND_FAILED, EV_END, EV_ERROR, EV_ACCEPTABLE } = binding

/** Every FdKind, indexed as the binding's stat calls report a kind (crates/fdpass-core FdKind::ALL). */
export const FD_KINDS = binding.fdKinds() as readonly FdKind[]

/** The string unions of the binding's arguments, by their names in binding.d.ts. */
interface Unions {
  SocketType: SocketType
  Reactor: Reactor
  Runtime: Runtime
  InetKind: InetKind
}

/**
 * The values of a string union that the addon defines (crates/fdpass-napi/src/contract.rs):
 * binding.d.ts declares it as a type, and binding.js exports it as an object of its values.
 */
function unionValues<K extends keyof Unions>(name: K): readonly Unions[K][] {
  return Object.values((binding as unknown as Record<K, Record<string, Unions[K]>>)[name])
}

/** Every SocketType, for checking options. */
export const SOCKET_TYPES = unionValues('SocketType')
const REACTORS = unionValues('Reactor')

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
  if ((REACTORS as readonly string[]).includes(forced ?? '')) return forced as Reactor
  if (forced !== undefined && forced !== '') {
    throw new FdpassError('ERR_INVALID_ARG_VALUE', `FDPASS_REACTOR must be ${quotedChoices(REACTORS)}, not '${forced}'`)
  }
  if (runtimeName !== 'node') return 'thread'
  return binding.hasLibuv() ? 'uv' : 'thread'
}

/** The JavaScript runtime: Node-API behaves the same in each but for teardown. */
export const runtimeName: Runtime = typeof Bun !== 'undefined' ? 'bun' : typeof Deno !== 'undefined' ? 'deno' : 'node'

export const reactor = binding.configure(chooseReactor(), runtimeName)

/**
 * What the runtime's own node modules cannot do with a descriptor they did
 * not open (seen on Bun 1.4 and Deno 2.9; docs/platforms.md, "Runtimes: Node, Bun, Deno, and arm64").
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
