// ReceivedFd ownership and its converters to Node objects; Node objects as fds.
import * as dgram from 'node:dgram'
import { once } from 'node:events'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import { afterEach, describe, expect, test } from 'vitest'
import { socketpair, type ReceivedFd } from '..'
import { cleanup, identity, tmpPath } from './helpers'

afterEach(cleanup)

const devnull = () => fs.openSync('/dev/null', 'r')

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
      http.get({ host: '127.0.0.1', port }, (res) => {
        let s = ''
        res.on('data', (d) => (s += d))
        res.on('end', () => resolve(s))
      }).on('error', reject)
    })
    expect(body).toBe('received')
    server.close()
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

  test('a converter refuses the wrong kind and keeps ownership', async () => {
    const nul = devnull()
    const [fd] = await pass([nul])
    fs.closeSync(nul)
    expect(() => fd.toNetServer()).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_FD' }))
    expect(fd.closed).toBe(false)
    fd.close()
  })
})
