// Facts about this build, platform and runtime.
import { binding, platform, reactor, runtimeName } from './native'

// The same on every platform (crates/fdpass-core MAX_FDS_PER_MESSAGE), so
// typed as the literal.
/** The most descriptors one message may carry (SCM_MAX_FD on Linux). */
export const MAX_FDS_PER_MESSAGE = binding.MAX_FDS_PER_MESSAGE as 253

/** Facts about this build and runtime. */
export const runtime = {
  /** The JavaScript runtime fdpass detected: 'node' (also Electron), 'bun' or 'deno'. */
  name: runtimeName,
  /** The readiness mechanism in use: 'uv' (Node, Electron) or 'thread' (Node-API only). */
  reactor,
  /** Usable bytes of a socket path (sun_path minus its NUL): 107 on Linux, 103 on macOS. */
  maxPathLength: platform.maxPathLength,
  supportsSeqpacket: platform.supportsSeqpacket,
  supportsAbstract: platform.supportsAbstract,
  /** Whether takeFd() (pidfd_getfd) works on this kernel. */
  supportsPidfd: platform.supportsPidfd,
} as const
