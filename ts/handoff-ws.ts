// fdpass/handoff/ws: WebSocket connections of the `ws` package move to the
// next generation during a handoff, with no close frame and no frame lost
// or duplicated. `ws` is a peer dependency of this entry point only.
//
// Half-read frames: the old side does not wait for a frame boundary (a
// client may never complete one while it waits for an answer). It rebuilds
// the bytes ws's Receiver has read but not delivered (earlier fragments of
// an unfinished message, the current frame's parsed header and mask, the
// partial payload) as wire bytes and sends them as the connection's
// pending bytes; the new side's Receiver parses them first, then the rest
// from the socket. docs/handoff-connections.md has the details.
import type * as net from 'node:net'
import type { Generation } from './handoff'
import type { MigratedConnectionInfo, MigrationResult } from './migration'

/** Migration kind of a `ws` WebSocket. */
export const WEBSOCKET_KIND = 'ws'
/** Version of the adapter's state (protocol, binary type, the app's state). */
export const WEBSOCKET_STATE_VERSION = 1

/** The parts of a `ws` WebSocket this adapter reads (ws 8). */
interface WsWebSocket {
  readyState: number
  protocol: string
  binaryType: string
  bufferedAmount: number
  _readyState: number
  _isServer: boolean
  _protocol: string
  _extensions: Record<string, unknown>
  _socket: net.Socket | null
  _receiver: WsReceiver | null
  emit(event: string, ...args: unknown[]): boolean
  setSocket(socket: net.Socket, head: Buffer, options: Record<string, unknown>): void
}

interface WsReceiver {
  _state: number
  _buffers: Buffer[]
  _bufferedBytes: number
  _fragments: Buffer[]
  _fragmented: number
  _fin: boolean
  _opcode: number
  _masked: boolean
  _mask: Buffer | undefined
  _payloadLength: number
  _errored: boolean
  _maxPayload: number
  _skipUTF8Validation: boolean
  _allowSynchronousEvents: boolean
  writableLength: number
}

interface WsServer {
  clients?: Set<WsWebSocket>
}

const OPEN = 1
const CLOSING = 2

// ws's Receiver states (lib/receiver.js); GET_MASK (3) lies between these.
const GET_INFO = 0
const GET_PAYLOAD_LENGTH_16 = 1
const GET_PAYLOAD_LENGTH_64 = 2
const GET_DATA = 4

/** The state that travels with a migrated WebSocket. */
interface WireWebSocketState {
  protocol: string
  binaryType: string
  maxPayload: number
  skipUTF8Validation: boolean
  allowSynchronousEvents: boolean
  app: unknown
}

function lengthBytes(length: number): Buffer {
  if (length < 126) return Buffer.from([0x80 | length])
  if (length < 0x10000) {
    const b = Buffer.alloc(3)
    b[0] = 0x80 | 126
    b.writeUInt16BE(length, 1)
    return b
  }
  const b = Buffer.alloc(9)
  b[0] = 0x80 | 127
  b.writeUInt32BE(Math.floor(length / 2 ** 32), 1)
  b.writeUInt32BE(length >>> 0, 5)
  return b
}

/** A client-to-server frame with a zero mask (payload bytes unchanged): how an already-unmasked fragment is replayed. */
function zeroMaskedFrame(fin: boolean, opcode: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode]), lengthBytes(payload.length), Buffer.alloc(4), payload])
}

/**
 * The bytes ws's Receiver holds but has not delivered, rebuilt as the
 * client sent them (up to masks on earlier fragments): null when it is in
 * a state that cannot be rebuilt now (inflating, an event deferred).
 */
export function receiverPendingBytes(receiver: WsReceiver): Buffer | null {
  if (receiver._errored || receiver.writableLength > 0) return null
  const state = receiver._state
  if (state > GET_DATA) return null
  const parts: Buffer[] = []
  // Earlier fragments of an unfinished message (already unmasked).
  receiver._fragments.forEach((payload, i) => parts.push(zeroMaskedFrame(false, i === 0 ? receiver._fragmented : 0, payload)))
  if (state !== GET_INFO) {
    // The current frame's header was parsed: write it again.
    const control = receiver._opcode >= 0x08
    const opcode = control ? receiver._opcode : receiver._fragments.length > 0 ? 0 : receiver._opcode
    parts.push(Buffer.from([(receiver._fin ? 0x80 : 0) | opcode]))
    if (state === GET_PAYLOAD_LENGTH_16 || state === GET_PAYLOAD_LENGTH_64) {
      parts.push(Buffer.from([(receiver._masked ? 0x80 : 0) | receiver._payloadLength]))
    } else {
      // GET_MASK or GET_DATA: the whole length is known.
      const len = lengthBytes(receiver._payloadLength)
      if (!receiver._masked) len[0] &= 0x7f
      parts.push(len)
      if (state === GET_DATA && receiver._masked) parts.push(receiver._mask!)
    }
  }
  parts.push(...receiver._buffers)
  return Buffer.concat(parts)
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/**
 * Old side: hand `ws` (a `ws` WebSocket on the server side) to the
 * successor with `appState` (JSON). Waits until everything it sent is in
 * the kernel (bufferedAmount 0) and its receiver is between events; from
 * then until the answer `ws.send()` fails (readyState CLOSING). Migrated:
 * `ws` emits `'migrated'` then `'close'` (1012), without a close frame.
 * Not migrated: `ws` is open again here. Refuses (`reason`
 * 'permessage-deflate') when compression was negotiated: the inflate and
 * deflate contexts live in this process.
 */
export async function migrateWebSocket(
  generation: Generation,
  ws: unknown,
  appState?: unknown,
  options: { timeoutMs?: number } = {},
): Promise<MigrationResult> {
  const socket = ws as WsWebSocket
  if (!socket || typeof socket.setSocket !== 'function') throw new TypeError('migrateWebSocket: ws must be a WebSocket of the ws package')
  if (Object.keys(socket._extensions ?? {}).length > 0) return { migrated: false, reason: 'permessage-deflate' }
  const deadline = Date.now() + (options.timeoutMs ?? 5000)
  for (;;) {
    if (socket._readyState !== OPEN || !socket._socket || !socket._receiver) return { migrated: false, reason: 'closed' }
    const raw = socket._socket
    const pending = socket.bufferedAmount === 0 && raw.readableLength === 0 ? receiverPendingBytes(socket._receiver) : null
    if (pending) {
      const receiver = socket._receiver
      const state: WireWebSocketState = {
        protocol: socket._protocol,
        binaryType: socket.binaryType,
        maxPayload: receiver._maxPayload,
        skipUTF8Validation: receiver._skipUTF8Validation,
        allowSynchronousEvents: receiver._allowSynchronousEvents,
        app: appState ?? null,
      }
      // migrate() stops reading in this same turn: the receiver's bytes and the kernel's are all there is.
      const result = generation.migrate(raw, { kind: WEBSOCKET_KIND, version: WEBSOCKET_STATE_VERSION, state, pending })
      socket._readyState = CLOSING
      const outcome = await result
      if (outcome.migrated) {
        // ws's own socket listeners (socketOnClose, socketOnData, ...): the socket is no longer this WebSocket's.
        for (const event of ['close', 'data', 'end', 'error'] as const) {
          for (const l of raw.listeners(event)) if ((l as { name: string }).name.startsWith('socketOn')) raw.off(event, l as () => void)
        }
        socket._readyState = 3
        ;(socket as unknown as { migrated: boolean }).migrated = true
        socket.emit('migrated')
        socket.emit('close', 1012, Buffer.from('migrated'))
      } else {
        socket._readyState = OPEN
      }
      return outcome
    }
    if (Date.now() > deadline)
      return {
        migrated: false,
        reason: 'busy',
        detail: 'the WebSocket did not reach a point where it could move (sends still buffered, or a message being delivered)',
      }
    await nextTurn()
  }
}

/** Old side: migrate every open WebSocket of a `ws` WebSocketServer (or an iterable of them), in parallel. */
export function migrateWebSockets(
  generation: Generation,
  sockets: Iterable<unknown> | { clients?: Set<unknown> },
  appState?: (ws: unknown) => unknown,
): Promise<MigrationResult[]> {
  const list = Symbol.iterator in Object(sockets) ? [...(sockets as Iterable<unknown>)] : [...((sockets as WsServer).clients ?? [])]
  return Promise.all(list.map((ws) => migrateWebSocket(generation, ws, appState?.(ws))))
}

export interface AdoptWebSocketsOptions {
  /** ws's WebSocket class (`require('ws').WebSocket`). @default require('ws').WebSocket */
  WebSocket?: new (address: null, protocols?: undefined, options?: Record<string, unknown>) => unknown
  /** A `ws` WebSocketServer whose `clients` should list the adopted sockets. */
  server?: unknown
  /** Called with each adopted, open WebSocket and the app state the old generation gave. */
  onConnection(ws: any, appState: unknown, info: MigratedConnectionInfo): void
}

/**
 * New side: adopt the WebSockets the previous generation migrates. Each
 * is a working server-side `ws` WebSocket on the same TCP connection, with
 * the old side's unread bytes (a half-read frame) parsed first. Call
 * before `generation.ready()`.
 */
export function adoptWebSockets(generation: Generation, options: AdoptWebSocketsOptions): void {
  const WebSocket = options.WebSocket ?? (require('ws') as { WebSocket: NonNullable<AdoptWebSocketsOptions['WebSocket']> }).WebSocket
  generation.onMigratedConnection(
    WEBSOCKET_KIND,
    (socket, state, info) => {
      const s = state as WireWebSocketState
      const ws = new WebSocket(null, undefined, { autoPong: true }) as WsWebSocket
      ws._protocol = s.protocol
      ws.binaryType = s.binaryType
      // Pending bytes are already unshifted into the socket: no head.
      ws.setSocket(socket, Buffer.alloc(0), {
        maxPayload: s.maxPayload,
        skipUTF8Validation: s.skipUTF8Validation,
        allowSynchronousEvents: s.allowSynchronousEvents,
      })
      const clients = (options.server as WsServer | undefined)?.clients
      if (clients) {
        clients.add(ws)
        ;(ws as unknown as NodeJS.EventEmitter).once('close', () => clients.delete(ws))
      }
      options.onConnection(ws, s.app, info)
    },
    { versions: [WEBSOCKET_STATE_VERSION] },
  )
}
