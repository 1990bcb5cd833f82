// The systemd notification protocol (sd_notify(3), sd_pid_notify_with_fds):
// one datagram of newline-separated KEY=VALUE lines to $NOTIFY_SOCKET,
// optionally with descriptors (FDSTORE=1).
import { type Address } from './address'
import { invalidArgType, invalidArgValue } from './errors'
import type { FdLike } from './fd-like'
import { bind } from './open'

/** The notify socket's address from `$NOTIFY_SOCKET` ('@name' is abstract), or null. */
export function notifySocketAddress(env: NodeJS.ProcessEnv = process.env): Address | null {
  const value = env.NOTIFY_SOCKET
  if (!value) return null
  if (value.startsWith('@')) return { abstract: value.slice(1) }
  if (value.startsWith('/')) return value
  throw invalidArgValue('NOTIFY_SOCKET', value, "must be an absolute path or start with '@'")
}

export type NotifyState = Record<string, string | number | boolean>

/** `{ READY: 1, STATUS: 'ok' }` → "READY=1\nSTATUS=ok". Values cannot contain newlines. */
export function formatNotifyState(state: NotifyState | string): string {
  if (typeof state === 'string') return state
  if (state === null || typeof state !== 'object') throw invalidArgType('state', 'an object or a string', state)
  return Object.entries(state)
    .map(([k, v]) => {
      const s = typeof v === 'boolean' ? (v ? '1' : '0') : String(v)
      if (s.includes('\n') || k.includes('=') || k.includes('\n')) throw invalidArgValue(`state.${k}`, v, 'must not contain a newline')
      return `${k}=${s}`
    })
    .join('\n')
}

/**
 * Send a notification to the service manager, with optional descriptors
 * (e.g. `notify({ FDSTORE: 1, FDNAME: 'http' }, [server])` keeps a
 * listening socket in systemd's fd store across restarts). Resolves
 * false when `$NOTIFY_SOCKET` is not set, as sd_notify returns 0.
 */
export async function notify(state: NotifyState | string, fds?: readonly FdLike[], env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const address = notifySocketAddress(env)
  const text = formatNotifyState(state)
  if (!address) return false
  const socket = await bind(null, { type: 'dgram' })
  try {
    await socket.sendTo(address, text, fds)
  } finally {
    socket.close()
  }
  return true
}
