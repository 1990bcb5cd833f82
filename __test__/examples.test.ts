// The examples that README.md and docs/ quote in full (docs.test.ts checks
// the quotes), run as a user runs them: `node <file>` from a directory of
// their own, importing 'fdpass' by its package name.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import * as dgram from 'node:dgram'
import { once } from 'node:events'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, expect, test } from 'vitest'
import { listen } from '../index.js'
import { root } from './helpers'

const examples = path.join(root, 'examples')
const started: ChildProcess[] = []
const dirs: string[] = []

afterEach(() => {
  for (const p of started.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
})

/** A fresh working directory: the examples use socket paths relative to it. */
function workDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-example-'))
  dirs.push(d)
  return d
}

interface Running {
  proc: ChildProcess
  /** Resolves with the first stdout line matching `re` (waits for it). */
  line(re: RegExp): Promise<RegExpMatchArray>
  stdout(): string
  stderr(): string
  exit: Promise<number | null>
}

function start(cwd: string, command: string, args: string[], env: Record<string, string> = {}): Running {
  const proc = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  started.push(proc)
  let out = ''
  let err = ''
  const waiting: Array<{ re: RegExp; resolve: (m: RegExpMatchArray) => void }> = []
  const check = () => {
    for (const w of waiting.slice()) {
      const m = out.match(w.re)
      if (m) {
        waiting.splice(waiting.indexOf(w), 1)
        w.resolve(m)
      }
    }
  }
  proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
    out += s
    check()
  })
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s))
  const exit = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)))
  return {
    proc,
    line(re) {
      return new Promise((resolve, reject) => {
        waiting.push({ re, resolve })
        check()
        exit.then(() => {
          // Let the last 'data' events land before giving up.
          setImmediate(() => reject(new Error(`exited without printing ${re}\nstdout: ${out}\nstderr: ${err}`)))
        })
      })
    },
    stdout: () => out,
    stderr: () => err,
    exit,
  }
}

const node = (cwd: string, file: string, env?: Record<string, string>) => start(cwd, process.execPath, [path.join(examples, file)], env)

function get(options: http.RequestOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ agent: false, ...options }, (res) => {
        let body = ''
        res.setEncoding('utf8').on('data', (s) => (body += s))
        res.on('end', () => resolve(body))
      })
      .on('error', reject)
  })
}

/** A TCP and UDP port that was free a moment ago on 127.0.0.1. */
async function freePort(): Promise<number> {
  for (;;) {
    const s = net.createServer().listen(0, '127.0.0.1')
    await once(s, 'listening')
    const port = (s.address() as net.AddressInfo).port
    s.close()
    const u = dgram.createSocket('udp4')
    const free = await new Promise<boolean>((resolve) => {
      u.once('error', () => resolve(false))
      u.bind(port, '127.0.0.1', () => resolve(true))
    })
    u.close()
    if (free) return port
  }
}

test('examples/pass-a-file: the sender passes an open file, the receiver reads it, and both exit', async () => {
  const cwd = workDir()
  const receiver = node(cwd, 'pass-a-file/receiver.mjs')
  await receiver.line(/listening on files\.sock/)
  const sender = node(cwd, 'pass-a-file/sender.mjs')
  expect(await sender.exit).toBe(0)
  expect(await receiver.exit).toBe(0)
  const csv = fs.readFileSync(path.join(examples, 'pass-a-file/report.csv'), 'utf8')
  expect(receiver.stdout()).toBe(`listening on files.sock\ngot report.csv as a file:\n${csv}`)
  expect(receiver.stderr() + sender.stderr()).toBe('')
  expect(fs.readdirSync(cwd)).toEqual([]) // the server removed its socket file
})

test('examples/pass-a-file/sender.mjs exits by itself while its peer keeps the connection open', async () => {
  const cwd = workDir()
  const server = await listen(path.join(cwd, 'files.sock'))
  try {
    const sender = node(cwd, 'pass-a-file/sender.mjs')
    const socket = await server.accept()
    const { data, fds } = await socket.receive()
    expect(String(data)).toBe('report.csv')
    expect(fds).toHaveLength(1)
    const text = await new Promise<string>((resolve, reject) => {
      let s = ''
      fds[0]
        .createReadStream()
        .on('data', (c) => (s += String(c)))
        .on('end', () => resolve(s))
        .on('error', reject)
    })
    expect(text).toBe(fs.readFileSync(path.join(examples, 'pass-a-file/report.csv'), 'utf8'))
    // This end stays open: the sender must close its socket to exit.
    expect(await sender.exit).toBe(0)
    socket.close()
  } finally {
    await server.close()
  }
})

test('examples/pass-a-listener: the owner hands its TCP listener over and the server answers on that port', async () => {
  const cwd = workDir()
  const owner = node(cwd, 'pass-a-listener/owner.mjs', { PORT: '0' })
  const [, port] = await owner.line(/port (\d+) open; waiting on listener\.sock/)
  const server = node(cwd, 'pass-a-listener/server.mjs')
  const [, served] = await server.line(/serving on port (\d+)/)
  expect(served).toBe(port)
  expect(await owner.exit).toBe(0) // it closed its own copy of the listener
  expect(await get({ host: '127.0.0.1', port: Number(port) })).toBe(`served by ${server.proc.pid}\n`)
  expect(owner.stderr() + server.stderr()).toBe('')
})

test('examples/takeover: a second start takes the TCP, Unix and UDP listeners over and the first drains and exits', async () => {
  const cwd = workDir()
  const port = await freePort()
  const env = { PORT: String(port) }
  const first = node(cwd, 'takeover/server.mjs', env)
  await first.line(new RegExp(`${first.proc.pid} serving on port ${port}`))
  expect(await get({ host: '127.0.0.1', port })).toBe(`hello from ${first.proc.pid}\n`)
  expect(await get({ socketPath: path.join(cwd, 'admin.sock') })).toBe('0 handoffs\n')

  const second = node(cwd, 'takeover/server.mjs', env)
  await second.line(new RegExp(`${second.proc.pid} serving on port ${port}`))
  expect(await first.exit).toBe(0)
  expect(await get({ host: '127.0.0.1', port })).toBe(`hello from ${second.proc.pid}\n`)
  expect(await get({ socketPath: path.join(cwd, 'admin.sock') })).toBe('1 handoffs\n')

  const client = dgram.createSocket('udp4')
  try {
    client.send('ping', port, '127.0.0.1')
    const [msg] = await once(client, 'message')
    expect(String(msg)).toBe('ping')
  } finally {
    client.close()
  }
  expect(second.stderr()).toMatch(/took over from pid \d+/)
})

test('examples/supervised: fdpass run serves it, and a SIGHUP starts the next generation on the same port', async () => {
  const cwd = workDir()
  const port = await freePort()
  const supervisor = start(
    cwd,
    process.execPath,
    [path.join(root, 'bin/fdpass.js'), 'run', '--', process.execPath, path.join(examples, 'supervised/server.mjs')],
    {
      PORT: String(port),
    },
  )
  const stderr = (re: RegExp) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const m = supervisor.stderr().match(re)
        if (m) return resolve(m)
        if (supervisor.proc.exitCode !== null) return reject(new Error(`supervisor exited: ${supervisor.stderr()}`))
        setTimeout(check, 20)
      }
      check()
    })
  const [, first] = await stderr(/generation 1 \(pid (\d+)\) (?:is )?serving/)
  expect(await get({ host: '127.0.0.1', port })).toBe(`hello from ${first}\n`)
  supervisor.proc.kill('SIGHUP')
  const [, second] = await stderr(/generation 2 \(pid (\d+)\) (?:is )?serving/)
  expect(second).not.toBe(first)
  expect(await get({ host: '127.0.0.1', port })).toBe(`hello from ${second}\n`)
  supervisor.proc.kill('SIGTERM')
  expect(await supervisor.exit).toBe(0)
})

const python = spawnSync('python3', ['-c', 'import socket; socket.send_fds'], { encoding: 'utf8' })
const noPython = python.status === 0 ? '' : ' (skipped: no python3 ≥ 3.9 with socket.send_fds here)'

test.skipIf(noPython !== '' || process.platform !== 'linux')(
  `examples/python-peer: Node and Python pass a pipe back and forth over seqpacket${noPython}`,
  async () => {
    const cwd = workDir()
    const server = node(cwd, 'python-peer/server.mjs')
    await server.line(/listening on py\.sock/)
    const client = start(cwd, 'python3', [path.join(examples, 'python-peer/client.py')])
    expect(await client.exit).toBe(0)
    expect(await server.exit).toBe(0)
    expect(server.stdout()).toBe('listening on py.sock\nhello from python, with a pipe\n')
    expect(client.stdout()).toBe('back at you: the same pipe\n')
  },
)
