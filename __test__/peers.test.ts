// Node ↔ Python, Go and C peers (examples/peers), both directions, on every
// socket type and on streams with and without fdpass's framing. The
// descriptors that arrive are checked to be the file that was sent (fstat).
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
// The reference peers use Linux flags (MSG_CMSG_CLOEXEC, accept4, SOCK_CLOEXEC).
const onLinux = process.platform === 'linux'
const has = (cmd: string) => spawnSync(cmd, ['--version']).status === 0 || spawnSync(cmd, ['version']).status === 0

const peers: Record<string, { available: boolean; why: string; cmd: () => string[] }> = {
  python: { available: onLinux && has('python3'), why: onLinux ? 'python3 is not installed' : 'the peers are Linux-only', cmd: () => ['python3', path.join(peersDir, 'python/fdpass_peer.py')] },
  c: { available: onLinux && has('cc'), why: onLinux ? 'no C compiler (cc)' : 'the peers are Linux-only', cmd: () => [path.join(buildDir, 'fdpass_peer')] },
  go: { available: onLinux && has('go'), why: onLinux ? 'Go is not installed' : 'the peers are Linux-only', cmd: () => [path.join(buildDir, 'fdpass-peer-go')] },
}

beforeAll(() => {
  fs.mkdirSync(buildDir, { recursive: true })
  if (peers.c.available) {
    const r = spawnSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', path.join(buildDir, 'fdpass_peer'), path.join(peersDir, 'c/fdpass_peer.c')], { encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`building the C peer failed:\n${r.stderr}`)
  }
  if (peers.go.available) {
    const r = spawnSync('go', ['build', '-o', path.join(buildDir, 'fdpass-peer-go'), '.'], { cwd: path.join(peersDir, 'go'), encoding: 'utf8', env: { ...process.env, GOFLAGS: '-mod=mod' } })
    if (r.status !== 0) throw new Error(`building the Go peer failed:\n${r.stderr}`)
  }
}, 120_000)

const modes: Array<{ type: SocketType; mode: 'framed' | 'raw' }> = [
  { type: 'stream', mode: 'framed' },
  { type: 'stream', mode: 'raw' },
  { type: 'seqpacket', mode: 'raw' },
  { type: 'dgram', mode: 'raw' },
]
const COUNT = 20

function startPeer(name: string, args: string[]) {
  const [cmd, ...pre] = peers[name].cmd()
  const proc = spawn(cmd, [...pre, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  proc.stderr.on('data', (d) => (stderr += d))
  const lines: string[] = []
  const waiting: Array<(l: string) => void> = []
  readline.createInterface({ input: proc.stdout }).on('line', (l) => (waiting.length ? waiting.shift()!(l) : lines.push(l)))
  const exit = new Promise<number | null>((r) => proc.on('exit', r))
  return {
    next: () => (lines.length ? Promise.resolve(lines.shift()!) : new Promise<string>((r) => waiting.push(r))),
    exit,
    stderr: () => stderr,
  }
}

for (const [name, peer] of Object.entries(peers)) {
  describe(`${name} peer`, () => {
    for (const { type, mode } of modes) {
      const raw = mode === 'raw'
      test.skipIf(!peer.available)(`${name} → Node, ${type} ${mode}${peer.available ? '' : ` (skipped: ${peer.why})`}`, async () => {
        const address = tmpPath()
        const file = tmpPath('file')
        fs.writeFileSync(file, 'sent by the peer')
        const want = identity(fs.openSync(file, 'r'))
        const receiver = type === 'dgram' ? await bind(address) : await listen(address, { type, raw })
        const sender = startPeer(name, ['send', type, mode, address, String(COUNT), file])
        const socket = 'accept' in receiver ? await Promise.race([receiver.accept(), sender.exit.then((code) => Promise.reject(new Error(`peer exited ${code}: ${sender.stderr()}`)))]) : receiver
        // A peer that fails must fail the test at once, with its stderr.
        const failed = sender.exit.then((code) => (code === 0 ? new Promise<never>(() => {}) : Promise.reject(new Error(`peer exited ${code}: ${sender.stderr()}`))))
        for (let i = 0; i < COUNT; i++) {
          const m = await Promise.race([socket.receive(), failed])
          expect(m.data.toString()).toBe(`msg-${i}`)
          expect(m.fds).toHaveLength(2)
          for (const fd of m.fds) {
            expect(identity(fd.fd)).toEqual(want)
            fd.close()
          }
        }
        expect(await sender.exit, sender.stderr()).toBe(0)
        socket.close()
        if ('accept' in receiver) await receiver.close()
      })

      test.skipIf(!peer.available)(`Node → ${name}, ${type} ${mode}${peer.available ? '' : ` (skipped: ${peer.why})`}`, async () => {
        const address = tmpPath()
        const file = tmpPath('file')
        fs.writeFileSync(file, 'sent by Node')
        const fd = fs.openSync(file, 'r')
        const want = identity(fd)
        const receiver = startPeer(name, ['recv', type, mode, address, String(COUNT), '-'])
        expect(await receiver.next()).toBe('ready')
        const socket = await connect(address, { type, raw })
        for (let i = 0; i < COUNT; i++) await socket.send(`msg-${i}`, [fd, fd])
        for (let i = 0; i < COUNT; i++) {
          const line = JSON.parse(await receiver.next())
          expect(line).toEqual({ data: `msg-${i}`, fds: [want, want] })
        }
        expect(await receiver.exit, receiver.stderr()).toBe(0)
        socket.close()
        fs.closeSync(fd)
      })
    }
  })
}
