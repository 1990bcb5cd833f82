// A real systemd (Debian's, 252) booted as PID 1 of its own namespaces by
// scripts/systemd-ns.js (docs/systemd-testing.md): the fd store through a
// restart and a crash, and the unit for `fdpass run` of docs/supervisor.md
// ("systemd") through a reload and a crash of the serving generation. Its services share the host's
// network namespace, so this process connects to them on 127.0.0.1.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as http from 'node:http'
import { createRequire } from 'node:module'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { root, sleep } from './helpers'

const systemdNs = createRequire(__filename)('../scripts/systemd-ns.js')

// Only what no install can fix skips (not root, no unshare, no overlayfs);
// a failure to fetch the root filesystem or to boot fails the tests.
const unsupported: string | null = systemdNs.unsupportedReason()
const skipped = unsupported ? ` (skipped: ${unsupported})` : ''

interface Machine {
  pid: number
  share: string
  runDir: string
  exec(argv: string[], options?: { input?: string; timeout?: number }): Promise<{ status: number | null; stdout: string; stderr: string }>
  execOk(argv: string[], options?: { input?: string; timeout?: number }): Promise<string>
  writeFile(file: string, content: string): Promise<string>
  kill(): Promise<void>
}

interface StartEvent {
  event: 'start'
  pid: number
  inherited: string[]
  port: number
  inode: number
  reactor: string | null
}

const NODE = '/usr/local/bin/node'
const FIXTURE = path.join(root, '__test__', 'fixtures', 'fdstore-server.js')
// The units run with the reactor of this test project, as child processes of the other tests do.
const REACTOR = process.env.FDPASS_REACTOR ?? 'uv'

let machine: Machine | null = null
let hostBefore: Record<string, string> = {}
function m(): Machine {
  if (!machine) throw new Error('systemd did not boot (see the beforeAll error)')
  return machine
}

const systemctl = (...args: string[]) => m().execOk(['systemctl', ...args])

/** Properties of a unit, from `systemctl show`. */
async function show(unit: string): Promise<Record<string, string>> {
  const text = await systemctl('show', '-p', 'ActiveState,SubState,MainPID,NRestarts,StatusText,Result', unit)
  return Object.fromEntries(
    text
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  )
}

/** Polls the unit until `check` holds; fails with its last properties and journal. */
async function untilUnit(unit: string, check: (p: Record<string, string>) => boolean, what: string, ms = 60_000): Promise<Record<string, string>> {
  const deadline = Date.now() + ms
  for (;;) {
    const p = await show(unit)
    if (check(p)) return p
    if (Date.now() > deadline) throw new Error(`${unit}: timed out waiting for ${what}; last ${JSON.stringify(p)}\n${await journal(unit)}`)
    await sleep(50)
  }
}

async function journal(unit: string): Promise<string> {
  const r = await m().exec(['journalctl', '-u', unit, '--no-pager', '-n', '40'])
  return r.stdout
}

async function installUnit(name: string, text: string): Promise<void> {
  await m().writeFile(`/etc/systemd/system/${name}`, text)
  await systemctl('daemon-reload')
}

function startEvents(file: string): StartEvent[] {
  if (!fs.existsSync(file)) return []
  return fs
    .readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
}

interface Client {
  /** Resolves once the kernel completed the handshake (the connection is in the accept queue), rejects with e.g. ECONNREFUSED. */
  connected: Promise<void>
  /** What the server wrote before closing: the fixture writes its pid. */
  reply: Promise<string>
  /** Bytes received so far. */
  received(): string
}

/** A connection to 127.0.0.1:port; `request` is written once it is connected. */
function connect(port: number, request?: string): Client {
  const socket = net.connect(port, '127.0.0.1')
  if (request !== undefined) socket.once('connect', () => socket.write(request))
  let data = ''
  socket.setEncoding('utf8')
  socket.on('data', (d) => (data += d))
  const connected = new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const reply = new Promise<string>((resolve, reject) => {
    socket.once('end', () => resolve(data.trim()))
    socket.once('error', reject)
  })
  connected.catch(() => {})
  reply.catch(() => {})
  return { connected, reply, received: () => data }
}

/** A port that was free a moment ago (for a unit whose app binds a fixed port). */
async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await new Promise((r) => server.once('listening', r))
  const { port } = server.address() as net.AddressInfo
  await new Promise((r) => server.close(r))
  return port
}

/** One HTTP request on a new connection; resolves the body or the error code. */
function get(port: number): Promise<{ body?: string; error?: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({ body }))
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }))
    })
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }))
  })
}

/** Requests one after another until stopped: every failure is counted with its code. */
function load(port: number): { stop(): Promise<{ ok: number; failed: string[]; pids: Set<string> }> } {
  let running = true
  const result = { ok: 0, failed: [] as string[], pids: new Set<string>() }
  const loop = (async () => {
    while (running) {
      const r = await get(port)
      if (r.body !== undefined) {
        result.ok++
        result.pids.add(r.body.trim().split(' ').pop() ?? '')
      } else result.failed.push(r.error ?? 'unknown')
    }
  })()
  return {
    stop: async () => {
      running = false
      await loop
      return result
    },
  }
}

/** The unit file with the fixture that keeps its socket in the fd store. */
function fdstoreUnit(share: string, name: string, extra: string): string {
  return `[Unit]
Description=fdpass fd store test (${name})

[Service]
Type=notify
FileDescriptorStoreMax=4
Environment=EVENTS=${share}/${name}.events FDPASS_REACTOR=${REACTOR}
# Holds every start while the test keeps ${name}.hold: connections made
# meanwhile can only be in the listening socket's backlog.
ExecStartPre=/bin/sh -c 'while [ -e ${share}/${name}.hold ]; do sleep 0.05; done'
ExecStart=${NODE} ${FIXTURE}
${extra}
`
}

/** What a systemd booting without namespaces of its own would change on the host (hostname, sysctls). */
function hostState(): Record<string, string> {
  const state: Record<string, string> = { hostname: os.hostname() }
  for (const key of ['kernel/pid_max', 'fs/nr_open', 'fs/file-max']) state[key] = fs.readFileSync(`/proc/sys/${key}`, 'utf8').trim()
  return state
}

/** Pids of the host's processes in the namespace `ns` (as /proc/PID/ns/KIND reads). */
function processesIn(ns: string, kind = 'pid'): number[] {
  const found: number[] = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (fs.readlinkSync(`/proc/${entry}/ns/${kind}`) === ns) found.push(Number(entry))
    } catch {
      // exited meanwhile
    }
  }
  return found
}

/** Whether the cgroup2 hierarchy has `name` at its root, from a mount that lives only as long as the command. */
function cgroupExists(name: string): boolean {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-cgroup-'))
  try {
    const r = spawnSync('unshare', ['--mount', '--propagation=private', '/bin/sh', '-c', 'mount -t cgroup2 cgroup2 "$1" && test -d "$1/$2"', 'sh', dir, name])
    return r.status === 0
  } finally {
    fs.rmdirSync(dir)
  }
}

// The hot-restart example app (docs/handoff.md) under `fdpass run`: each generation takes the port from the previous one.
const RUN_COMMAND = `${NODE} ${path.join(root, 'bin', 'fdpass.js')} run -- ${NODE} ${path.join(root, 'examples', 'hot-restart', 'server.js')}`

// Each unit gets a control socket of its own: the default is named after the
// working directory and the command, the same for every unit here.
function fdpassRunUnit(port: number, notifyAccess: 'main' | 'all', execStart: string, extra = ''): string {
  return `[Unit]
Description=fdpass run (NotifyAccess=${notifyAccess})

[Service]
Type=notify
NotifyAccess=${notifyAccess}
ExecStart=${execStart}
ExecReload=/bin/kill -HUP $MAINPID
Environment=PORT=${port} QUIET=1 FDPASS_REACTOR=${REACTOR} FDPASS_CONTROL=/run/fdpass-${port}.sock
${extra}
`
}

/** The command line of a process inside. */
async function commandOf(pid: string): Promise<string> {
  return (await m().execOk(['cat', `/proc/${pid}/cmdline`])).replace(/\0/g, ' ')
}

/** The PORT= of a unit's environment. */
async function unitPort(unit: string): Promise<string> {
  const env = await systemctl('show', '-p', 'Environment', '--value', unit)
  return /PORT=(\d+)/.exec(env)?.[1] ?? ''
}

describe.skipIf(unsupported !== null)(`a real systemd in namespaces${skipped}`, () => {
  beforeAll(async () => {
    // Cached after the first run; debootstrap takes about a minute.
    const rootfs = systemdNs.create()
    hostBefore = hostState()
    machine = await systemdNs.boot({ rootfs })
  }, 600_000)

  afterAll(async () => {
    // The last test ends it and checks what is left; this is for when a test failed before.
    if (machine) await machine.kill()
  }, 60_000)

  test('it is systemd 252 or later as PID 1, driven with systemctl', async () => {
    const version = await systemctl('--version')
    expect(Number(/^systemd (\d+)/.exec(version)?.[1])).toBeGreaterThanOrEqual(252)
    expect((await m().execOk(['cat', '/proc/1/comm'])).trim()).toBe('systemd')
    expect(['running', 'degraded']).toContain((await m().exec(['systemctl', 'is-system-running'])).stdout.trim())
  })

  test('Type=notify + FileDescriptorStoreMax=: after systemctl restart, listenFds() returns the same socket, and a client that connects while no process runs is served', async () => {
    const share = m().share
    const hold = path.join(share, 'fdstore.hold')
    await installUnit('fdstore.service', fdstoreUnit(share, 'fdstore', ''))
    await systemctl('start', 'fdstore.service')
    const [first] = startEvents(path.join(share, 'fdstore.events'))
    expect(first).toMatchObject({ inherited: [], reactor: REACTOR })
    expect(await connect(first.port).reply).toBe(String(first.pid))

    fs.writeFileSync(hold, '')
    await systemctl('restart', '--no-block', 'fdstore.service')
    // start-pre comes after the old process was stopped: nothing serves the port now.
    await untilUnit('fdstore.service', (p) => p.SubState === 'start-pre', 'the restart to wait in ExecStartPre')
    const client = connect(first.port)
    // Without the fd store the socket closed with the old process: ECONNREFUSED.
    await client.connected
    await sleep(200)
    expect(client.received()).toBe('')
    fs.rmSync(hold)

    await untilUnit('fdstore.service', (p) => p.ActiveState === 'active', 'the new process to be ready')
    const [, second] = startEvents(path.join(share, 'fdstore.events'))
    expect(second.pid).not.toBe(first.pid)
    expect(second.inherited).toEqual(['http'])
    expect(second).toMatchObject({ inode: first.inode, port: first.port })
    expect(await client.reply).toBe(String(second.pid))
    await systemctl('stop', 'fdstore.service')
  }, 120_000)

  test('Restart=always after systemctl kill -s SIGKILL: the new process gets the stored socket and serves every connection queued meanwhile (0 refused)', async () => {
    const share = m().share
    const unit = 'fdstore-crash.service'
    const hold = path.join(share, 'fdstore-crash.hold')
    await installUnit(unit, fdstoreUnit(share, 'fdstore-crash', 'Restart=always\nRestartSec=100ms'))
    await systemctl('start', unit)
    const [first] = startEvents(path.join(share, 'fdstore-crash.events'))
    expect(first.inherited).toEqual([])

    fs.writeFileSync(hold, '')
    await systemctl('kill', '-s', 'SIGKILL', '--kill-who=main', unit)
    const crashed = await untilUnit(unit, (p) => p.SubState === 'start-pre' && p.NRestarts === '1', 'the automatic restart to wait in ExecStartPre')
    expect(crashed.MainPID).toBe('0')

    const clients = Array.from({ length: 20 }, () => connect(first.port))
    const outcomes = await Promise.allSettled(clients.map((c) => c.connected))
    const refused = outcomes.filter((o) => o.status === 'rejected').map((o) => (o as PromiseRejectedResult).reason.code)
    expect(refused).toEqual([])
    fs.rmSync(hold)

    await untilUnit(unit, (p) => p.ActiveState === 'active', 'the restarted process to be ready')
    const [, second] = startEvents(path.join(share, 'fdstore-crash.events'))
    expect(second.inherited).toEqual(['http'])
    expect(second).toMatchObject({ inode: first.inode, port: first.port })
    const replies = await Promise.all(clients.map((c) => c.reply))
    expect(replies).toEqual(clients.map(() => String(second.pid)))
    await systemctl('stop', unit)
  }, 120_000)

  test("README's unit for `fdpass run` (Type=notify, the bin as ExecStart, NotifyAccess=main): systemctl reload replaces the generation with 0 failed requests; the supervisor stays the main process", async () => {
    const port = await freePort()
    await installUnit('fdpass-run.service', fdpassRunUnit(port, 'main', RUN_COMMAND))
    await systemctl('start', 'fdpass-run.service')
    const started = await show('fdpass-run.service')
    expect(started).toMatchObject({ ActiveState: 'active', SubState: 'running', StatusText: 'serving (generation 1)' })
    expect(await commandOf(started.MainPID)).toContain('bin/fdpass.js run')
    const first = await get(port)
    expect(first.body).toMatch(/^hello from generation \d+$/m)

    const traffic = load(port)
    await systemctl('reload', 'fdpass-run.service')
    const reloaded = await untilUnit(
      'fdpass-run.service',
      (p) => p.StatusText === 'serving (generation 2)' && p.ActiveState === 'active',
      'generation 2 to serve',
    )
    await sleep(300)
    const result = await traffic.stop()
    expect(result.failed).toEqual([])
    expect(result.ok).toBeGreaterThan(0)
    expect(reloaded.MainPID).toBe(started.MainPID)
    const second = await get(port)
    expect(second.body).toMatch(/^hello from generation \d+$/m)
    expect(second.body).not.toBe(first.body)
  }, 120_000)

  test('ExecReload=fdpass reload --socket: systemctl reload returns once the new generation serves', async () => {
    const port = await freePort()
    const unit = 'fdpass-run-reload.service'
    const reload = `ExecReload=${NODE} ${path.join(root, 'bin', 'fdpass.js')} reload --socket /run/fdpass-${port}.supervisor.sock`
    await installUnit(unit, fdpassRunUnit(port, 'main', RUN_COMMAND).replace('ExecReload=/bin/kill -HUP $MAINPID', reload))
    await systemctl('start', unit)
    const first = (await get(port)).body
    expect(first).toMatch(/^hello from generation \d+$/m)
    await systemctl('reload', unit)
    // No waiting: `fdpass reload` exits once the new generation serves.
    const second = (await get(port)).body
    expect(second).toMatch(/^hello from generation \d+$/m)
    expect(second).not.toBe(first)
    await untilUnit(unit, (p) => p.StatusText === 'serving (generation 2)', 'the supervisor to tell systemd')
    await systemctl('stop', unit)
  }, 120_000)

  test('when the serving generation of `fdpass run` is SIGKILLed, the supervisor starts another on the same listening socket: the unit stays active with the same main process, and no connection is refused', async () => {
    const unit = 'fdpass-run.service'
    const port = Number(await unitPort(unit))
    const before = await show(unit)
    expect(before.ActiveState).toBe('active')
    const serving = (await get(port)).body ?? ''
    const pid = /generation (\d+)/.exec(serving)?.[1]
    expect(pid).toBeDefined()
    const traffic = load(port)
    await sleep(200)
    await m().execOk(['kill', '-KILL', pid!])
    const deadline = Date.now() + 60_000
    let now = serving
    while (now === serving && Date.now() < deadline) {
      await sleep(50)
      now = (await get(port)).body ?? serving
    }
    await sleep(300)
    const result = await traffic.stop()
    expect(now).toMatch(/^hello from generation \d+$/m)
    expect(now).not.toBe(serving)
    // Only a request in flight on the killed process may fail (the load sends one at a time); none is refused.
    expect(result.failed.filter((code) => code === 'ECONNREFUSED')).toEqual([])
    expect(result.failed.length).toBeLessThanOrEqual(1)
    expect(await show(unit)).toMatchObject({ ActiveState: 'active', MainPID: before.MainPID })
    await systemctl('stop', unit)
  }, 120_000)

  test('`fdpass run` with FileDescriptorStoreMax= and Restart=always: after a SIGKILL of the supervisor itself, systemd restarts it with the listeners it kept, and connections made meanwhile are served (0 refused)', async () => {
    const share = m().share
    const unit = 'fdpass-run-fdstore.service'
    const hold = path.join(share, 'fdpass-run-fdstore.hold')
    const port = await freePort()
    const gate = `ExecStartPre=/bin/sh -c 'while [ -e ${hold} ]; do sleep 0.05; done'`
    // systemd sets $FDSTORE (FileDescriptorStoreMax=) for the service only from 254 on;
    // the supervisor relays its listeners to systemd's fd store only when it is set.
    await installUnit(
      unit,
      fdpassRunUnit(port, 'main', RUN_COMMAND, `FileDescriptorStoreMax=16\nEnvironment=FDSTORE=16\nRestart=always\nRestartSec=100ms\n${gate}`),
    )
    await systemctl('start', unit)
    const started = await show(unit)
    const first = (await get(port)).body
    expect(first).toMatch(/^hello from generation \d+$/m)

    fs.writeFileSync(hold, '')
    await systemctl('kill', '-s', 'SIGKILL', '--kill-who=main', unit)
    await untilUnit(unit, (p) => p.SubState === 'start-pre' && p.NRestarts === '1', 'the automatic restart to wait in ExecStartPre')
    const clients = Array.from({ length: 10 }, () => connect(port, 'GET / HTTP/1.0\r\n\r\n'))
    const outcomes = await Promise.allSettled(clients.map((c) => c.connected))
    const refused = outcomes.filter((o) => o.status === 'rejected').map((o) => (o as PromiseRejectedResult).reason.code)
    fs.rmSync(hold)
    expect(refused).toEqual([])
    await untilUnit(unit, (p) => p.ActiveState === 'active', 'the restarted supervisor to be ready')
    for (const reply of await Promise.all(clients.map((c) => c.reply))) expect(reply).toMatch(/\r\n\r\nhello from generation \d+$/)
    expect((await get(port)).body).toMatch(/^hello from generation \d+$/m)
    expect((await show(unit)).MainPID).not.toBe(started.MainPID)
    await systemctl('stop', unit)
  }, 120_000)

  test("a wrapper that forks (as npx does) in ExecStart: with NotifyAccess=main systemd drops the supervisor's READY=1 and the start never completes; NotifyAccess=all takes its MAINPID= and reload reaches it", async () => {
    const wrapped = `/bin/sh -c '${RUN_COMMAND}; exit $$?'`
    const mainPort = await freePort()
    const unit = 'fdpass-run-wrapped-main.service'
    await installUnit(unit, fdpassRunUnit(mainPort, 'main', wrapped))
    await systemctl('start', '--no-block', unit)
    const dropped = 'reception only permitted for main PID'
    const deadline = Date.now() + 60_000
    while (!(await journal(unit)).includes(dropped) && Date.now() < deadline) await sleep(100)
    expect(await journal(unit)).toContain(dropped)
    // The app serves, but systemd still waits for READY=1 (until TimeoutStartSec=, then it fails the unit).
    expect((await get(mainPort)).body).toMatch(/^hello from generation \d+$/m)
    expect(await show(unit)).toMatchObject({ ActiveState: 'activating', SubState: 'start' })
    await systemctl('stop', unit)

    const allPort = await freePort()
    await installUnit('fdpass-run-wrapped-all.service', fdpassRunUnit(allPort, 'all', wrapped))
    await systemctl('start', 'fdpass-run-wrapped-all.service')
    const started = await show('fdpass-run-wrapped-all.service')
    expect(started.ActiveState).toBe('active')
    expect(await commandOf(started.MainPID)).toContain('bin/fdpass.js run')
    const first = await get(allPort)
    await systemctl('reload', 'fdpass-run-wrapped-all.service')
    await untilUnit('fdpass-run-wrapped-all.service', (p) => p.StatusText === 'serving (generation 2)', 'generation 2 to serve')
    const second = await get(allPort)
    expect(second.body).toMatch(/^hello from generation \d+$/m)
    expect(second.body).not.toBe(first.body)
    await systemctl('stop', 'fdpass-run-wrapped-all.service')
  }, 120_000)

  // Last: it ends the machine.
  test("SIGKILL of its PID 1 leaves no process, mount, cgroup or file behind, and the host's hostname and sysctls are as they were", async () => {
    const { pid, runDir } = m()
    const unsharePid = (m() as Machine & { unsharePid: number }).unsharePid
    const pidNs = fs.readlinkSync(`/proc/${pid}/ns/pid`)
    const mountNs = fs.readlinkSync(`/proc/${pid}/ns/mnt`)
    const cgroup = path.basename(runDir)
    // What there is to clean up, as the unshare process (in the namespace's mounts, not chrooted) sees it.
    expect(fs.readFileSync(`/proc/${unsharePid}/mounts`, 'utf8')).toContain(`overlay ${runDir}/root overlay`)
    expect(processesIn(pidNs).length).toBeGreaterThan(2)
    expect(cgroupExists(cgroup)).toBe(true)

    await m().kill()
    machine = null
    expect(processesIn(pidNs)).toEqual([])
    expect(processesIn(mountNs, 'mnt')).toEqual([])
    expect(fs.readFileSync('/proc/mounts', 'utf8')).not.toContain(runDir)
    expect(cgroupExists(cgroup)).toBe(false)
    expect(fs.existsSync(runDir)).toBe(false)
    // It booted, served and stopped without touching the host's hostname or sysctls.
    expect(hostState()).toEqual(hostBefore)
  }, 60_000)
})
