// The `fdpass` command: `run` starts a supervisor (supervisor.ts),
// `status` and `reload` talk to one (supervisor-client.ts).
import { USAGE, UsageError, parseRun, version } from './run-options'
import { Supervisor } from './supervisor'
import { client } from './supervisor-client'

export function main(argv: string[]): void {
  const [command, ...rest] = argv
  const fail = (e: unknown) => {
    if (e instanceof UsageError || (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`fdpass: ${(e as Error).message} (usage: fdpass --help)\n`)
      process.exit(2)
    }
    process.stderr.write(`fdpass: ${(e as Error).stack ?? e}\n`)
    process.exit(1)
  }
  try {
    if (command === '--version' || command === '-v' || command === 'version') {
      process.stdout.write(`${version()}\n`)
      return
    }
    if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
      process.stdout.write(`${USAGE}\n`)
      return
    }
    if (command === 'status' || command === 'reload') {
      client(command, rest).then((code) => process.exit(code), fail)
      return
    }
    if (command !== 'run') throw new UsageError(`unknown command '${command}'`)
    const o = parseRun(rest)
    if (o === 'help') {
      process.stdout.write(`${USAGE}\n`)
      return
    }
    new Supervisor(o).start().catch(fail)
  } catch (e) {
    fail(e)
  }
}
