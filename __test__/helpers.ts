// Shared helpers for the test suite: temp paths, descriptor counts, and
// child processes that speak JSON lines.
import { type ChildProcess, spawn, spawnSync, type SpawnOptions } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as readline from 'node:readline'
import { expect } from 'vitest'
import type { FdServer, FdSocket } from '..'

export const root = path.resolve(__dirname, '..')
export const fixture = (name: string) => path.join(__dirname, 'fixtures', name)

/** A unique socket path in the temp dir (removed by cleanup()). */
const made: string[] = []
export function tmpPath(tag = 'sock'): string {
  const p = path.join(os.tmpdir(), `fdpass-test-${tag}-${process.pid}-${randomBytes(4).toString('hex')}`)
  made.push(p)
  return p
}
export function cleanup(): void {
  for (const p of made.splice(0)) fs.rmSync(p, { force: true, recursive: true })
}

/**
 * A message-oriented socket type for tests that only need boundaries:
 * seqpacket where it exists, dgram elsewhere (macOS).
 */
export const MESSAGE_TYPE = process.platform === 'linux' ? ('seqpacket' as const) : ('dgram' as const)
export const linuxOnly = process.platform === 'linux' ? '' : ` (skipped: Linux only, this is ${process.platform})`

/** Where a process lists its own descriptors. */
const { FdCensus } = createRequire(__filename)('./fixtures/fd-census.js')

export const FD_DIR = process.platform === 'darwin' ? '/dev/fd' : '/proc/self/fd'

/** Open descriptors of this process. */
export function openFdCount(): number {
  return fs.readdirSync(FD_DIR).length
}

/**
 * A census of this process's descriptors (see fixtures/fd-census.js): counts
 * only those opened since, that refer to an object the test `watch`ed, so
 * that Node's and vitest's own descriptors (and a child's stdio pipes closing
 * when it exits) never move the count.
 */
export function fdCensus(): { watch(...fds: number[]): void; targets: Set<string>; unchanged(fd: number): boolean; added(): number } {
  return new FdCensus()
}

/** The open-descriptor count once earlier tests' asynchronous closes (child pipes, timers) have landed. */
export async function settledFdCount(): Promise<number> {
  let last = openFdCount()
  for (let stable = 0; stable < 3; ) {
    await new Promise((r) => setTimeout(r, 20))
    const now = openFdCount()
    stable = now === last ? stable + 1 : 0
    last = now
  }
  return last
}

export interface Child {
  proc: ChildProcess
  /** The next JSON line the child prints on stdout. */
  next(): Promise<any>
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stderr(): string
}

/** Run a fixture with node; its stdout is JSON lines. */
export function run(name: string, args: unknown[] = [], options: SpawnOptions = {}): Child {
  const proc = spawn(process.execPath, [fixture(name), ...args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a)))], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: process.env,
    ...options,
  })
  return wrap(proc)
}

export function wrap(proc: ChildProcess): Child {
  const lines: any[] = []
  const waiting: Array<(v: any) => void> = []
  let err = ''
  proc.stderr?.on('data', (d) => (err += d))
  readline.createInterface({ input: proc.stdout! }).on('line', (line) => {
    let v: any
    try {
      v = JSON.parse(line)
    } catch {
      return
    }
    const w = waiting.shift()
    if (w) w(v)
    else lines.push(v)
  })
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })))
  return {
    proc,
    next: () =>
      lines.length
        ? Promise.resolve(lines.shift())
        : new Promise((resolve, reject) => {
            waiting.push(resolve)
            exit.then(({ code, signal }) => reject(new Error(`child exited (${signal ?? code}) before printing; stderr:\n${err}`)))
          }),
    exit,
    stderr: () => err,
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

export function identity(fd: number): { dev: number; ino: number } {
  const st = fs.fstatSync(fd)
  return { dev: st.dev, ino: st.ino }
}

/**
 * The next `event` of `emitter`, rejecting after `ms` (so a missing event
 * fails the test with a message instead of hanging until the test timeout).
 */
export function waitFor<T = unknown[]>(emitter: NodeJS.EventEmitter, event: string, ms = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, on)
      reject(new Error(`no '${event}' event within ${ms} ms`))
    }, ms)
    const on = (...args: unknown[]) => {
      clearTimeout(timer)
      resolve(args as T)
    }
    emitter.once(event, on)
  })
}

/** Poll `check` until it returns true, failing after `ms`. */
export async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

/**
 * A real pipe (S_IFIFO): Node has no pipe(2), so a FIFO is opened at both
 * ends and unlinked. The read end is non-blocking (a FIFO cannot be opened
 * for writing without a reader); write before reading.
 */
export function makePipe(): { readEnd: number; writeEnd: number } {
  const p = tmpPath('fifo')
  const r = spawnSync('mkfifo', ['-m', '600', p])
  if (r.status !== 0) throw new Error(`mkfifo failed: ${r.stderr}`)
  const readEnd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  const writeEnd = fs.openSync(p, fs.constants.O_WRONLY)
  fs.rmSync(p)
  return { readEnd, writeEnd }
}

/** Run a fixture under bash with a lower RLIMIT_NOFILE (`ulimit -n`). */
export function runLimited(limit: number, name: string, args: string[] = []): Child {
  const quoted = [process.execPath, fixture(name), ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
  return wrap(spawn('bash', ['-c', `ulimit -n ${limit} && exec ${quoted}`], { stdio: ['ignore', 'pipe', 'pipe'] }))
}

/** A regular temp file with `content`, opened read-write; the path is removed by cleanup(). */
export function tempFile(content: string): { path: string; fd: number } {
  const p = tmpPath('file')
  fs.writeFileSync(p, content)
  return { path: p, fd: fs.openSync(p, 'r+') }
}

/** A unique abstract-namespace name. */
export function abstractName(tag = 'abs'): { abstract: string } {
  return { abstract: `fdpass-test-${tag}-${process.pid}-${randomBytes(6).toString('hex')}` }
}

/** How many of this process's descriptors refer to `target` (a path, or e.g. 'pipe:[123]'), per /proc/self/fd. */
export function openFdsTo(target: string): number {
  let n = 0
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === target) n++
    } catch {
      // readdir's own descriptor, gone by now
    }
  }
  return n
}

/** The next JSON line of `child` that satisfies `pred` (earlier lines are skipped). */
export async function nextWhere(child: Child, pred: (line: any) => boolean, what = 'a matching line'): Promise<any> {
  for (;;) {
    const line = await child.next().catch((e: Error) => {
      throw new Error(`waiting for ${what}: ${e.message}`)
    })
    if (pred(line)) return line
  }
}

/** `from` sends `text`, and the next message `to` receives is that text. */
export async function expectDelivered(from: FdSocket, to: FdSocket, text: string): Promise<void> {
  await from.send(text)
  expect((await to.receive()).data.toString()).toBe(text)
}

/** Close `sockets`, then `server`. */
export async function closeAll(server: FdServer, ...sockets: FdSocket[]): Promise<void> {
  for (const s of sockets) s.close()
  await server.close()
}
