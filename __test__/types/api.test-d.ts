// Type tests of the public API (vitest typecheck mode: tsc checks this
// file). `@ts-expect-error` lines must stay errors: each one fails the run
// when a type loosens.
import { once } from 'node:events'
import * as http from 'node:http'
import { describe, expectTypeOf, test } from 'vitest'
import {
  type FdServer,
  type FdSocket,
  FdpassError,
  type FdpassErrorCode,
  MAX_FDS_PER_MESSAGE,
  type Message,
  type PeerCredentials,
  type ReceivedFd,
  type SocketType,
  connect,
  runtime,
  socketpair,
} from '../../index'
import { type Generation, type HandoffRecord, type MigrationSummary, takeover } from '../../handoff'

declare const socket: FdSocket
declare const server: FdServer

describe('events', () => {
  test('FdSocket listeners get their arguments typed', () => {
    socket.on('message', (message) => {
      expectTypeOf(message).toEqualTypeOf<Message>()
      expectTypeOf(message.fds).toEqualTypeOf<ReceivedFd[]>()
    })
    socket.once('close', (hadError) => expectTypeOf(hadError).toEqualTypeOf<boolean>())
    socket.on('error', (error) => expectTypeOf(error).toEqualTypeOf<FdpassError>())
    socket.off('end', (...args) => expectTypeOf(args).toEqualTypeOf<[]>())
    expectTypeOf(socket.on('message', () => {})).toEqualTypeOf<FdSocket>()
    // @ts-expect-error: no such event
    socket.on('mesage', () => {})
    // @ts-expect-error: 'close' passes a boolean
    socket.on('close', (hadError: string) => hadError)
  })

  test('FdServer listeners get their arguments typed', () => {
    server.on('connection', (s) => expectTypeOf(s).toEqualTypeOf<FdSocket>())
    server.on('refused', (peer) => expectTypeOf(peer).toEqualTypeOf<PeerCredentials>())
    server.prependListener('error', (e) => expectTypeOf(e).toEqualTypeOf<FdpassError>())
    // @ts-expect-error: no such event
    server.on('connect', () => {})
  })

  test('EventEmitter helpers still take them', async () => {
    const [a] = socketpair()
    expectTypeOf(await once(a, 'message')).toEqualTypeOf<any[]>()
    a.on('newListener', (name) => expectTypeOf(name).toEqualTypeOf<string | symbol>())
  })
})

describe('FdpassError', () => {
  test('code is a union of the documented codes', () => {
    expectTypeOf<'ERR_FDPASS_TRUNCATED'>().toMatchTypeOf<FdpassErrorCode>()
    expectTypeOf<'EPIPE'>().toMatchTypeOf<FdpassErrorCode>()
    expectTypeOf<'ERR_FDPASS_NO_SUCH_CODE'>().not.toMatchTypeOf<FdpassErrorCode>()
    expectTypeOf<string>().not.toMatchTypeOf<FdpassErrorCode>()
  })

  test('checking the code gives the fields that code carries', () => {
    const e: unknown = null
    if (e instanceof FdpassError) {
      expectTypeOf(e.code).toEqualTypeOf<FdpassErrorCode>()
      expectTypeOf(e.errno).toEqualTypeOf<number | undefined>()
      // @ts-expect-error: only some codes carry fdsLost
      void e.fdsLost
      // @ts-expect-error: not a code
      if (e.code === 'ERR_FDPASS_TRUNCATD') void e
      if (e.code === 'ERR_FDPASS_TRUNCATED') {
        expectTypeOf(e.fdsLost).toEqualTypeOf<number | null>()
        expectTypeOf(e.fdsReceived).toEqualTypeOf<number>()
        expectTypeOf(e.data).toEqualTypeOf<Buffer>()
      }
      if (e.code === 'ERR_FDPASS_TOO_MANY_FDS') expectTypeOf(e.limit).toEqualTypeOf<number>()
      if (e.code === 'EPIPE') {
        expectTypeOf(e.errno).toEqualTypeOf<number>()
        expectTypeOf(e.syscall).toEqualTypeOf<string>()
      }
    }
  })

  test('the constructor takes a code and its fields', () => {
    expectTypeOf(new FdpassError('ERR_FDPASS_TOO_MANY_FDS', 'm', { count: 300, limit: 253 }).limit).toEqualTypeOf<number>()
    // @ts-expect-error: not a code
    void new FdpassError('ERR_WHATEVER', 'm')
  })
})

describe('constants', () => {
  test('MAX_FDS_PER_MESSAGE is 253', () => {
    expectTypeOf(MAX_FDS_PER_MESSAGE).toEqualTypeOf<253>()
  })
})

describe('handoff', () => {
  test('listener names are the declared ones', async () => {
    const generation = await takeover({ control: '/run/app.sock', listeners: { http: { tcp: { port: 8080 } }, metrics: { unix: { path: '/run/m.sock' } } } })
    expectTypeOf(generation).toEqualTypeOf<Generation<'http' | 'metrics'>>()
    expectTypeOf(generation.names).toEqualTypeOf<Array<'http' | 'metrics'>>()
    await generation.listen('http', http.createServer())
    generation.fd('metrics')
    // @ts-expect-error: a typo is no listener
    await generation.listen('htpp', http.createServer())
    // @ts-expect-error: nor here
    generation.fd('metric')
  })

  test('Generation listeners get their arguments typed', async () => {
    const generation = await takeover({ listeners: {} })
    generation.on('handoff', (record) => expectTypeOf(record).toEqualTypeOf<HandoffRecord>())
    generation.on('drained', (r) => expectTypeOf(r.timedOut).toEqualTypeOf<boolean>())
    generation.on('migration', (m) => expectTypeOf(m).toEqualTypeOf<MigrationSummary>())
    generation.on('connections-received', (r) => expectTypeOf(r.fromPid).toEqualTypeOf<number | null>())
    // @ts-expect-error: no such event
    generation.on('drainded', () => {})
  })

  test('connect() resolves to an FdSocket', () => {
    expectTypeOf(connect).returns.toEqualTypeOf<Promise<FdSocket>>()
  })
})

describe('the string unions the addon defines (binding.d.ts), as the public API names them', () => {
  test('SocketType, runtime.name and runtime.reactor keep their values', () => {
    expectTypeOf<SocketType>().toEqualTypeOf<'stream' | 'seqpacket' | 'dgram'>()
    expectTypeOf(socket.type).toEqualTypeOf<SocketType>()
    expectTypeOf(server.type).toEqualTypeOf<SocketType>()
    expectTypeOf(runtime.name).toEqualTypeOf<'node' | 'bun' | 'deno'>()
    expectTypeOf(runtime.reactor).toEqualTypeOf<'uv' | 'thread'>()
    // @ts-expect-error not a socket type
    socketpair({ type: 'datagram' })
  })
})
