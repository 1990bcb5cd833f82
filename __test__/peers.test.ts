// Node ↔ the Python, Go and C reference peers (examples/peers), both
// directions, on every socket type and on streams with and without
// fdpass's framing. Every descriptor is checked to be the file that was
// sent (dev and inode, and its content where the peer reads it).
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as readline from 'node:readline'
import { afterEach, beforeAll, describe, expect, test } from 'vitest'
import { bind, connect, listen, type SocketType } from '..'
import { cleanup, identity, root, tmpPath } from './helpers'

afterEach(cleanup)

const peersDir = path.join(root, 'examples/peers')
const buildDir = path.join(peersDir, '.build')
// The reference peers use Linux flags (MSG_CMSG_CLOEXEC, accept4, autobind).
const onLinux = process.platform === 'linux'
const has = (cmd: string, arg: string) => spawnSync(cmd, [arg]).status === 0

const peers: Record<string, { available: boolean; why: string; cmd: () => string[] }> = {
  python: {
    available: onLinux && has('python3', '--version'),
    why: onLinux ? 'python3 is not installed' : 'the peers are Linux-only',
    cmd: () => ['python3', path.join(peersDir, 'python/fdpass_peer.py')],
  },
  c: {
    available: onLinux && has('cc', '--version'),
    why: onLinux ? 'no C compiler (cc)' : 'the peers are Linux-only',
    cmd: () => [path.join(buildDir, 'fdpass_peer')],
  },
  go: {
    available: onLinux && has('go', 'version'),
    why: onLinux ? 'Go is not installed' : 'the peers are Linux-only',
    cmd: () => [path.join(buildDir, 'fdpass-peer-go')],
  },
}

beforeAll(() => {
  fs.mkdirSync(buildDir, { recursive: true })
  if (peers.c.available) {
    const r = spawnSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', path.join(buildDir, 'fdpass_peer'), path.join(peersDir, 'c/fdpass_peer.c')], {
      encoding: 'utf8',
    })
    if (r.status !== 0) throw new Error(`building the C peer failed:\n${r.stderr}`)
  }
  if (peers.go.available) {
    const r = spawnSync('go', ['build', '-o', path.join(buildDir, 'fdpass-peer-go'), './cmd/fdpass-peer'], {
      cwd: path.join(peersDir, 'go'),
      encoding: 'utf8',
      env: { ...process.env, GOFLAGS: '-mod=mod' },
    })
    if (r.status !== 0) throw new Error(`building the Go peer failed:\n${r.stderr}`)
  }
}, 180_000)

const modes: Array<{ type: SocketType; raw: boolean }> = [
  { type: 'stream', raw: false },
  { type: 'stream', raw: true },
  { type: 'seqpacket', raw: false },
  { type: 'dgram', raw: false },
]
const COUNT = 20
const FDS = 2

function startPeer(name: string, args: string[]) {
  const [cmd, ...pre] = peers[name].cmd()
  const proc = spawn(cmd, [...pre, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  const listening = new Promise<void>((resolve) =>
    proc.stderr.on('data', (d) => {
      stderr += d
      if (stderr.includes('listening')) resolve()
    }),
  )
  const lines: unknown[] = []
  const waiting: Array<(v: unknown) => void> = []
  readline.createInterface({ input: proc.stdout }).on('line', (l) => {
    if (!l.trim()) return
    const v = JSON.parse(l)
    if (waiting.length) waiting.shift()!(v)
    else lines.push(v)
  })
  const exit = new Promise<number | null>((r) => proc.on('exit', r))
  const failed = exit.then((code) => (code === 0 ? new Promise<never>(() => {}) : Promise.reject(new Error(`${name} peer exited ${code}: ${stderr}`))))
  failed.catch(() => {})
  return {
    next: () => Promise.race([lines.length ? Promise.resolve(lines.shift()) : new Promise((r) => waiting.push(r)), failed]) as Promise<any>,
    listening: Promise.race([listening, failed]),
    exit,
    failed,
    stderr: () => stderr,
  }
}

for (const [name, peer] of Object.entries(peers)) {
  describe(`${name} peer`, () => {
    for (const { type, raw } of modes) {
      const label = `${type}${type === 'stream' ? (raw ? ' raw' : ' framed') : ''}`
      const flags = ['--type', type, ...(raw ? ['--raw'] : [])]
      const skipped = peer.available ? '' : ` (skipped: ${peer.why})`

      test.skipIf(!peer.available)(`${name} → Node, ${label}${skipped}`, async () => {
        const address = tmpPath()
        const receiver = type === 'dgram' ? await bind(address) : await listen(address, { type, raw })
        const sender = startPeer(name, ['send', ...flags, '--connect', address, '--count', String(COUNT), '--fds', String(FDS)])
        const socket = 'accept' in receiver ? await Promise.race([receiver.accept(), sender.failed]) : receiver
        for (let i = 0; i < COUNT; i++) {
          const sent = await sender.next() // what the peer sent: data and each fd's identity
          const m = await Promise.race([socket.receive(), sender.failed])
          expect(m.data.toString()).toBe(sent.data)
          expect(m.data.toString()).toBe(`msg-${i}`)
          expect(m.fds.map((fd) => identity(fd.fd))).toEqual(sent.fds.map((f: { dev: number; ino: number }) => ({ dev: f.dev, ino: f.ino })))
          for (const [j, fd] of m.fds.entries()) {
            const buf = Buffer.alloc(64)
            expect(buf.subarray(0, fs.readSync(fd.fd, buf, 0, 64, 0)).toString()).toBe(`file-${i}-${j}`)
            fd.close()
          }
        }
        expect(await sender.exit, sender.stderr()).toBe(0)
        socket.close()
        if ('accept' in receiver) await receiver.close()
      })

      test.skipIf(!peer.available)(`Node → ${name}, ${label}${skipped}`, async () => {
        const address = tmpPath()
        const files = Array.from({ length: FDS }, (_, j) => {
          const f = tmpPath('file')
          fs.writeFileSync(f, `from node ${j}`)
          return fs.openSync(f, 'r')
        })
        const receiver = startPeer(name, ['recv', ...flags, '--listen', address, '--count', String(COUNT)])
        await receiver.listening
        const socket = await connect(address, { type, raw })
        for (let i = 0; i < COUNT; i++) {
          await socket.send(`msg-${i}`, files)
          const line = await receiver.next()
          expect(line).toEqual({ data: `msg-${i}`, fds: files.map((fd, j) => ({ ...identity(fd), content: `from node ${j}` })) })
        }
        expect(await receiver.exit, receiver.stderr()).toBe(0)
        socket.close()
        for (const fd of files) fs.closeSync(fd)
      })
    }
  })
}
