// Exchange fds with Python's socket.send_fds/recv_fds, as docs/wire-format.md "Other languages" shows.
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import { afterEach, describe, expect, test } from 'vitest'
import { listen, runtime } from '..'
import { cleanup, fixture, identity, linuxOnly, tmpPath, wrap } from './helpers'

afterEach(cleanup)

describe('Python', () => {
  test.runIf(runtime.supportsSeqpacket)(`socket.send_fds to Node and recv_fds from Node over seqpacket${linuxOnly}`, async () => {
    const address = tmpPath()
    const server = await listen(address, { type: 'seqpacket' })
    const py = wrap(spawn('python3', [fixture('python-peer.py'), address], { stdio: ['ignore', 'pipe', 'pipe'] }))
    const socket = await server.accept()
    const { data, fds } = await socket.receive()
    expect(data.toString()).toBe('hello from python')
    expect(fds[0].kind()).toBe('pipe')
    let piped = ''
    for await (const chunk of fds[0].createReadStream()) piped += chunk
    expect(piped).toBe('written by python')
    const file = tmpPath('file')
    fs.writeFileSync(file, 'from node')
    const fd = fs.openSync(file, 'r')
    await socket.send('back at you', [fd])
    expect(await py.next()).toEqual({ data: 'back at you', ...identity(fd), ctrunc: false, content: 'from node' })
    expect((await py.exit).code).toBe(0)
    fs.closeSync(fd)
    socket.close()
    await server.close()
  })
})
