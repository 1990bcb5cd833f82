// `fdpass run -- node server.js`: restart an app with zero downtime on
// SIGHUP/SIGUSR2 (or on file change). The app takes its listeners with
// fdpass/handoff's takeover() (control path from $FDPASS_CONTROL); the
// supervisor starts each new generation, waits for its READY=1 on a notify
// socket, and relays readiness to systemd (Type=notify) when it runs under it.
import { type ChildProcess, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { bind } from './open'
import { notify } from './notify'
import type { FdSocket } from './socket'

const USAGE = `usage: fdpass run [options] -- <command> [args...]

Runs <command> and restarts it with zero downtime on SIGHUP or SIGUSR2.
The command takes its listeners with takeover() from 'fdpass/handoff',
which reads the control socket path from $FDPASS_CONTROL.

options:
  --control PATH        control socket path (default: $FDPASS_CONTROL, or one
                        in $XDG_RUNTIME_DIR or the temp dir, named after the command)
  --ready-timeout MS    how long a new generation may take to become ready (30000)
  --watch PATH          also restart when PATH changes (repeatable)
  --quiet               no log lines of its own
  -h, --help            this text

Under systemd, use Type=notify (NotifyAccess=main) and ExecReload=kill -HUP $MAINPID.`

interface Options {
  control: string
  readyTimeout: number
  watch: string[]
  quiet: boolean
  command: string[]
}

function parse(argv: string[]): Options {
  const o: Options = { control: process.env.FDPASS_CONTROL ?? '', readyTimeout: 30_000, watch: [], quiet: false, command: [] }
  let i = 0
  for (; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') {
      i++
      break
    }
    if (a === '-h' || a === '--help') {
      console.log(USAGE)
      process.exit(0)
    } else if (a === '--control') o.control = argv[++i]
    else if (a === '--ready-timeout') o.readyTimeout = Number(argv[++i])
    else if (a === '--watch') o.watch.push(argv[++i])
    else if (a === '--quiet') o.quiet = true
    else break
  }
  o.command = argv.slice(i)
  if (o.command.length === 0 || !Number.isFinite(o.readyTimeout) || o.readyTimeout <= 0) {
    console.error(USAGE)
    process.exit(2)
  }
  if (!o.control) {
    const dir = process.env.XDG_RUNTIME_DIR || os.tmpdir()
    const id = createHash('sha256').update(`${process.cwd()}\0${o.command.join('\0')}`).digest('hex').slice(0, 12)
    o.control = path.join(dir, `fdpass-${id}.sock`)
  }
  return o
}

class Supervisor {
  readonly #o: Options
  readonly #log: (line: string) => void
  #notifyPath = ''
  #notifySocket: FdSocket | null = null
  #current: ChildProcess | null = null
  #starting: ChildProcess | null = null
  #children = new Set<ChildProcess>()
  #ready = new Map<number, () => void>()
  #stopping = false
  #orphaned: (() => void) | null = null
  #generation = 0

  constructor(o: Options) {
    this.#o = o
    this.#log = o.quiet ? () => {} : (line) => process.stderr.write(`[fdpass run] ${line}\n`)
  }

  async start(): Promise<void> {
    this.#notifyPath = path.join(os.tmpdir(), `fdpass-run-notify-${process.pid}.sock`)
    const socket = await bind(this.#notifyPath, { type: 'dgram' })
    this.#notifySocket = socket
    socket.unref()
    socket.on('message', (m) => {
      const fields = Object.fromEntries(
        m.data
          .toString('utf8')
          .split('\n')
          .map((l: string) => l.split('=', 2)),
      )
      for (const fd of m.fds) fd.close()
      const pid = Number(fields.MAINPID)
      if (fields.READY === '1') this.#ready.get(pid)?.()
    })
    for (const sig of ['SIGHUP', 'SIGUSR2'] as const) process.on(sig, () => void this.restart(sig))
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => void this.stop(sig))
    for (const file of this.#o.watch) {
      let timer: NodeJS.Timeout | null = null
      fs.watch(file, { persistent: false }, () => {
        if (timer) clearTimeout(timer)
        timer = setTimeout(() => void this.restart(`change in ${file}`), 200)
      })
    }
    const first = await this.#spawn()
    if (!first) {
      this.#log('the first generation did not become ready')
      await this.#cleanup()
      process.exit(1)
    }
    await notify({ READY: 1, MAINPID: process.pid, STATUS: `serving (generation ${this.#generation})` })
  }

  async restart(reason: string): Promise<void> {
    if (this.#stopping) return
    if (this.#starting) {
      this.#log(`${reason}: a restart is already in progress`)
      return
    }
    this.#log(`${reason}: starting generation ${this.#generation + 1}`)
    await notify({ RELOADING: 1, MONOTONIC_USEC: Math.round(performance.timeOrigin * 1000 + performance.now() * 1000) })
    const ok = await this.#spawn()
    await notify({ READY: 1, STATUS: ok ? `serving (generation ${this.#generation})` : 'restart failed; previous generation serving' })
  }

  async stop(signal: NodeJS.Signals): Promise<void> {
    if (this.#stopping) return
    this.#stopping = true
    await notify({ STOPPING: 1 })
    this.#log(`${signal}: stopping`)
    for (const child of this.#children) child.kill('SIGTERM')
    await Promise.all([...this.#children].map((c) => new Promise((r) => c.once('exit', r))))
    await this.#cleanup()
    process.exit(0)
  }

  /** Start a generation; resolves true once it said READY=1. */
  #spawn(): Promise<boolean> {
    const generation = ++this.#generation
    const [cmd, ...args] = this.#o.command
    const child = spawn(cmd, args, {
      stdio: 'inherit',
      env: { ...process.env, FDPASS_CONTROL: this.#o.control, NOTIFY_SOCKET: this.#notifyPath, FDPASS_GENERATION: String(generation) },
    })
    this.#children.add(child)
    this.#starting = child
    return new Promise((resolve) => {
      let settled = false
      const settle = (ok: boolean) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        this.#ready.delete(child.pid ?? -1)
        this.#starting = null
        const orphaned = this.#orphaned
        this.#orphaned = null
        if (ok) {
          this.#current = child
          this.#log(`generation ${generation} (pid ${child.pid}) is serving`)
        } else if (orphaned) {
          orphaned()
        }
        resolve(ok)
      }
      const timer = setTimeout(() => {
        this.#log(`generation ${generation} (pid ${child.pid}) not ready after ${this.#o.readyTimeout} ms; killing it`)
        child.kill('SIGKILL')
        settle(false)
      }, this.#o.readyTimeout)
      this.#ready.set(child.pid ?? -1, () => settle(true))
      child.on('error', (e) => {
        this.#log(`cannot start ${cmd}: ${e.message}`)
        settle(false)
      })
      child.on('exit', (code, signal) => {
        this.#children.delete(child)
        settle(false)
        if (this.#stopping) return
        if (child !== this.#current) return
        this.#current = null
        const starting = this.#starting
        if (starting) {
          // A predecessor exits once it handed over and drained, which can
          // be before its successor's READY=1 reaches us: wait for that.
          this.#orphaned = () => this.#exitWithoutServer(generation, code, signal)
          return
        }
        this.#exitWithoutServer(generation, code, signal)
      })
    })
  }

  /** The serving generation is gone with no successor: let the service manager decide. */
  #exitWithoutServer(generation: number, code: number | null, signal: NodeJS.Signals | null): void {
    this.#log(`generation ${generation} exited (${signal ?? code}) and no generation is serving; exiting`)
    void this.#cleanup().then(() => process.exit(code || 1))
  }

  async #cleanup(): Promise<void> {
    this.#notifySocket?.close()
    await fs.promises.rm(this.#notifyPath, { force: true })
  }
}

export function main(argv: string[]): void {
  const [command, ...rest] = argv
  if (command !== 'run') {
    console.error(USAGE)
    process.exit(command === undefined || command === '-h' || command === '--help' ? 0 : 2)
  }
  new Supervisor(parse(rest)).start().catch((e) => {
    console.error(e)
    process.exit(1)
  })
}
