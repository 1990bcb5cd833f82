// `fdpass run`'s command line: its options, their defaults, and where its
// control and supervisor sockets live.
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { parseArgs } from 'node:util'

const DEFAULTS = { readyTimeout: 30_000, stopTimeout: 90_000, restartLimit: 5, restartWindow: 10_000, backoffMax: 5_000 }
export const BACKOFF_FIRST_MS = 100
/** $FDSTORE given to generations: how many descriptors this supervisor keeps for them. */
export const FD_STORE_MAX = 256
/** FDNAME of a generation's control listener in the store (fdpass/handoff's CONTROL_STORE_NAME). */
export const CONTROL_NAME = 'fdpass.control'

export interface RunOptions {
  control: string
  socket: string
  readyTimeout: number
  stopTimeout: number
  restartLimit: number
  restartWindow: number
  backoffMax: number
  watch: string[]
  workers: number
  /** Workers pass accepted connections to the least loaded one (balance.ts); --no-balance turns it off. */
  balance: boolean
  health: string | null
  probation: number
  quiet: boolean
  command: string[]
}

export class UsageError extends Error {}

export function runtimeDir(): string {
  return process.env.XDG_RUNTIME_DIR || os.tmpdir()
}

export function defaultControl(command: string[]): string {
  const id = createHash('sha256')
    .update(`${process.cwd()}\0${command.join('\0')}`)
    .digest('hex')
    .slice(0, 12)
  return path.join(runtimeDir(), `fdpass-${id}.sock`)
}

export function supervisorSocketFor(control: string): string {
  return `${control.replace(/\.sock$/, '')}.supervisor.sock`
}

/** Split `[options] [--] command args` at `--` or at the first word that is not an option (or an option's value). */
export function splitCommand(argv: string[], valued: Set<string>): { options: string[]; command: string[] } {
  const dashes = argv.indexOf('--')
  if (dashes >= 0) return { options: argv.slice(0, dashes), command: argv.slice(dashes + 1) }
  let i = 0
  while (i < argv.length && argv[i].startsWith('-')) {
    const name = argv[i].replace(/^--?/, '')
    i += valued.has(name) ? 2 : 1
  }
  return { options: argv.slice(0, i), command: argv.slice(i) }
}

function positiveNumber(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${name} must be a positive number, not '${value}'`)
  return n
}

const RUN_OPTIONS = {
  control: { type: 'string' },
  socket: { type: 'string' },
  'ready-timeout': { type: 'string' },
  'stop-timeout': { type: 'string' },
  'restart-limit': { type: 'string' },
  'restart-window': { type: 'string' },
  'backoff-max': { type: 'string' },
  watch: { type: 'string', multiple: true },
  workers: { type: 'string' },
  'no-balance': { type: 'boolean' },
  health: { type: 'string' },
  probation: { type: 'string' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

export function parseRun(argv: string[]): RunOptions | 'help' {
  const valued = new Set(
    Object.entries(RUN_OPTIONS)
      .filter(([, o]) => o.type === 'string')
      .map(([k]) => k),
  )
  const { options, command } = splitCommand(argv, valued)
  const { values } = parseArgs({ args: options, options: RUN_OPTIONS, strict: true, allowPositionals: false })
  if (values.help) return 'help'
  if (command.length === 0) throw new UsageError('no command to run')
  const control = values.control ?? process.env.FDPASS_CONTROL ?? defaultControl(command)
  return {
    control,
    socket: values.socket ?? supervisorSocketFor(control),
    readyTimeout: positiveNumber('ready-timeout', values['ready-timeout'], DEFAULTS.readyTimeout),
    stopTimeout: positiveNumber('stop-timeout', values['stop-timeout'], DEFAULTS.stopTimeout),
    restartLimit: Math.floor(positiveNumber('restart-limit', values['restart-limit'], DEFAULTS.restartLimit)),
    restartWindow: positiveNumber('restart-window', values['restart-window'], DEFAULTS.restartWindow),
    backoffMax: positiveNumber('backoff-max', values['backoff-max'], DEFAULTS.backoffMax),
    watch: values.watch ?? [],
    health: values.health ?? null,
    probation: values.probation === undefined || values.probation === '0' ? 0 : positiveNumber('probation', values.probation, 0),
    workers: values.workers === 'auto' ? os.availableParallelism() : Math.floor(positiveNumber('workers', values.workers, 1)),
    balance: !values['no-balance'],
    quiet: values.quiet ?? false,
    command,
  }
}

export const USAGE = `usage: fdpass run [options] [--] <command> [args...]
       fdpass reload [--socket PATH] [--json] [-- <command> [args...]]
       fdpass status [--socket PATH] [--json] [-- <command> [args...]]
       fdpass --version | --help

run: runs <command> and restarts it with zero downtime on SIGHUP, SIGUSR2,
\`fdpass reload\` or a file change. The command takes its listeners with
takeover() from 'fdpass/handoff' (control path from $FDPASS_CONTROL) and
stores them with the supervisor ($FDSTORE); when it dies, a new generation
starts at once on the same listening sockets: no connection is refused.

options of run:
  --control PATH        the app's control socket (default: $FDPASS_CONTROL, or
                        fdpass-<hash of cwd and command>.sock in $XDG_RUNTIME_DIR
                        or the temp dir)
  --socket PATH         the supervisor's own socket, for status and reload
                        (default: the control path with .supervisor.sock
                        instead of .sock)
  --ready-timeout MS    how long a new generation may take to become ready (30000)
  --stop-timeout MS     how long a stop waits for generations to drain before
                        it kills them (90000)
  --restart-limit N     give up after N crashes within --restart-window (5)
  --restart-window MS   (10000)
  --backoff-max MS      restart delay cap; the first restart is immediate, then
                        100 ms doubling per crash within the window (5000)
  --watch PATH          also reload when PATH changes; a directory is watched
                        recursively (repeatable)
  --workers N|auto      N processes serve the same listeners (auto: one per
                        CPU); each worker has its own control path <control>.<n>;
                        a reload replaces them one at a time (1)
  --no-balance          workers keep every connection they accept; by default
                        one that holds 2 more open connections than another
                        passes its next accepted connection to it
  --health URL|COMMAND  on a reload, check the new generation while the old one
                        still serves, before it takes over: a URL must answer
                        2xx from the new generation (told apart by its
                        fdpass-pid header); a shell command must exit 0 (it
                        gets FDPASS_PID, FDPASS_GENERATION, FDPASS_WORKER).
                        On failure the new generation drains and exits, and
                        the old one serves on (rolled back)
  --probation MS        on a reload, both generations serve for MS first (a
                        canary); a new one that dies meanwhile is rolled back.
                        Keep probation and health under the app's readyTimeout
  --quiet               no log lines of its own

reload: asks the supervisor for a reload and waits for it. Exit code 0 when the
new generation serves, 1 when it failed or was rolled back (the previous one
serves on), 2 when
the supervisor cannot be reached. status: generations, pids, uptimes, stored
listeners, restarts. Both find the supervisor by --socket, by the command
(as run derives it), or as the only one running in the directory above.

Signals must reach the supervisor itself: run the bin (node_modules/.bin/fdpass
run ...), not npx/npm, which forward only SIGINT and SIGTERM; or use fdpass reload.
Under systemd: Type=notify, NotifyAccess=main, ExecReload=fdpass reload --socket PATH
(or kill -HUP $MAINPID); with FileDescriptorStoreMax= the supervisor also
keeps the listeners in systemd's fd store.`

export function version(): string {
  return JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')).version
}
