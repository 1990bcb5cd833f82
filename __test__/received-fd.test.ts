// ReceivedFd ownership and its converters to Node objects; Node objects as fds.
import * as dgram from 'node:dgram'
import { once } from 'node:events'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import { Duplex } from 'node:stream'
import * as tls from 'node:tls'
import { tmpdir } from 'node:os'
import { afterEach, describe, expect, test } from 'vitest'
import { spawnSync } from 'node:child_process'
import { listen, socketpair, type ReceivedFd } from '..'
import { cleanup, fixture, identity, openFdCount, run, tmpPath, waitFor } from './helpers'

afterEach(cleanup)

const devnull = () => fs.openSync('/dev/null', 'r')

/** A listening net.Server, a net.Socket connected to it and a bound dgram.Socket: the Node objects that own a descriptor. */
async function openNetObjects(): Promise<{ tcp: net.Server; client: net.Socket; udp: dgram.Socket }> {
  const tcp = net.createServer().listen(0, '127.0.0.1')
  await once(tcp, 'listening')
  const client = net.connect((tcp.address() as net.AddressInfo).port, '127.0.0.1')
  await once(client, 'connect')
  const udp = dgram.createSocket('udp4')
  udp.bind(0, '127.0.0.1')
  await once(udp, 'listening')
  return { tcp, client, udp }
}

function closeNetObjects({ tcp, client, udp }: { tcp: net.Server; client: net.Socket; udp: dgram.Socket }): void {
  client.destroy()
  tcp.close()
  udp.close()
}

async function pass(fd: Parameters<ReturnType<typeof socketpair>[0]['send']>[1]): Promise<ReceivedFd[]> {
  const [a, b] = socketpair()
  await a.send('x', fd)
  const m = await b.receive()
  a.close()
  b.close()
  return m.fds
}

describe('ReceivedFd', () => {
  test('close() is idempotent; fd throws afterwards; release() hands over the number', async () => {
    const nul = devnull()
    const [one, two] = await pass([nul, nul])
    fs.closeSync(nul)
    const n = one.fd
    one.close()
    one.close()
    expect(one.closed).toBe(true)
    expect(() => one.fd).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_FD_CLOSED' }))
    expect(() => fs.fstatSync(n)).toThrow() // really closed
    const m = two.release()
    expect(two.closed).toBe(true)
    expect(fs.fstatSync(m).isCharacterDevice()).toBe(true) // still open: ours now
    fs.closeSync(m)
  })

  test('after release() the ReceivedFd is inert: close() leaves the number alone, fd/stat throw ERR_FDPASS_FD_CLOSED', async () => {
    const nul = devnull()
    const [r] = await pass([nul])
    fs.closeSync(nul)
    const before = openFdCount()
    const n = r.release()
    r.close() // not ours any more: must not close n
    expect(fs.fstatSync(n).isCharacterDevice()).toBe(true)
    expect(() => r.fd).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_FD_CLOSED' }))
    expect(() => r.stat()).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_FD_CLOSED' }))
    expect(() => r.release()).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_FD_CLOSED' }))
    expect(() => r.toNetSocket()).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_FD_CLOSED' }))
    expect(openFdCount()).toBe(before)
    fs.closeSync(n)
  })

  test('kind() tells files, directories, pipes, sockets and devices apart', async () => {
    const dir = fs.openSync(tmpdir(), 'r')
    const [x, y] = socketpair()
    const nul = devnull()
    const file = fs.openSync(__filename, 'r')
    const got = await pass([file, dir, x, nul])
    expect(got.map((f) => f.kind())).toEqual(['file', 'directory', 'socket', 'character-device'])
    for (const f of got) f.close()
    for (const fd of [dir, nul, file]) fs.closeSync(fd)
    x.close()
    y.close()
  })

  test('Symbol.dispose closes; stat() and kind() describe it', async () => {
    const p = tmpPath('file')
    fs.writeFileSync(p, 'abc')
    const fd = fs.openSync(p, 'r')
    const [r] = await pass([fd])
    expect(r.kind()).toBe('file')
    expect(r.stat()).toMatchObject({ kind: 'file', size: 3, cloexec: true, ...identity(fd) })
    r[Symbol.dispose]()
    expect(r.closed).toBe(true)
    fs.closeSync(fd)
  })
})

describe('converters', () => {
  test('toNetServer(): a received listening TCP socket serves HTTP', async () => {
    const original = net.createServer().listen(0, '127.0.0.1')
    await once(original, 'listening')
    const { port } = original.address() as net.AddressInfo
    const [fd] = await pass([original])
    original.close() // the received copy keeps the kernel socket listening
    const server = fd.toNetServer()
    expect(fd.closed).toBe(true)
    server.on('connection', (c) => c.end('HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nreceived'))
    await once(server, 'listening')
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port }, (res) => {
          let s = ''
          res.on('data', (d) => (s += d))
          res.on('end', () => resolve(s))
        })
        .on('error', reject)
    })
    expect(body).toBe('received')
    server.close()
  })

  test("toNetServer(): a child's net.Server, sent as the object itself, serves real HTTP here after the child exits", async () => {
    const address = tmpPath()
    const server = await listen(address)
    const child = run('tcp-server-sender.js', [address])
    const socket = await server.accept()
    const m = await socket.receive()
    const { port, pid } = JSON.parse(m.data.toString())
    expect(pid).toBe(child.proc.pid)
    expect(m.fds).toHaveLength(1)
    expect(m.fds[0].kind()).toBe('socket')
    // The child closed its copy and exited: only this process holds the listening socket now.
    expect(await child.exit).toEqual({ code: 0, signal: null })
    const web = http.createServer((req, res) => res.end(`served here: ${req.method} ${req.url}`))
    const listener = m.fds[0].toNetServer({}, (c) => web.emit('connection', c))
    expect(m.fds[0].closed).toBe(true)
    await waitFor(listener, 'listening')
    expect((listener.address() as net.AddressInfo).port).toBe(port)
    const res = await fetch(`http://127.0.0.1:${port}/hello`)
    expect(res.status).toBe(200)
    expect(await res.text()).toBe('served here: GET /hello')
    listener.close()
    web.closeAllConnections()
    socket.close()
    await server.close()
  })

  test('toNetSocket() on a received Unix socket (an FdSocket end): bytes flow to the other end', async () => {
    const [x, y] = socketpair({ raw: true })
    const [fd] = await pass([x])
    x.close()
    const sock = fd.toNetSocket()
    sock.write('from a net.Socket')
    const m = await y.receive()
    expect(m.data.toString()).toBe('from a net.Socket')
    sock.destroy()
    y.close()
  })

  test('http.Server.listen({ fd: received.release() }) works the same', async () => {
    const original = net.createServer().listen(0, '127.0.0.1')
    await once(original, 'listening')
    const { port } = original.address() as net.AddressInfo
    const [fd] = await pass([original])
    original.close()
    const server = http.createServer((_q, r) => r.end('via http'))
    server.listen({ fd: fd.release() })
    await once(server, 'listening')
    const res = await fetch(`http://127.0.0.1:${port}/`)
    expect(await res.text()).toBe('via http')
    server.close()
    server.closeAllConnections()
  })

  test('toNetSocket(): a received connected TCP socket', async () => {
    const server = net.createServer((c) => c.on('data', (d) => c.end(`echo: ${d}`)))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
    await once(client, 'connect')
    const [fd] = await pass([client])
    client.destroy()
    const socket = fd.toNetSocket()
    let got = ''
    socket.on('data', (d) => (got += d))
    socket.write('over the received socket')
    await once(socket, 'end')
    expect(got).toBe('echo: over the received socket')
    socket.destroy()
    server.close()
  })

  test('toDgramSocket(): a received bound UDP socket receives', async () => {
    const original = dgram.createSocket('udp4')
    original.bind(0, '127.0.0.1')
    await once(original, 'listening')
    const { port } = original.address()
    const [fd] = await pass([original])
    original.close()
    const socket = fd.toDgramSocket('udp4')
    const sender = dgram.createSocket('udp4')
    const got = once(socket, 'message')
    sender.send('ping', port, '127.0.0.1')
    const [msg] = await got
    expect(msg.toString()).toBe('ping')
    sender.close()
    socket.close()
  })

  test('createReadStream() and createWriteStream() on received files', async () => {
    const p = tmpPath('file')
    fs.writeFileSync(p, 'streamed')
    const fd = fs.openSync(p, 'r')
    const [r] = await pass([fd])
    fs.closeSync(fd)
    let s = ''
    for await (const chunk of r.createReadStream()) s += chunk
    expect(s).toBe('streamed')
    const q = tmpPath('file')
    const wfd = fs.openSync(q, 'w')
    const [w] = await pass([wfd])
    fs.closeSync(wfd)
    const ws = w.createWriteStream()
    ws.end('written')
    await once(ws, 'close')
    expect(fs.readFileSync(q, 'utf8')).toBe('written')
  })

  test('FileHandle, a ReceivedFd and an FdSocket can be sent as descriptors', async () => {
    const p = tmpPath('file')
    fs.writeFileSync(p, 'handle')
    const handle = await fs.promises.open(p, 'r')
    const [fromHandle] = await pass([handle])
    expect(identity(fromHandle.fd)).toEqual(identity(handle.fd))
    const [again] = await pass([fromHandle])
    expect(identity(again.fd)).toEqual(identity(handle.fd))
    const [x, y] = socketpair()
    const [sock] = await pass([x])
    expect(sock.kind()).toBe('socket')
    for (const f of [fromHandle, again, sock]) f.close()
    await handle.close()
    x.close()
    y.close()
  })

  test('every kind of descriptor owner can be sent: number, net.Server, net.Socket, dgram.Socket, FileHandle, ReceivedFd, FdSocket, FdServer, { fd }', async () => {
    const { tcp, client, udp } = await openNetObjects()
    const handle = await fs.promises.open(__filename, 'r')
    const [x, y] = socketpair()
    const fdServer = await listen(tmpPath())
    const nul = devnull()
    const [received] = await pass([nul])
    const owners = [nul, tcp, client, udp, handle, received, x, fdServer, { fd: nul }]
    const got = await pass(owners as never)
    expect(got.map((f) => f.kind())).toEqual([
      'character-device',
      'socket',
      'socket',
      'socket',
      'file',
      'character-device',
      'socket',
      'socket',
      'character-device',
    ])
    expect(identity(got[4].fd)).toEqual(identity(handle.fd))
    expect(identity(got[1].fd)).toEqual(identity((tcp as unknown as { _handle: { fd: number } })._handle.fd))
    for (const f of got) f.close()
    received.close()
    fs.closeSync(nul)
    await handle.close()
    closeNetObjects({ tcp, client, udp })
    x.close()
    y.close()
    await fdServer.close()
  })

  test('owners without a descriptor (not listening, not bound, closed) are ERR_FDPASS_INVALID_FD, thrown synchronously', async () => {
    const [a, b] = socketpair()
    const closedHandle = await fs.promises.open(__filename, 'r')
    await closedHandle.close()
    const [c, d] = socketpair()
    c.close()
    const closedServer = net.createServer().listen(0, '127.0.0.1')
    await once(closedServer, 'listening')
    const destroyedSocket = net.connect((closedServer.address() as net.AddressInfo).port, '127.0.0.1')
    await once(destroyedSocket, 'connect')
    destroyedSocket.destroy()
    await new Promise((resolve) => closedServer.close(resolve))
    const closedUdp = dgram.createSocket('udp4')
    closedUdp.bind(0, '127.0.0.1')
    await once(closedUdp, 'listening')
    await new Promise<void>((resolve) => closedUdp.close(resolve))
    // TLS over a JavaScript stream: open, and its handle says it has no descriptor (-1).
    const overStream = new tls.TLSSocket(new Duplex({ read() {}, write: (_chunk, _encoding, done) => done() }))
    const owners = [net.createServer(), new net.Socket(), dgram.createSocket('udp4'), closedServer, destroyedSocket, closedUdp, overStream, closedHandle, c]
    for (const owner of owners) {
      expect(() => a.send('x', [owner as never])).toThrow(
        expect.objectContaining({ code: 'ERR_FDPASS_INVALID_FD', message: expect.stringContaining('has no open descriptor') }),
      )
    }
    const nul = devnull()
    const [r] = await pass([nul])
    fs.closeSync(nul)
    r.close()
    expect(() => a.send('x', [r])).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_FD_CLOSED' }))
    overStream.destroy()
    for (const s of [a, b, d]) s.close()
  })

  // A Node that moves its internals: the handle is no longer where fdpass
  // looks, while the public state (listening, pending, address()) still
  // follows it, as Node's own getters would. Each object is restored and
  // sent afterwards, so the test also shows the error came from the move.
  test('a listening net.Server, connected net.Socket or bound dgram.Socket whose handle fdpass cannot find is ERR_FDPASS_UNSUPPORTED naming the Node version', async () => {
    const { tcp, client, udp } = await openNetObjects()
    const [a, b] = socketpair()
    const unsupported = (what: string, where: string) =>
      expect.objectContaining({
        code: 'ERR_FDPASS_UNSUPPORTED',
        message: expect.stringMatching(
          new RegExp(
            `^fds\\[0\\] is ${what}, but fdpass found no descriptor in ${where}: Node ${process.version.replace(/\./g, '\\.')} keeps it somewhere fdpass does not know\\. Send a FileHandle, an FdSocket/FdServer`,
          ),
        ),
      })

    const moveHandle = (obj: net.Server | net.Socket, publicKey: 'listening' | 'pending', publicValue: (moved: unknown) => boolean) => {
      const moved = (obj as unknown as { _handle: unknown })._handle
      expect(moved).toBeTruthy()
      Object.defineProperty(obj, '_handle', { value: undefined, configurable: true, writable: true })
      Object.defineProperty(obj, publicKey, { get: () => publicValue(moved), configurable: true })
      return () => {
        delete (obj as unknown as Record<string, unknown>)[publicKey]
        Object.defineProperty(obj, '_handle', { value: moved, configurable: true, writable: true, enumerable: true })
      }
    }
    let restore = moveHandle(tcp, 'listening', (moved) => moved !== null)
    expect(() => a.send('x', [tcp])).toThrow(unsupported('a listening net.Server', 'its `_handle`'))
    restore()
    restore = moveHandle(client, 'pending', (moved) => moved === null || client.connecting)
    expect(() => a.send('x', [client])).toThrow(unsupported('a connected net.Socket', 'its `_handle`'))
    restore()

    // dgram's state moves to another symbol; address() reads it there, as Node's would.
    const stateKey = Object.getOwnPropertySymbols(udp).find((k) => k.description === 'state symbol')!
    const state = (udp as unknown as Record<symbol, unknown>)[stateKey]
    const movedKey = Symbol('moved state')
    delete (udp as unknown as Record<symbol, unknown>)[stateKey]
    Object.assign(udp, { [movedKey]: state, address: () => dgram.Socket.prototype.address.call({ [stateKey]: state } as never) })
    expect(() => a.send('x', [udp])).toThrow(unsupported('a bound dgram.Socket', "the handle in its 'state symbol' property"))
    delete (udp as unknown as Record<symbol | string, unknown>)[movedKey]
    delete (udp as unknown as Record<string, unknown>).address
    ;(udp as unknown as Record<symbol, unknown>)[stateKey] = state

    await a.send('restored', [tcp, client, udp])
    const m = await b.receive()
    expect(m.fds.map((f) => f.kind())).toEqual(['socket', 'socket', 'socket'])
    for (const f of m.fds) f.close()
    closeNetObjects({ tcp, client, udp })
    a.close()
    b.close()
  })

  // dgram.Socket's `_handle` is a deprecated getter (DEP0112): fdOf must not touch it.
  test('sending Node objects emits no process warning (dgram.Socket would trigger DEP0112)', () => {
    const r = spawnSync(process.execPath, [fixture('warnings.js')], { encoding: 'utf8', env: process.env })
    const out = JSON.parse(r.stdout)
    expect(out.sent.map((x: { kind: string }) => x.kind)).toEqual(['socket', 'socket', 'socket', 'file'])
    expect(out.warnings).toEqual([])
  })

  test('a converter refuses the wrong kind and keeps ownership', async () => {
    const nul = devnull()
    const [fd] = await pass([nul])
    fs.closeSync(nul)
    expect(() => fd.toNetServer()).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_FD' }))
    expect(fd.closed).toBe(false)
    fd.close()
  })
})
