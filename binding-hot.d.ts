/* The per-message and per-descriptor calls of crates/fdpass-napi/src/hot.rs:
 * plain Node-API callbacks that napi-rs does not describe, so they are
 * declared here by hand. binding.d.ts re-exports them (its head,
 * crates/fdpass-napi/binding-header.d.ts). A `socket` is the handle a
 * NativeSocket's hotHandle() made. */

/**
 * Send the first `byteLength` bytes of `data` and the first `fdCount`
 * descriptors of `fds` as one message (null: the lent send scratch).
 * True when it waits in the socket's queue.
 */
export declare function socketSend(socket: object, data: Uint8Array | null, byteLength: number, fds: Int32Array | null, fdCount: number): boolean

/** socketSend, blocking the thread while the peer's buffer is full. */
export declare function socketSendSync(socket: object, data: Uint8Array | null, byteLength: number, fds: Int32Array | null, fdCount: number): void

/**
 * Wait for a message (`timeoutMs` -1: no limit). -1: the time ran out; 0:
 * delivered through the socket's callback; else the metadata length of the
 * one message left in the lent delivery buffers.
 */
export declare function socketReceiveSync(socket: object, timeoutMs: number): number

/** Close a descriptor natively. */
export declare function closeFd(fd: number): void

/** Close the first `count` of `fds`, all of them; then throw the first failure. */
export declare function closeFds(fds: Int32Array, count: number): void

/** fstat into `out` (dev, ino, mode, size, close-on-exec 0 or 1); returns the kind's index in fdKinds(). */
export declare function fdStatInto(fd: number, out: Float64Array): number

/** fstat of the first `count` of `fds` into `out`, 5 numbers each: the kind's index, dev, ino, mode, size. */
export declare function fdStatMany(fds: Int32Array, count: number, out: Float64Array): void
