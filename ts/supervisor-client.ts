// `fdpass status` and `fdpass reload`: ask a running supervisor over its
// own socket, and say what it answered.
import * as fs from 'node:fs'
import * as path from 'node:path'
import { parseArgs } from 'node:util'
import { connect } from './open'
import type { FdSocket } from './socket'
import { USAGE, defaultControl, runtimeDir, splitCommand, supervisorSocketFor } from './run-options'

function fmtMs(ms: number): string {
  return ms < 10_000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`
}

/** The supervisor's socket for status/reload: --socket, the command's (as run derives it), or the only one running. */
async function findSupervisor(socket: string | undefined, command: string[]): Promise<string> {
  if (socket) return socket
  if (process.env.FDPASS_SUPERVISOR) return process.env.FDPASS_SUPERVISOR
  if (command.length > 0) return supervisorSocketFor(process.env.FDPASS_CONTROL ?? defaultControl(command))
  const dir = runtimeDir()
  const candidates = fs
    .readdirSync(dir)
    .filter((f) => f.startsWith('fdpass-') && f.endsWith('.supervisor.sock'))
    .map((f) => path.join(dir, f))
  const live: string[] = []
  for (const c of candidates) {
    try {
      ;(await connect(c, { timeout: 2_000 })).close()
      live.push(c)
    } catch {
      // a stale file of a supervisor that was killed
    }
  }
  if (live.length === 1) return live[0]
  if (live.length === 0) throw Object.assign(new Error(`no fdpass run supervisor found in ${dir}; pass --socket PATH (see fdpass run --help)`), { exitCode: 2 })
  throw Object.assign(new Error(`several supervisors run (${live.join(', ')}); pass --socket PATH`), { exitCode: 2 })
}

export async function client(cmd: 'status' | 'reload', argv: string[]): Promise<number> {
  const { options, command } = splitCommand(argv, new Set(['socket']))
  const { values } = parseArgs({
    args: options,
    options: { socket: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
    allowPositionals: false,
  })
  if (values.help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  let conn: FdSocket
  let where: string
  try {
    where = await findSupervisor(values.socket, command)
    conn = await connect(where, { timeout: 5_000 })
  } catch (e) {
    process.stderr.write(`fdpass ${cmd}: ${(e as Error).message}\n`)
    return 2
  }
  let answer: Record<string, any>
  try {
    await conn.send(JSON.stringify({ cmd, pid: process.pid }))
    answer = JSON.parse((await conn.receive()).data.toString('utf8'))
  } catch (e) {
    process.stderr.write(`fdpass ${cmd}: the supervisor at ${where} did not answer: ${(e as Error).message}\n`)
    return 2
  } finally {
    conn.close()
  }
  if (values.json) process.stdout.write(`${JSON.stringify(answer)}\n`)
  if (cmd === 'reload') {
    if (!values.json) {
      const line =
        answer.outcome === 'committed'
          ? `reload committed: ${
              answer.workers
                ? answer.workers.map((w: any) => `generation ${w.generation} (pid ${w.pid}, worker ${w.worker})`).join(', ') + ' serve'
                : `generation ${answer.generation} (pid ${answer.pid}) serves`
            }, ready in ${fmtMs(answer.durationMs)}`
          : answer.outcome === 'rolled-back'
            ? `reload rolled back: ${answer.reason}`
            : `reload failed: ${answer.reason ?? answer.error}`
      process.stdout.write(`${line}\n`)
    }
    return answer.outcome === 'committed' ? 0 : 1
  }
  if (!values.json) {
    const lines = [
      `supervisor pid ${answer.pid} (fdpass ${answer.version}), up ${fmtMs(answer.uptimeMs)}, ${answer.state}`,
      `  command: ${answer.command.join(' ')}`,
      `  control: ${answer.control}`,
      ...(answer.workers.length > 1
        ? answer.workers.map(
            (w: any) =>
              `  worker ${w.worker}: ${w.serving === null ? 'nothing serves it' : `generation ${w.serving} serves`}${w.connections === null ? '' : `, ${w.connections} open connections`}`,
          )
        : []),
      ...answer.generations.map(
        (g: any) =>
          `  generation ${g.generation}: pid ${g.pid}${answer.workers.length > 1 ? `, worker ${g.worker}` : ''}, ${g.state}${answer.workers.some((w: any) => w.serving === g.generation) ? ' (current)' : ''}, ${g.cause}, up ${fmtMs(g.uptimeMs)}`,
      ),
      `  stored: ${answer.stored.map((s: any) => (s.count > 1 ? `${s.name} x${s.count}` : s.name)).join(', ') || 'nothing'}`,
      `  restarts after a crash: ${answer.restarts} (${answer.recentCrashes} recent); reloads: ${answer.reloads.committed} committed, ${answer.reloads.rolledBack} rolled back, ${answer.reloads.failed} failed, ${answer.reloads.queued} queued`,
    ]
    process.stdout.write(`${lines.join('\n')}\n`)
  }
  return 0
}
