// Promises waiting for the next item of a queue (receive(), accept()),
// each abortable with an AbortSignal.
import { abortError } from './errors'

export interface Waiter<T> {
  resolve: (value: T) => void
  reject: (error: Error) => void
  cleanup?: () => void
  /**
   * What the queue's end does to this waiter: reject with this operation's
   * ERR_FDPASS_SOCKET_CLOSED (receive(), accept()), or, when unset, resolve
   * with the end marker (async iteration).
   */
  closedError?: () => Error
}

/** Join `waiters`; rejects with ABORT_ERR (and leaves the line) when `signal` aborts. */
export function waitInLine<T>(waiters: Waiter<T>[], signal: AbortSignal | undefined, closedError?: () => Error): Promise<T> {
  return new Promise((resolve, reject) => {
    const waiter: Waiter<T> = { resolve, reject, closedError }
    if (signal) {
      const onAbort = () => {
        const i = waiters.indexOf(waiter)
        if (i >= 0) waiters.splice(i, 1)
        reject(abortError(signal.reason))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      waiter.cleanup = () => signal.removeEventListener('abort', onAbort)
    }
    waiters.push(waiter)
  })
}
