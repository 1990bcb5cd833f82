// Shared helpers for the test suite: temp paths, descriptor counts, and
// child processes that speak JSON lines.
import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as readline from 'node:readline'

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
export const FD_DIR = process.platform === 'darwin' ? '/dev/fd' : '/proc/self/fd'

/** Open descriptors of this process. */
export function openFdCount(): number {
  return fs.readdirSync(FD_DIR).length
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
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  )
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
