// The private interface to the Rust binding, and the one place where the
// readiness mechanism is chosen for this runtime (see README "Design").
import * as binding from '../binding.js'
import { FdpassError } from './errors'

export type { NativeAddress, NativeSocket, NativeServer, FdStat } from '../binding.js'
export { binding }

/** Event codes of the native callbacks (crates/fdpass-napi/src/socket.rs). */
export const EV_MESSAGES = 1
export const EV_SENT = 2
export const EV_SEND_FAILED = 3
export const EV_END = 4
export const EV_ERROR = 5
export const EV_ACCEPTABLE = 6

/** Per-message flags in the metadata array. */
export const FLAG_DATA_TRUNCATED = 1
export const FLAG_FDS_TRUNCATED = 2

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
  if (forced === 'uv' || forced === 'thread') return forced
  if (forced !== undefined && forced !== '') {
    throw new FdpassError('ERR_INVALID_ARG_VALUE', `FDPASS_REACTOR must be 'uv' or 'thread', not '${forced}'`)
  }
  if (typeof Bun !== 'undefined' || typeof Deno !== 'undefined') return 'thread'
  return binding.hasLibuv() ? 'uv' : 'thread'
}

export const reactor = binding.configure(chooseReactor()) as Reactor
export const platform = binding.platformInfo()
