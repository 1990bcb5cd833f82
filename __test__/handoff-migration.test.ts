// Connection migration (fdpass/handoff, docs/handoff-connections.md):
// during a handoff, established connections move to the next generation.
// Real generations (fixtures/handoff-server.js) and real clients: raw
// HTTP/1.1 over net sockets (to see every byte and every close), a line
// protocol with app state, HTTPS and HTTP/2 (which drain).
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as http2 from 'node:http2'
import * as https from 'node:https'
import * as net from 'node:net'
import * as path from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { WebSocket } from 'ws'
import { cleanup, linuxOnly, run, sleep, tmpPath, type Child } from './helpers'

const children: Child[] = []
const sockets: net.Socket[] = []
afterEach(() => {
  for (const c of children.splice(0)) c.proc.kill('SIGKILL')
  for (const s of sockets.splice(0)) s.destroy()
  cleanup()
})

/** A generation whose every printed line is kept, so waiting for one line never loses another. */
interface Gen {
  child: Child
  pid: number
  lines: any[]
  /** The first line (in order, not yet taken) that matches; waits for it. */
  line(pred: (l: any) => boolean, what?: string): Promise<any>
}

function generation(config: Record<string, unknown>): Gen {
  // stdin: 'release' answers the held /hold requests.
  const child = run('handoff-server.js', [config], { stdio: ['pipe', 'pipe', 'pipe'] })
  children.push(child)
  const lines: any[] = []
  const waiters: Array<() => void> = []
  let ended: Error | null = null
  ;(async () => {
    for (;;) {
      try {
        lines.push(await child.next())
      } catch (e) {
        ended = e as Error
      }
      for (const w of waiters.splice(0)) w()
      if (ended) return
    }
  })()
  const taken = new Set<number>()
  return {
    child,
    pid: child.proc.pid!,
    lines,
    async line(pred, what = 'a matching line') {
      for (;;) {
        const i = lines.findIndex((l, j) => !taken.has(j) && pred(l))
        if (i >= 0) {
          taken.add(i)
          return lines[i]
        }
        if (ended) throw new Error(`waiting for ${what}: ${ended.message}`)
        await new Promise<void>((r) => waiters.push(r))
      }
    },
  }
}

const ready = (g: Gen) => g.line((l) => l.ready || l.error, 'ready')

/** Answer the generation's held /hold requests. */
const release = (g: Gen) => g.child.proc.stdin!.write('release\n')

/**
 * Wait until the server has read every byte `client` sent (its socket's
 * receive queue in /proc/net/tcp is empty): the bytes are in the server
 * process, not in the kernel. Linux only.
 */
async function readByServer(client: net.Socket): Promise<void> {
  await new Promise<void>((resolve) => (client.writableLength === 0 ? resolve() : client.once('drain', () => resolve())))
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, '0')
  const local = `0100007F:${hex(client.remotePort!)}`
  const remote = `0100007F:${hex(client.localPort!)}`
  for (let i = 0; i < 400; i++) {
    const line = fs
      .readFileSync('/proc/net/tcp', 'utf8')
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .find((f) => f[1] === local && f[2] === remote)
    if (line && Number.parseInt(line[4].split(':')[1], 16) === 0) return
    await sleep(25)
  }
  throw new Error('the server did not read the bytes sent within 10 s')
}

/** A raw HTTP/1.1 client connection: every response parsed, every close seen. */
class RawHttp {
  readonly socket: net.Socket
  closed = false
  #buffer = ''
  #waiting: Array<{ resolve: (r: { head: string; body: string }) => void; reject: (e: Error) => void }> = []

  constructor(socket: net.Socket) {
    this.socket = socket
    sockets.push(socket)
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => {
      this.#buffer += d
      this.#parse()
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      this.closed = true
      for (const w of this.#waiting.splice(0)) w.reject(new Error('connection closed by the server'))
    })
  }

  /** A TCP port on 127.0.0.1, or a Unix socket path. */
  static async open(to: number | string): Promise<RawHttp> {
    const socket = typeof to === 'number' ? net.connect(to, '127.0.0.1') : net.connect(to)
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
    return new RawHttp(socket)
  }

  #parse(): void {
    for (;;) {
      const end = this.#buffer.indexOf('\r\n\r\n')
      if (end < 0) return
      const head = this.#buffer.slice(0, end)
      const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0)
      if (this.#buffer.length < end + 4 + length) return
      const body = this.#buffer.slice(end + 4, end + 4 + length)
      this.#buffer = this.#buffer.slice(end + 4 + length)
      this.#waiting.shift()?.resolve({ head, body })
    }
  }

  /** The next response on this connection. */
  response(): Promise<{ head: string; body: string; closes: boolean }> {
    return new Promise<{ head: string; body: string }>((resolve, reject) => this.#waiting.push({ resolve, reject })).then((r) => ({
      ...r,
      closes: /\r\nconnection: *close/i.test(r.head),
    }))
  }

  write(bytes: string): void {
    this.socket.write(bytes)
  }

  get(pathname = '/'): Promise<{ head: string; body: string; closes: boolean }> {
    const r = this.response()
    this.write(`GET ${pathname} HTTP/1.1\r\nHost: test\r\n\r\n`)
    return r
  }
}

/** A first generation on a control socket of its own, and `count` keep-alive connections to it that each had a response. */
async function keepAliveClients(count: number): Promise<{ control: string; first: Gen; port: number; clients: RawHttp[] }> {
  const control = tmpPath()
  const first = generation({ control })
  const { port } = await ready(first)
  const clients = await Promise.all(Array.from({ length: count }, () => RawHttp.open(port)))
  for (const c of clients) expect(await c.get()).toMatchObject({ body: String(first.pid), closes: false })
  return { control, first, port, clients }
}

async function handOver(from: Gen, config: Record<string, unknown>): Promise<{ next: Gen; migration: any }> {
  const next = generation(config)
  expect(await ready(next)).toMatchObject({ ready: true, inherited: true })
  const { migration } = await from.line((l) => l.migration, 'the migration summary')
  return { next, migration }
}

describe('handoff: connection migration', () => {
  describe('HTTP/1.1 keep-alive', () => {
    test('idle keep-alive connections move to the successor: no close, no Connection: close, the next request is served there', async () => {
      const { control, first, clients } = await keepAliveClients(20)
      const { next, migration } = await handOver(first, { control })
      expect(migration).toMatchObject({ migrated: { http1: 20 }, drained: {}, batches: 1 })
      for (const c of clients) expect(await c.get()).toMatchObject({ body: String(next.pid), closes: false })
      for (const c of clients) expect(c.closed).toBe(false)
      expect(await first.child.exit).toEqual({ code: 0, signal: null })
      // Still served by the successor after the old generation exited.
      for (const c of clients) expect(await c.get()).toMatchObject({ body: String(next.pid), closes: false })
    })

    test('keep-alive connections on a Unix socket listener move too', async () => {
      const control = tmpPath()
      const unix = tmpPath()
      const first = generation({ control, unix })
      await ready(first)
      const client = await RawHttp.open(unix)
      expect(await client.get()).toMatchObject({ body: String(first.pid) })
      const { next, migration } = await handOver(first, { control, unix })
      expect(migration).toMatchObject({ migrated: { http1: 1 } })
      expect(await client.get()).toMatchObject({ body: String(next.pid), closes: false })
      expect(client.closed).toBe(false)
    })

    test.runIf(process.platform === 'linux')(
      `a next request already begun (bytes read by the old generation, not a whole request): answered there first, then the connection moves${linuxOnly}`,
      async () => {
        const control = tmpPath()
        const first = generation({ control })
        const { port } = await ready(first)
        const client = await RawHttp.open(port)
        expect(await client.get()).toMatchObject({ body: String(first.pid) })
        // Half a request: the old generation reads these bytes into its parser.
        const answer = client.response()
        client.write('GET / HTTP/1.1\r\nHost: te')
        await readByServer(client.socket)
        const next = generation({ control })
        await ready(next)
        await first.line((l) => l.handoff)
        await sleep(200) // migration passes run; this connection is busy and must stay
        client.write('st\r\n\r\n')
        expect(await answer).toMatchObject({ body: String(first.pid), closes: false })
        const { migration } = await first.line((l) => l.migration)
        expect(migration).toMatchObject({ migrated: { http1: 1 } })
        expect(await client.get()).toMatchObject({ body: String(next.pid), closes: false })
        expect(client.closed).toBe(false)
      },
    )

    test('a connection that has sent nothing yet moves; a request sent while it is between generations waits in the kernel and is answered by the successor', async () => {
      const control = tmpPath()
      const first = generation({ control })
      const { port } = await ready(first)
      const fresh = await RawHttp.open(port) // accepted by the old generation, no byte sent
      const used = await RawHttp.open(port)
      expect(await used.get()).toMatchObject({ body: String(first.pid) })
      await sleep(100)
      // The successor adopts the batch, then blocks before it acknowledges (and before it reads).
      const next = generation({ control, holdAckMs: 1000 })
      await next.line((l) => l.received, 'the batch received')
      const during = used.get() // the old generation no longer reads this connection; the successor does not yet
      expect(await fresh.get()).toMatchObject({ body: String(next.pid), closes: false })
      expect(await during).toMatchObject({ body: String(next.pid), closes: false })
      expect((await first.line((l) => l.migration)).migration).toMatchObject({ migrated: { http1: 2 } })
    })

    test('a request in flight: its response is written by the old generation without Connection: close, then the connection moves', async () => {
      const control = tmpPath()
      const first = generation({ control })
      const { port } = await ready(first)
      const client = await RawHttp.open(port)
      const held = client.get('/hold')
      await first.line((l) => l.request === '/hold')
      const next = generation({ control })
      await ready(next)
      await first.line((l) => l.handoff) // migration under way, the response not written yet
      release(first)
      expect(await held).toMatchObject({ body: String(first.pid), closes: false })
      expect((await first.line((l) => l.migration)).migration).toMatchObject({ migrated: { http1: 1 } })
      expect(await client.get()).toMatchObject({ body: String(next.pid), closes: false })
    })

    test('a response written before its request body was read to the end: the connection moves once the body is in', async () => {
      const control = tmpPath()
      const first = generation({ control })
      const { port } = await ready(first)
      const client = await RawHttp.open(port)
      const early = client.response()
      client.write('POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc')
      expect(await early).toMatchObject({ body: String(first.pid), closes: false })
      const next = generation({ control })
      await ready(next)
      await sleep(200)
      client.write('defghij') // the body's end: only now is the connection idle
      const { migration } = await first.line((l) => l.migration)
      expect(migration).toMatchObject({ migrated: { http1: 1 } })
      expect(await client.get()).toMatchObject({ body: String(next.pid), closes: false })
    })

    test.runIf(process.platform === 'linux')(
      `pipelined requests are answered in order by the old generation, then the connection moves${linuxOnly}`,
      async () => {
        const control = tmpPath()
        const first = generation({ control })
        const { port } = await ready(first)
        const client = await RawHttp.open(port)
        const answers = [client.response(), client.response(), client.response()]
        client.write('GET /hold HTTP/1.1\r\nHost: t\r\n\r\nGET /slow?ms=10 HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n')
        await first.line((l) => l.request === '/hold')
        await readByServer(client.socket)
        const next = generation({ control })
        await ready(next)
        await first.line((l) => l.handoff)
        release(first)
        const { migration } = await first.line((l) => l.migration)
        expect(migration).toMatchObject({ migrated: { http1: 1 } })
        for (const a of answers) expect(await a).toMatchObject({ body: String(first.pid), closes: false })
        expect(await client.get()).toMatchObject({ body: String(next.pid), closes: false })
      },
    )

    test('keep-alive clients under load through three handoffs: 0 failed, no client dials again, requests arriving mid-migration are served', async () => {
      const control = tmpPath()
      let current = generation({ control })
      const { port } = await ready(current)
      const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
      let dials = 0
      agent.on('free', () => {})
      const createConnection = agent.createConnection.bind(agent)
      agent.createConnection = ((...args: Parameters<typeof createConnection>) => {
        dials++
        return createConnection(...args)
      }) as typeof agent.createConnection
      const stats = { ok: 0, failed: 0, errors: [] as string[], pids: new Set<string>() }
      let running = true
      const loops = Array.from({ length: 8 }, async () => {
        while (running) {
          try {
            const body = await new Promise<string>((resolve, reject) => {
              http
                .get({ host: '127.0.0.1', port, agent }, (res) => {
                  let b = ''
                  res.on('data', (d) => (b += d))
                  res.on('end', () => resolve(b))
                })
                .on('error', reject)
            })
            stats.pids.add(body)
            stats.ok++
          } catch (e) {
            stats.failed++
            stats.errors.push((e as NodeJS.ErrnoException).code ?? String(e))
          }
        }
      })
      const pids = [current.pid]
      for (let i = 0; i < 3; i++) {
        const before = stats.ok
        while (stats.ok < before + 200) await sleep(10)
        const { next, migration } = await handOver(current, { control })
        expect(Object.values(migration.drained)).toEqual([])
        expect(migration.migrated.http1).toBeGreaterThanOrEqual(1)
        pids.push(next.pid)
        current = next
      }
      const before = stats.ok
      while (stats.ok < before + 200) await sleep(10)
      running = false
      await Promise.all(loops)
      agent.destroy()
      expect(stats.errors).toEqual([])
      expect(stats.failed).toBe(0)
      expect(dials).toBe(8) // each client dialled once: every connection moved, none was closed
      expect([...stats.pids].sort()).toEqual(pids.map(String).sort())
    })

    for (const side of ['old', 'new'] as const) {
      test(`migrateConnections: false on the ${side} generation: keep-alive connections drain as before (Connection: close from the old one)`, async () => {
        const control = tmpPath()
        const first = generation({ control, ...(side === 'old' ? { migrate: false } : {}) })
        const { port } = await ready(first)
        const client = await RawHttp.open(port)
        await client.get()
        const next = generation({ control, ...(side === 'new' ? { migrate: false } : {}) })
        await ready(next)
        expect(await first.line((l) => l.handoff)).toMatchObject({ handoff: { outcome: 'completed' } })
        expect(await client.get()).toMatchObject({ body: String(first.pid), closes: true })
        expect(await first.line((l) => l.migration)).toMatchObject({ migration: { migrated: {}, batches: 0 } })
      })
    }

    test("an http server without Node's connection list (no way to tell idle connections): its connections drain, with a log line", async () => {
      const control = tmpPath()
      const first = generation({ control, noConnectionList: true, log: true })
      const { port } = await ready(first)
      const client = await RawHttp.open(port)
      await client.get()
      const { migration } = await handOver(first, { control })
      expect(migration).toMatchObject({ migrated: {}, drained: { 'unsupported-server': 1 } })
      expect(first.lines.some((l) => /exposes no connection list; its connections drain/.test(l.log ?? ''))).toBe(true)
      expect(await client.get()).toMatchObject({ body: String(first.pid), closes: true })
    })

    test('1,000 idle connections move in one handoff, in batches of at most 253 descriptors', async () => {
      const control = tmpPath()
      const first = generation({ control })
      const { port } = await ready(first)
      const clients: RawHttp[] = []
      for (let i = 0; i < 1000; i += 100) clients.push(...(await Promise.all(Array.from({ length: 100 }, () => RawHttp.open(port)))))
      for (let i = 0; i < 1000; i += 100) {
        const answers = await Promise.all(clients.slice(i, i + 100).map((c) => c.get()))
        expect(answers.every((a) => a.body === String(first.pid))).toBe(true)
      }
      const { next, migration } = await handOver(first, { control })
      expect(migration.migrated).toEqual({ http1: 1000 })
      expect(migration.batches).toBeGreaterThanOrEqual(4) // ceil(1000 / 253)
      const received = next.lines.filter((l) => l.received)
      expect(received.every((l) => l.received.adopted <= 253)).toBe(true)
      for (let i = 0; i < 1000; i += 100) {
        const answers = await Promise.all(clients.slice(i, i + 100).map((c) => c.get()))
        expect(answers.filter((a) => a.body !== String(next.pid) || a.closes)).toEqual([])
      }
      expect(clients.filter((c) => c.closed)).toHaveLength(0)
      expect(await first.child.exit).toEqual({ code: 0, signal: null })
    }, 60_000)
  })

  describe('crashes mid-migration', () => {
    test('the successor SIGKILLed before it acknowledged: the old generation keeps the connections and serves them (Connection: close)', async () => {
      const { control, first, clients } = await keepAliveClients(5)
      const doomed = generation({ control, holdAckMs: 30_000 })
      await doomed.line((l) => l.received, 'the batch received')
      doomed.child.proc.kill('SIGKILL')
      const { migration } = await first.line((l) => l.migration)
      expect(migration).toMatchObject({ migrated: {}, drained: { 'successor-gone': 5 } })
      for (const c of clients) expect(await c.get()).toMatchObject({ body: String(first.pid), closes: true })
      expect(await first.child.exit).toEqual({ code: 0, signal: null })
    })

    test('the old generation SIGKILLed after sending, before the ack: the successor has the connections and serves on, leaking nothing', async () => {
      const { control, first, port, clients } = await keepAliveClients(5)
      const next = generation({ control, holdAckMs: 1000 })
      await next.line((l) => l.received, 'the batch received')
      first.child.proc.kill('SIGKILL')
      expect((await first.child.exit).signal).toBe('SIGKILL')
      await ready(next)
      for (const c of clients) expect(await c.get()).toMatchObject({ body: String(next.pid), closes: false })
      expect(clients.filter((c) => c.closed)).toHaveLength(0)
      // The successor's descriptors for these connections are exactly the
      // adopted sockets: closing the 5 clients takes its count down by 5.
      const probe = await RawHttp.open(port)
      const withClients = Number((await probe.get('/fds')).body)
      for (const c of clients) c.socket.end()
      let now = withClients
      for (let i = 0; i < 100 && now > withClients - 5; i++) {
        await sleep(50)
        now = Number((await probe.get('/fds')).body)
      }
      expect(now).toBe(withClients - 5)
      // And it still hands over: a further generation takes over from it.
      const third = generation({ control })
      expect(await ready(third)).toMatchObject({ ready: true, port })
    })
  })

  describe('connections with app state (generation.migrate / onMigratedConnection)', () => {
    async function lineClient(port: number) {
      const socket = net.connect(port, '127.0.0.1')
      sockets.push(socket)
      await new Promise<void>((resolve) => socket.once('connect', resolve))
      socket.setEncoding('latin1')
      let buffer = ''
      let ended = false
      const waiters: Array<() => void> = []
      socket.on('data', (d: string) => {
        buffer += d
        for (const w of waiters.splice(0)) w()
      })
      socket.on('end', () => {
        ended = true
        for (const w of waiters.splice(0)) w()
      })
      return {
        socket,
        get ended() {
          return ended
        },
        async line(): Promise<string> {
          for (;;) {
            const nl = buffer.indexOf('\n')
            if (nl >= 0) {
              const l = buffer.slice(0, nl)
              buffer = buffer.slice(nl + 1)
              return l
            }
            if (ended) throw new Error('ended')
            await new Promise<void>((r) => waiters.push(r))
          }
        },
      }
    }

    test('state and the bytes read but not processed (half a line) move with the socket', async () => {
      const control = tmpPath()
      const first = generation({ control, raw: true })
      const { raw } = await ready(first)
      const client = await lineClient(raw)
      client.socket.write('one\n')
      expect(await client.line()).toBe(`${first.pid} 1 one`)
      client.socket.write('ha')
      await first.line((l) => l.rawPartial === 'ha') // in the app's line buffer
      const { next, migration } = await handOver(first, { control, raw: true })
      expect(migration.migrated).toMatchObject({ counter: 1 })
      client.socket.write('lf\n')
      expect(await client.line()).toBe(`${next.pid} 2 half`)
      client.socket.write('three\n')
      expect(await client.line()).toBe(`${next.pid} 3 three`)
      expect(client.ended).toBe(false)
    })

    test('a state version the successor refuses: the connection stays with the old generation and drains there', async () => {
      const control = tmpPath()
      const first = generation({ control, raw: true, stateVersion: 1 })
      const { raw } = await ready(first)
      const client = await lineClient(raw)
      client.socket.write('one\n')
      expect(await client.line()).toBe(`${first.pid} 1 one`)
      const { migration } = await handOver(first, { control, raw: true, acceptVersions: [2] })
      expect(migration).toMatchObject({ migrated: {}, drained: { declined: 1 } })
      expect(await first.line((l) => l.rawMigrated)).toMatchObject({ rawMigrated: { migrated: false, reason: 'declined' } })
      client.socket.write('two\n')
      expect(await client.line()).toBe(`${first.pid} 2 two`)
      await expect(client.line()).rejects.toThrow('ended') // drained: the old generation ends it
    })
  })

  describe('WebSockets (fdpass/handoff/ws)', () => {
    /** A client-to-server frame, masked as RFC 6455 requires. */
    function frame(fin: boolean, opcode: number, payload: Buffer): Buffer {
      const mask = Buffer.from([0x12, 0x34, 0x56, 0x78])
      const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))
      const len = payload.length < 126 ? Buffer.from([0x80 | payload.length]) : Buffer.from([0x80 | 126, payload.length >> 8, payload.length & 0xff])
      return Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode]), len, mask, masked])
    }

    async function wsClient(port: number, options: Record<string, unknown> = { perMessageDeflate: false }) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}`, options)
      const messages: string[] = []
      const waiters: Array<() => void> = []
      let closed = false
      ws.on('message', (d) => {
        messages.push(String(d))
        for (const w of waiters.splice(0)) w()
      })
      ws.on('close', () => (closed = true))
      ws.on('error', () => {})
      await new Promise<void>((resolve, reject) => ws.once('open', resolve).once('error', reject))
      return {
        ws,
        get closed() {
          return closed
        },
        raw: (bytes: Buffer) => (ws as unknown as { _socket: net.Socket })._socket.write(bytes),
        async next(): Promise<string> {
          while (messages.length === 0) await new Promise<void>((r) => waiters.push(r))
          return messages.shift()!
        },
      }
    }

    test.runIf(process.platform === 'linux')(
      `frames half read by the old generation (cut in the header, the length, the mask, the payload, and a fragmented message) arrive whole on the successor: none lost or duplicated, no close${linuxOnly}`,
      async () => {
        const control = tmpPath()
        const first = generation({ control, ws: true })
        const { port } = await ready(first)
        const payload = Buffer.from('x'.repeat(190) + '-the-end')
        const whole = frame(true, 1, payload) // 2 + 2 (16-bit length) + 4 (mask) bytes of header
        const cuts = [1, 2, 3, 6, 9, 100]
        const clients = await Promise.all(cuts.map(() => wsClient(port)))
        const fragmented = await wsClient(port)
        for (const c of [...clients, fragmented]) {
          c.ws.send('before')
          expect(await c.next()).toBe(`${first.pid} before`)
        }
        cuts.forEach((cut, i) => clients[i].raw(whole.subarray(0, cut)))
        const second = frame(true, 0, Buffer.from('ment-end'))
        fragmented.raw(Buffer.concat([frame(false, 1, Buffer.from('frag-')), second.subarray(0, 9)]))
        // The old generation's receivers hold these bytes.
        for (const c of [...clients, fragmented]) await readByServer((c.ws as unknown as { _socket: net.Socket })._socket)
        const { next, migration } = await handOver(first, { control, ws: true })
        expect(migration.migrated).toEqual({ ws: cuts.length + 1 })
        expect((await first.line((l) => l.wsMigrated)).wsMigrated.every((r: { migrated: boolean }) => r.migrated)).toBe(true)
        cuts.forEach((cut, i) => clients[i].raw(whole.subarray(cut)))
        fragmented.raw(second.subarray(9))
        for (const c of clients) expect(await c.next()).toBe(`${next.pid} ${payload}`)
        expect(await fragmented.next()).toBe(`${next.pid} frag-ment-end`)
        for (const c of [...clients, fragmented]) {
          c.ws.send('after')
          expect(await c.next()).toBe(`${next.pid} after`)
          expect(c.closed).toBe(false)
        }
        expect(await first.child.exit).toEqual({ code: 0, signal: null })
        // Nothing arrived twice: after the old generation exited, the next answer is the next message's.
        for (const c of [...clients, fragmented]) {
          c.ws.send('last')
          expect(await c.next()).toBe(`${next.pid} last`)
          c.ws.close()
        }
      },
    )

    test('permessage-deflate negotiated: the WebSocket is not migrated, it drains on the old generation', async () => {
      const control = tmpPath()
      const first = generation({ control, ws: true, wsDeflate: true })
      const { port } = await ready(first)
      const client = await wsClient(port, {})
      expect(client.ws.extensions).toContain('permessage-deflate')
      const { migration } = await handOver(first, { control, ws: true, wsDeflate: true })
      expect(migration.migrated).toEqual({})
      expect((await first.line((l) => l.wsMigrated)).wsMigrated).toEqual([{ migrated: false, reason: 'permessage-deflate' }])
      client.ws.send('still here')
      expect(await client.next()).toBe(`${first.pid} still here`)
      client.ws.close()
    })
  })

  describe('what cannot move drains', () => {
    test('HTTPS (TLS) connections drain on the old generation with Connection: close; plain HTTP ones move in the same handoff', async () => {
      const dir = tmpPath('tls')
      fs.mkdirSync(dir)
      const key = path.join(dir, 'key.pem')
      const cert = path.join(dir, 'cert.pem')
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          key,
          '-out',
          cert,
          '-subj',
          '/CN=localhost',
          '-days',
          '1',
        ],
        { stdio: 'ignore' },
      )
      const tls = { key: fs.readFileSync(key, 'utf8'), cert: fs.readFileSync(cert, 'utf8') }
      const control = tmpPath()
      const first = generation({ control, tls })
      const { port, tls: tlsPort } = await ready(first)
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false })
      const get = () =>
        new Promise<{ body: string; connection?: string }>((resolve, reject) => {
          https
            .get({ host: '127.0.0.1', port: tlsPort, agent }, (res) => {
              let body = ''
              res.on('data', (d) => (body += d))
              res.on('end', () => resolve({ body, connection: res.headers.connection }))
            })
            .on('error', reject)
        })
      expect(await get()).toMatchObject({ body: String(first.pid), connection: 'keep-alive' })
      const plain = await RawHttp.open(port)
      await plain.get()
      const { next, migration } = await handOver(first, { control, tls })
      expect(migration).toMatchObject({ migrated: { http1: 1 }, drained: { tls: 1 } })
      // The kept TLS connection is still the old generation's, which answers and closes it.
      expect(await get()).toMatchObject({ body: String(first.pid), connection: 'close' })
      expect(await get()).toMatchObject({ body: String(next.pid) })
      expect(await plain.get()).toMatchObject({ body: String(next.pid), closes: false })
      agent.destroy()
    })

    test('HTTP/2 sessions get a GOAWAY; their in-flight stream completes on the old generation; a new session reaches the successor', async () => {
      const control = tmpPath()
      const first = generation({ control, h2: true })
      const { h2 } = await ready(first)
      const session = http2.connect(`http://127.0.0.1:${h2}`)
      session.on('error', () => {})
      const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()))
      const request = (s: http2.ClientHttp2Session, p: string) =>
        new Promise<string>((resolve, reject) => {
          const stream = s.request({ ':path': p })
          let body = ''
          stream.setEncoding('utf8')
          stream.on('data', (d) => (body += d))
          stream.on('end', () => resolve(body))
          stream.on('error', reject)
        })
      expect(await request(session, '/')).toBe(String(first.pid))
      const inFlight = request(session, '/?hold')
      await first.line((l) => l.request === '/?hold')
      const { next, migration } = await handOver(first, { control, h2: true })
      expect(migration).toMatchObject({ drained: { http2: 1 } })
      await goaway
      release(first)
      expect(await inFlight).toBe(String(first.pid))
      session.close()
      const fresh = http2.connect(`http://127.0.0.1:${h2}`)
      expect(await request(fresh, '/')).toBe(String(next.pid))
      fresh.close()
    })
  })
})
