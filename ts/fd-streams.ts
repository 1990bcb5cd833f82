// fs streams whose I/O goes through the addon instead of node:fs, for
// runtimes whose node:fs refuses descriptors it did not open itself (Deno
// rejects fs.read/fs.write/fs.close on a received fd with EBADF). Node's
// ReadStream/WriteStream accept such an `fs` in their options.
import { binding, hot } from './native'
import { fromNative } from './errors'

type Callback<T> = (err: Error | null, value?: T, buffer?: Uint8Array) => void

const unused = (): never => {
  throw new Error('fdpass streams are always opened on an existing fd')
}

function close(fd: number, cb: (err: Error | null) => void): void {
  try {
    hot.closeFd(fd)
    queueMicrotask(() => cb(null))
  } catch (e) {
    queueMicrotask(() => cb(fromNative(e)))
  }
}

/** The `fs` option for a ReadStream over a descriptor the runtime's fs refuses. */
export const nativeReadFs = {
  open: unused,
  close,
  read(fd: number, buffer: Uint8Array, offset: number, length: number, position: number | bigint | null | undefined, cb: Callback<number>): void {
    // ReadStream passes undefined (not null) for "at the current offset".
    const at = typeof position === 'number' || typeof position === 'bigint' ? Number(position) : null
    binding.readFd(fd, length, at).then(
      // Realm-independent checks: the addon's values may come from another context's Error.
      (r) => {
        if (!ArrayBuffer.isView(r)) return cb(r)
        buffer.set(r, offset)
        cb(null, r.length, buffer)
      },
      (e: unknown) => cb(fromNative(e)),
    )
  },
}

/** The `fs` option for a WriteStream over a descriptor the runtime's fs refuses. */
export const nativeWriteFs = {
  open: unused,
  close,
  write(fd: number, buffer: Uint8Array, offset: number, length: number, position: number | null | undefined, cb: Callback<number>): void {
    binding.writeFd(fd, buffer.subarray(offset, offset + length), typeof position === 'number' ? position : null).then(
      (r) => (typeof r === 'number' ? cb(null, r, buffer) : cb(r)),
      (e: unknown) => cb(fromNative(e)),
    )
  },
}
