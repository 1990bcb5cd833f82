// Deliveries: the buffers lent to the addon, and how a batch the addon
// wrote (into them, or into arrays it made) becomes Message objects.
//
// A batch is `data` (the messages' bytes, back to back) and `meta`: per
// message 4 numbers, [byte length, descriptor count, descriptors lost,
// flags], then that many descriptor numbers. Datagram batches also carry
// each sender's address.
import type { Address } from './address'
import { FdpassError } from './errors'
import { binding } from './native'
import { type FdKind, ReceivedFd } from './received-fd'

/** One message as it was sent: its bytes and the descriptors sent with it. */
export interface Message {
  data: Buffer
  fds: ReceivedFd[]
  /** Datagram sockets: the sender's address (null when the sender is unbound). */
  from?: Address | null
}

/** Per-message flags in the metadata array. */
const { FLAG_DATA_TRUNCATED, FLAG_FDS_TRUNCATED } = binding

// Lent to the addon for deliveries (crates/fdpass-napi DeliveryBuffers): a
// batch that fits is written here and EV_MESSAGES passes its lengths.
// 64 KiB is one stream read; the metadata holds 4 numbers per message plus
// the descriptors of a batch (1,024 and 512).
const DELIVERY_DATA = new Uint8Array(new ArrayBuffer(64 * 1024))
const DELIVERY_META = new Int32Array(new ArrayBuffer(4 * (4 * 1024 + 512)))
binding.lendDeliveryBuffers(DELIVERY_DATA, DELIVERY_META)

/**
 * A delivery's data: the Buffer the addon made, or (a length) a copy of
 * what it wrote into the lent buffer, from Node's Buffer pool when small.
 */
function deliveredData(data: Buffer | number): Buffer {
  if (typeof data !== 'number') return data
  const out = Buffer.allocUnsafe(data)
  // A few bytes (the usual message beside descriptors) copy faster than a
  // subarray view is made.
  if (data <= 64) for (let i = 0; i < data; i++) out[i] = DELIVERY_DATA[i]
  else out.set(DELIVERY_DATA.subarray(0, data))
  return out
}

/**
 * The messages of one EV_MESSAGES delivery (`data` and `meta` as the
 * addon passed them: arrays, or lengths of what it wrote into the lent
 * buffers), truncated or refused ones as errors. Each descriptor is owned
 * by a ReceivedFd that the caller must guard (ReceivedFd.guard). Call it
 * before any listener runs: the next delivery overwrites the lent buffers.
 */
export function deliveredMessages(
  data: Buffer | number,
  meta: Int32Array | number,
  from: Array<Address | null> | undefined,
  acceptFds: readonly FdKind[] | undefined,
): Array<Message | Error> {
  const bytes = deliveredData(data)
  const metaArray = typeof meta === 'number' ? DELIVERY_META : meta
  const metaLength = typeof meta === 'number' ? meta : meta.length
  // Most deliveries hold one message: an array of exactly one then.
  const first = messageAt(bytes, metaArray, 0, 0, from?.[0] ?? null, from !== undefined, acceptFds)
  let i = 4 + metaArray[1]
  if (i >= metaLength) return [first]
  const items = [first]
  let offset = metaArray[0]
  while (i < metaLength) {
    items.push(messageAt(bytes, metaArray, i, offset, from?.[items.length] ?? null, from !== undefined, acceptFds))
    offset += metaArray[i]
    i += 4 + metaArray[i + 1]
  }
  return items
}

/** The one message `socketReceiveSync` wrote into the lent buffers (as deliveredMessages' items). */
export function lentMessage(acceptFds: readonly FdKind[] | undefined): Message | Error {
  return messageAt(deliveredData(DELIVERY_META[0]), DELIVERY_META, 0, 0, null, false, acceptFds)
}

/** The message whose metadata starts at meta[at] and data at data[offset]. */
function messageAt(
  data: Buffer,
  meta: Int32Array,
  at: number,
  offset: number,
  from: Address | null,
  hasFrom: boolean,
  acceptFds: readonly FdKind[] | undefined,
): Message | Error {
  const len = meta[at]
  const count = meta[at + 1]
  const lost = meta[at + 2]
  const flags = meta[at + 3]
  // Exact-length arrays: one that grows from [] gets room for 17.
  const fds: ReceivedFd[] = count === 1 ? [new ReceivedFd(meta[at + 4], false)] : []
  if (count > 1) for (let k = 0; k < count; k++) fds.push(new ReceivedFd(meta[at + 4 + k], false))
  const body = offset === 0 && len === data.length ? data : data.subarray(offset, offset + len)
  if (flags !== 0) return truncated(body, fds, lost, flags)
  const refused = acceptFds ? refusedKinds(fds, acceptFds) : null
  if (refused) return refused
  return hasFrom ? { data: body, fds, from } : { data: body, fds }
}

/** An error when a descriptor's kind is not allowed; then all of them are closed. */
function refusedKinds(fds: ReceivedFd[], allowed: readonly FdKind[]): FdpassError | null {
  if (fds.length === 0) return null
  let bad: FdKind[] | null = null
  for (const fd of fds) {
    const kind = fd.kind()
    if (!allowed.includes(kind)) (bad ??= []).push(kind)
  }
  if (!bad) return null
  for (const fd of fds) fd.close()
  return new FdpassError(
    'ERR_FDPASS_FD_KIND_REJECTED',
    `a message carried descriptors of a kind this socket does not accept (${[...new Set(bad)].join(', ')}; acceptFds is ${allowed.join(', ')}); all ${fds.length} were closed`,
    { kinds: bad, fdsReceived: fds.length },
  )
}

function truncated(data: Buffer, fds: ReceivedFd[], lost: number, flags: number): FdpassError {
  for (const fd of fds) fd.close()
  const parts: string[] = []
  if (flags & FLAG_FDS_TRUNCATED) {
    parts.push(lost > 0 ? `${lost} file descriptors were lost` : 'file descriptors were lost')
  }
  if (flags & FLAG_DATA_TRUNCATED) parts.push('the data did not fit maxMessageSize and was cut')
  const hint =
    flags & FLAG_FDS_TRUNCATED ? ' (the receiver is at its open-file limit, RLIMIT_NOFILE: close descriptors or raise the limit)' : ' (raise maxMessageSize)'
  return new FdpassError('ERR_FDPASS_TRUNCATED', `message truncated: ${parts.join('; ')}${hint}; the ${fds.length} that arrived were closed`, {
    data,
    fdsReceived: fds.length,
    fdsLost: lost >= 0 ? lost : null,
    dataTruncated: (flags & FLAG_DATA_TRUNCATED) !== 0,
  })
}
