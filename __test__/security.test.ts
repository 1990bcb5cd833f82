// Who may connect, what may arrive, and where socket files may live.
import { once } from 'node:events'
import * as fs from 'node:fs'
import * as net from 'node:net'
import { afterEach, describe, expect, test } from 'vitest'
import { connect, listen, runtime, socketpair, type PeerCredentials } from '..'
import { cleanup, closeAll, expectDelivered, tmpPath } from './helpers'

afterEach(cleanup)

describe('peer-credentials filter', () => {
  test('a uid not allowed is refused before anything is read or sent', async () => {
    const address = tmpPath()
    const server = await listen(address, { allow: { uids: [process.getuid!() + 1] } })
    const refused = once(server, 'refused')
    let connections = 0
    server.on('connection', () => connections++)
    const client = await connect(address)
    const [peer] = (await refused) as [PeerCredentials]
    expect(peer).toEqual({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() })
    await once(client, 'end')
    expect(connections).toBe(0)
    await server.close()
  })

  test('an allowed uid, gid or callback gets through', async () => {
    for (const allow of [{ uids: [process.getuid!()] }, { gids: [process.getgid!()] }, (p: PeerCredentials) => p.pid === process.pid]) {
      const address = tmpPath()
      const server = await listen(address, { allow })
      const client = await connect(address)
      const socket = await server.accept()
      await expectDelivered(client, socket, 'allowed')
      await closeAll(server, client, socket)
    }
  })

  test.runIf(runtime.supportsAbstract)(
    `abstract sockets are protected by the filter${runtime.supportsAbstract ? '' : ' (skipped: no abstract sockets here)'}`,
    async () => {
      const address = { abstract: `fdpass-sec-${process.pid}` }
      const server = await listen(address, { allow: () => false })
      const refused = once(server, 'refused')
      const client = await connect(address)
      await refused
      await once(client, 'end')
      await server.close()
    },
  )

  test('a bad filter is refused synchronously', () => {
    expect(() => listen(tmpPath(), { allow: {} as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
    expect(() => listen(tmpPath(), { allow: { uids: ['0'] } as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
  })
})

describe('descriptor-kind filter', () => {
  test('a message with a kind not in acceptFds is rejected, its fds closed, and the socket goes on', async () => {
    const [a, b] = socketpair({ acceptFds: ['file'] })
    const tcp = net.createServer().listen(0, '127.0.0.1')
    await once(tcp, 'listening')
    const file = fs.openSync(tmpPath('file'), 'w')
    await a.send('a listener', [file, tcp])
    await a.send('a file', [file])
    await expect(b.receive()).rejects.toMatchObject({ code: 'ERR_FDPASS_FD_KIND_REJECTED', kinds: ['socket'], fdsReceived: 2 })
    const ok = await b.receive()
    expect(ok.data.toString()).toBe('a file')
    expect(ok.fds[0].kind()).toBe('file')
    ok.fds[0].close()
    fs.closeSync(file)
    tcp.close()
    a.close()
    b.close()
  })
})

describe('socket directories', () => {
  test('a directory other users can write is refused, unless sticky or checkDirectory is false', async () => {
    const dir = tmpPath('dir')
    fs.mkdirSync(dir)
    fs.chmodSync(dir, 0o777)
    await expect(listen(`${dir}/s.sock`)).rejects.toMatchObject({ code: 'ERR_FDPASS_INSECURE_DIRECTORY' })
    const relaxed = await listen(`${dir}/s.sock`, { checkDirectory: false })
    await relaxed.close()
    fs.chmodSync(dir, 0o1777)
    const sticky = await listen(`${dir}/s.sock`)
    await sticky.close()
  })
})
