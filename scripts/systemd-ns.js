#!/usr/bin/env node
// A real systemd for the tests, on a machine whose PID 1 is not systemd:
// Debian's systemd boots as PID 1 of its own PID, mount, UTS, IPC and cgroup
// namespaces, in a chroot. It shares the host's network namespace, so the
// services it runs listen on the host's 127.0.0.1, where the tests connect.
// systemd-nspawn would be the usual tool, but it refuses hosts with a
// cgroup v1 layout; this needs only unshare, nsenter, mount and chroot.
//
//   node scripts/systemd-ns.js create          # debootstrap once into the cache; prints the rootfs
//   node scripts/systemd-ns.js boot            # prints the host pid of its PID 1 once it is running
//   node scripts/systemd-ns.js exec [PID] -- systemctl status
//   node scripts/systemd-ns.js kill [PID]      # SIGKILL its PID 1; removes everything it made
//
// PID may be left out while only one is running.
//
// The root filesystem is cached in $FDPASS_RUNTIMES_DIR, else $FDPASS_TOOLS
// (default ~/.cache/fdpass), next to scripts/runtimes.js's runtimes; each
// boot writes to an overlay of its own, so the cache stays as debootstrap
// left it and several instances can run at once. Inside, the checkout and
// the Node binary are mounted read-only at the same paths as outside (Node
// also as /usr/local/bin/node), and a per-boot shared directory read-write.
// Needs root (debootstrap, mount), and Linux with overlayfs and cgroup2.
'use strict'
const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const checkout = path.join(__dirname, '..')
const tools = process.env.FDPASS_RUNTIMES_DIR || process.env.FDPASS_TOOLS || path.join(os.homedir(), '.cache', 'fdpass')

// Pinned, so that every cached root filesystem is the same recipe; a cache
// made by another recipe is rebuilt. bookworm has systemd 252.
const SUITE = 'bookworm'
// $FDPASS_DEBIAN_MIRROR for a local mirror or proxy.
const MIRROR = process.env.FDPASS_DEBIAN_MIRROR || 'http://deb.debian.org/debian'
const DEBOOTSTRAP = ['--variant=minbase', '--include=systemd,dbus,procps', SUITE]
const RECIPE = `debootstrap ${DEBOOTSTRAP.join(' ')} (fdpass masks v1)`
const rootfsPath = path.join(tools, `systemd-${SUITE}`)

// Units that would reach out of the namespaces into the host (binfmt_misc
// is global: systemd-binfmt flushes the host's qemu-user registrations;
// sysctl, kernel modules, udev, the hardware clock) or that only cost time
// here (timers of apt and dpkg, getty on a console that does not exist).
// /proc/sys and /sys are read-only inside as well, as in any container.
const MASKED = [
  'systemd-binfmt.service',
  'proc-sys-fs-binfmt_misc.automount',
  'proc-sys-fs-binfmt_misc.mount',
  'systemd-sysctl.service',
  'systemd-modules-load.service',
  'systemd-udevd.service',
  'systemd-udev-trigger.service',
  'systemd-udev-settle.service',
  'systemd-hwdb-update.service',
  'systemd-timesyncd.service',
  'systemd-random-seed.service',
  'sys-kernel-debug.mount',
  'sys-kernel-tracing.mount',
  'sys-kernel-config.mount',
  'sys-fs-fuse-connections.mount',
  'dev-hugepages.mount',
  'dev-mqueue.mount',
  'getty.target',
  'console-getty.service',
  'apt-daily.timer',
  'apt-daily-upgrade.timer',
  'dpkg-db-backup.timer',
  'e2scrub_all.timer',
  'fstrim.timer',
]

class SystemdNsError extends Error {
  constructor(message) {
    super(message)
    this.name = 'SystemdNsError'
    this.code = 'ERR_FDPASS_SYSTEMD_NS'
  }
}

function which(command) {
  for (const dir of (process.env.PATH || '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(dir, command)
    try {
      fs.accessSync(p, fs.constants.X_OK)
      return p
    } catch {}
  }
  return null
}

/**
 * Why this machine cannot boot a systemd in namespaces, or null when it can.
 * Only what no install can fix: the tests skip with this reason.
 */
function unsupportedReason() {
  if (process.platform !== 'linux') return `Linux only, this is ${process.platform}`
  if (process.getuid() !== 0) return 'needs root (unshare of PID and mount namespaces, mount, chroot, debootstrap)'
  for (const tool of ['unshare', 'nsenter', 'mount', 'chroot']) if (!which(tool)) return `${tool} (util-linux/coreutils) is not installed`
  const filesystems = fs.readFileSync('/proc/filesystems', 'utf8')
  for (const fsType of ['overlay', 'cgroup2']) if (!new RegExp(`\\s${fsType}$`, 'm').test(filesystems)) return `the kernel has no ${fsType} filesystem`
  return null
}

function run(command, args, what) {
  const r = spawnSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  if (r.error) throw new SystemdNsError(`${what}: cannot run ${command}: ${r.error.message}`)
  if (r.status !== 0) {
    const output = `${r.stdout}${r.stderr}`.trim().split('\n').slice(-15).join('\n')
    throw new SystemdNsError(`${what}: ${command} ${args.join(' ')} exited with ${r.status ?? r.signal}:\n${output}`)
  }
  return r.stdout
}

/** debootstrap, installed from the distribution when missing (Debian and Ubuntu hosts). */
function ensureDebootstrap(log) {
  if (which('debootstrap')) return
  if (!which('apt-get')) throw new SystemdNsError('debootstrap is not installed and there is no apt-get to install it: install debootstrap')
  log('installing debootstrap with apt-get')
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '-qq', 'debootstrap'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  if (install().status !== 0) {
    run('apt-get', ['update', '-qq'], 'updating the package lists to install debootstrap')
    if (install().status !== 0) throw new SystemdNsError('apt-get could not install debootstrap: install it by hand')
  }
  if (!which('debootstrap')) throw new SystemdNsError('apt-get installed debootstrap but it is not on PATH')
}

function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/**
 * Takes the cache's lock (a directory with the owner's pid), waiting while a
 * live process holds it: the two test projects (and other checkouts on the
 * machine) start at once, and one debootstrap is enough. Returns a release function.
 */
function lockCache(lock, log, timeoutMs = 15 * 60_000) {
  const deadline = Date.now() + timeoutMs
  let said = false
  for (;;) {
    try {
      fs.mkdirSync(lock)
      fs.writeFileSync(path.join(lock, 'pid'), String(process.pid))
      return () => fs.rmSync(lock, { recursive: true, force: true })
    } catch (e) {
      if (e.code !== 'EEXIST') throw e
    }
    let owner = NaN
    try {
      owner = Number(fs.readFileSync(path.join(lock, 'pid'), 'utf8'))
    } catch {}
    let age = 0
    try {
      age = Date.now() - fs.statSync(lock).mtimeMs
    } catch {}
    // A dead owner, or one that died between mkdir and writing its pid.
    if (Number.isInteger(owner) ? !alive(owner) : age > 60_000) {
      fs.rmSync(lock, { recursive: true, force: true })
      continue
    }
    if (Date.now() > deadline) throw new SystemdNsError(`waited ${timeoutMs / 60_000} min for process ${owner} to finish building ${rootfsPath} (lock ${lock})`)
    if (!said) log(`waiting for process ${owner}, which is building ${rootfsPath}`)
    said = true
    sleepSync(500)
  }
}

function cached() {
  const stamp = path.join(rootfsPath, '.fdpass-recipe')
  return fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === RECIPE
}

/**
 * The cached root filesystem with systemd, made by debootstrap the first
 * time (about a minute, from deb.debian.org). Returns its path.
 */
function create({ log = (line) => process.stderr.write(`[systemd-ns] ${line}\n`) } = {}) {
  const reason = unsupportedReason()
  if (reason) throw new SystemdNsError(`cannot make a systemd root filesystem here: ${reason}`)
  if (cached()) return rootfsPath
  fs.mkdirSync(tools, { recursive: true })
  const release = lockCache(path.join(tools, `.systemd-${SUITE}.lock`), log)
  try {
    if (cached()) return rootfsPath
    ensureDebootstrap(log)
    build(log)
  } finally {
    release()
  }
  log(`cached ${rootfsPath}`)
  return rootfsPath
}

/** debootstrap into a directory beside the cache, then renamed into place: a boot never finds a half-made rootfs. */
function build(log) {
  // Whoever holds the lock owns these: any found now were left by a build that was killed.
  for (const name of fs.readdirSync(tools)) {
    if (name.startsWith(`.systemd-${SUITE}-building-`)) fs.rmSync(path.join(tools, name), { recursive: true, force: true })
  }
  const building = fs.mkdtempSync(path.join(tools, `.systemd-${SUITE}-building-`))
  try {
    log(`debootstrap ${DEBOOTSTRAP.join(' ')} from ${MIRROR} into ${building}`)
    const r = spawnSync('debootstrap', [...DEBOOTSTRAP, building, MIRROR], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    if (r.status !== 0) {
      const output = `${r.stdout}${r.stderr}`.trim().split('\n').slice(-15).join('\n')
      const logFile = path.join(building, 'debootstrap', 'debootstrap.log')
      const detail = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').trim().split('\n').slice(-10).join('\n') : ''
      throw new SystemdNsError(
        `debootstrap of ${SUITE} from ${MIRROR} failed (exit ${r.status ?? r.signal}); is the mirror reachable? ($FDPASS_DEBIAN_MIRROR sets another)\n${output}\n${detail}`,
      )
    }
    if (!fs.existsSync(path.join(building, 'lib/systemd/systemd'))) throw new SystemdNsError(`debootstrap finished but ${building} has no lib/systemd/systemd`)
    const units = path.join(building, 'etc/systemd/system')
    for (const unit of MASKED) {
      fs.rmSync(path.join(units, unit), { force: true })
      fs.symlinkSync('/dev/null', path.join(units, unit))
    }
    fs.writeFileSync(path.join(building, 'etc/hostname'), 'fdpass-systemd\n')
    // systemd makes a transient machine id when the file is empty.
    fs.writeFileSync(path.join(building, 'etc/machine-id'), '')
    fs.rmSync(path.join(building, 'var/cache/apt/archives'), { recursive: true, force: true })
    fs.mkdirSync(path.join(building, 'var/cache/apt/archives/partial'), { recursive: true })
    fs.writeFileSync(path.join(building, '.fdpass-recipe'), RECIPE)
    fs.rmSync(rootfsPath, { recursive: true, force: true })
    fs.renameSync(building, rootfsPath)
  } finally {
    fs.rmSync(building, { recursive: true, force: true })
  }
}

// Runs as PID 1 of the new PID namespace, in a new mount namespace whose
// mounts are private (nothing propagates to the host). It builds the
// container's root on the overlay, then moves itself into a cgroup of its own
// and enters a cgroup namespace rooted there, so that systemd sees a whole
// cgroup2 hierarchy of its own, then execs systemd in the chroot.
const STAGE1 = String.raw`
set -eu
root="$RUN/root"
mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$RUN/upper,workdir=$RUN/work" "$root"
mount -t proc proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$root/run"
mount -t tmpfs -o mode=755,nosuid dev "$root/dev"
for node in null zero full random urandom tty; do
  touch "$root/dev/$node"
  mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mkdir -p "$root$CHECKOUT" "$root$SHARE" "$root$(dirname "$NODE")"
touch "$root/usr/local/bin/node"
[ -e "$root$NODE" ] || touch "$root$NODE"
for bound in "$CHECKOUT" "$NODE"; do
  mount --bind "$bound" "$root$bound"
  mount -o remount,bind,ro "$root$bound"
done
mount --bind "$NODE" "$root/usr/local/bin/node"
mount -o remount,bind,ro "$root/usr/local/bin/node"
mount --bind "$SHARE" "$root$SHARE"
mkdir "$RUN/cgroup"
mount -t cgroup2 cgroup2 "$RUN/cgroup"
mkdir "$RUN/cgroup/$CGROUP"
echo 0 > "$RUN/cgroup/$CGROUP/cgroup.procs"
umount "$RUN/cgroup"
exec unshare --cgroup /bin/sh -c '
  set -eu
  mount -t cgroup2 cgroup2 "$RUN/root/sys/fs/cgroup"
  exec env -i container=fdpass-systemd-ns "$(command -v chroot)" "$RUN/root" /lib/systemd/systemd --system
'
`

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Whether pid is a process that has not exited (a zombie has). */
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

/** The child the unshare process forked: PID 1 of the new namespace. */
async function namespacePid1(unsharePid, deadline) {
  const children = `/proc/${unsharePid}/task/${unsharePid}/children`
  while (Date.now() < deadline) {
    let text = ''
    try {
      text = fs.readFileSync(children, 'utf8').trim()
    } catch {
      return null
    }
    if (text) return Number(text.split(/\s+/)[0])
    await sleep(20)
  }
  return null
}

function tail(file, lines = 30) {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/**
 * A booted systemd: `pid` is its PID 1 as the host sees it; `share` is a
 * directory at the same path inside and outside; `exec()` runs a command
 * inside (in the chroot, in its namespaces); `kill()` ends it all.
 */
class Machine {
  constructor({ pid, unsharePid, runDir, share, cgroup, child, watchdog }) {
    this.pid = pid
    this.unsharePid = unsharePid
    this.runDir = runDir
    this.share = share
    this.cgroup = cgroup
    this.root = path.join(runDir, 'root')
    this.log = path.join(runDir, 'boot.log')
    this.child = child
    this.watchdog = watchdog
  }

  /** nsenter's arguments for a command inside; the environment is systemd's, not the caller's. */
  execArgs(argv) {
    return [
      `--target=${this.pid}`,
      '--mount',
      '--pid',
      '--uts',
      '--ipc',
      '--cgroup',
      '--root',
      '--wd',
      '--',
      '/usr/bin/env',
      '-i',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'LANG=C.UTF-8',
      'SYSTEMD_COLORS=0',
      'SYSTEMD_PAGER=',
      ...argv,
    ]
  }

  /** Runs argv inside; resolves { status, signal, stdout, stderr } (never rejects on a non-zero exit). */
  exec(argv, { input, timeout = 120_000 } = {}) {
    return new Promise((resolve, reject) => {
      const child = spawn('nsenter', this.execArgs(argv), { stdio: ['pipe', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d) => (stdout += d))
      child.stderr.on('data', (d) => (stderr += d))
      const timer = setTimeout(() => child.kill('SIGKILL'), timeout)
      child.on('error', (e) => {
        clearTimeout(timer)
        reject(e)
      })
      child.on('close', (status, signal) => {
        clearTimeout(timer)
        resolve({ status, signal, stdout, stderr })
      })
      child.stdin.on('error', () => {})
      child.stdin.end(input ?? '')
    })
  }

  /** Like exec(), but a non-zero exit is an error that carries the command's output. */
  async execOk(argv, options) {
    const r = await this.exec(argv, options)
    if (r.status !== 0) {
      const e = new SystemdNsError(`${argv.join(' ')} exited with ${r.status ?? r.signal} inside the systemd namespace:\n${(r.stdout + r.stderr).trim()}`)
      e.result = r
      throw e
    }
    return r.stdout
  }

  /** Writes a file inside (e.g. a unit in /etc/systemd/system). */
  writeFile(file, content) {
    return this.execOk(['/bin/sh', '-c', 'mkdir -p "$(dirname "$1")" && cat > "$1"', 'sh', file], { input: content })
  }

  /** Kills PID 1 with SIGKILL (the kernel then kills every process of the namespace), and removes its cgroup and run directory. */
  async kill() {
    if (this.watchdog && this.watchdog.exitCode === null && this.watchdog.signalCode === null) {
      this.watchdog.kill('SIGKILL')
    }
    if (alive(this.pid)) process.kill(this.pid, 'SIGKILL')
    const deadline = Date.now() + 30_000
    while ((alive(this.pid) || alive(this.unsharePid)) && Date.now() < deadline) {
      await sleep(20)
    }
    if (alive(this.pid)) throw new SystemdNsError(`PID 1 of the systemd namespace (${this.pid}) is still alive 30 s after SIGKILL`)
    cleanUp(this.runDir, this.cgroup)
  }
}

// Removes what a dead namespace leaves on the host: its cgroup subtree (from
// a mount of cgroup2 that lives only as long as this script, in a mount
// namespace of its own) and the run directory. $1 is the run directory, $2
// the cgroup's name.
const CLEANUP = String.raw`
set -u
mkdir -p "$1/cgroup"
unshare --mount --propagation=private /bin/sh -c '
  mount -t cgroup2 cgroup2 "$1/cgroup" || exit 1
  [ -d "$1/cgroup/$2" ] || exit 0
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    find "$1/cgroup/$2" -depth -type d -exec rmdir {} + 2>/dev/null
    [ -d "$1/cgroup/$2" ] || exit 0
    sleep 0.2
  done
  echo "cannot remove the cgroup $2: a process is still in it" >&2
  exit 1
' sh "$1" "$2" || exit 1
rm -rf "$1"
`

function cleanUp(runDir, cgroup) {
  const r = spawnSync('/bin/sh', ['-c', CLEANUP, 'sh', runDir, cgroup], { encoding: 'utf8' })
  if (r.status !== 0) throw new SystemdNsError(`could not clean up after a killed systemd namespace (${runDir}): ${r.stderr.trim()}`)
}

/** The run directory and state file of every namespace this script booted that wrote one (one still booting has none yet). */
function* bootedStates() {
  for (const name of fs.readdirSync(os.tmpdir())) {
    if (!name.startsWith('fdpass-systemd-')) continue
    const runDir = path.join(os.tmpdir(), name)
    let state
    try {
      state = JSON.parse(fs.readFileSync(path.join(runDir, 'state.json'), 'utf8'))
    } catch {
      continue // still booting, or not ours
    }
    yield { runDir, state }
  }
}

/** Removes what namespaces whose PID 1 is gone left behind (their owner was killed before it could). */
function sweep() {
  for (const { runDir, state } of bootedStates()) {
    if (!alive(state.pid)) cleanUp(runDir, state.cgroup)
  }
}

/**
 * Boots systemd as PID 1 of new namespaces on an overlay of the cached
 * rootfs; resolves once `systemctl is-system-running` says running or
 * degraded. With `tie: true` (the default), a watchdog kills it when this
 * process exits without calling kill(), so that a crashed test leaves
 * nothing running.
 */
async function boot({ rootfs = create(), bootTimeout = 120_000, tie = true } = {}) {
  const reason = unsupportedReason()
  if (reason) throw new SystemdNsError(`cannot boot systemd in namespaces here: ${reason}`)
  if (!fs.existsSync(path.join(rootfs, 'lib/systemd/systemd'))) throw new SystemdNsError(`${rootfs} has no lib/systemd/systemd: run create first`)
  sweep()
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-systemd-'))
  const share = path.join(runDir, 'share')
  for (const dir of ['root', 'upper', 'work', 'share']) fs.mkdirSync(path.join(runDir, dir))
  fs.chmodSync(share, 0o777)
  const cgroup = path.basename(runDir)
  const logFile = path.join(runDir, 'boot.log')
  const logFd = fs.openSync(logFile, 'a')
  const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', RUN: runDir, ROOTFS: rootfs, CHECKOUT: checkout, NODE: process.execPath, SHARE: share, CGROUP: cgroup }
  const child = spawn('unshare', ['--pid', '--fork', '--kill-child', '--mount', '--propagation=private', '--uts', '--ipc', '/bin/sh', '-c', STAGE1], {
    stdio: ['ignore', logFd, logFd],
    env,
    detached: !tie,
  })
  fs.closeSync(logFd)
  let exited = null
  child.on('exit', (code, signal) => (exited = signal ?? code))
  const deadline = Date.now() + bootTimeout
  const pid = await namespacePid1(child.pid, deadline)
  if (!pid) {
    await sleep(100)
    const log = tail(logFile)
    cleanUp(runDir, cgroup)
    throw new SystemdNsError(`unshare exited (${exited}) before its child started: boot log:\n${log}`)
  }
  fs.writeFileSync(path.join(runDir, 'state.json'), JSON.stringify({ pid, unsharePid: child.pid, cgroup }))
  let watchdog = null
  if (tie) {
    // Reads until this process's end closes the pipe, then kills PID 1 and cleans up.
    const watch = `read _ || true; kill -KILL "$3" 2>/dev/null; while [ -e "/proc/$3" ]; do sleep 0.1; done; ${CLEANUP}`
    watchdog = spawn('/bin/sh', ['-c', watch, 'sh', runDir, cgroup, String(pid)], { stdio: ['pipe', 'ignore', 'ignore'] })
    watchdog.unref()
    watchdog.stdin.unref?.()
  }
  // Never what keeps this process running: a process that ends without kill() leaves it to the watchdog.
  child.unref()
  const machine = new Machine({ pid, unsharePid: child.pid, runDir, share, cgroup, child, watchdog })
  try {
    await waitRunning(machine, deadline, () => exited)
  } catch (e) {
    await machine.kill().catch(() => {})
    throw e
  }
  return machine
}

async function waitRunning(machine, deadline, exited) {
  let last = ''
  while (Date.now() < deadline) {
    if (exited() !== null || !alive(machine.pid)) {
      throw new SystemdNsError(`systemd exited during boot (${exited()}); its log:\n${tail(machine.log)}`)
    }
    const r = await machine.exec(['systemctl', 'is-system-running'], { timeout: 30_000 })
    last = (r.stdout + r.stderr).trim()
    if (r.stdout.trim() === 'running') return
    if (r.stdout.trim() === 'degraded') {
      // Usable; say which units failed, for whoever reads the test's output.
      const failed = await machine.exec(['systemctl', '--failed', '--no-legend', '--plain'])
      process.stderr.write(`[systemd-ns] booted degraded; failed units:\n${failed.stdout}`)
      return
    }
    if (['maintenance', 'stopping'].includes(r.stdout.trim())) break
    await sleep(200)
  }
  const failed = await machine.exec(['systemctl', '--failed', '--no-legend', '--plain'], { timeout: 10_000 }).catch(() => ({ stdout: '' }))
  throw new SystemdNsError(
    `systemd did not finish booting (is-system-running: ${last || 'no answer'}); failed units:\n${failed.stdout}\nits log:\n${tail(machine.log)}`,
  )
}

/** Machines booted by this script whose PID 1 runs, from their state files. */
function running() {
  const found = []
  for (const { runDir, state } of bootedStates()) {
    if (alive(state.pid)) found.push(new Machine({ ...state, runDir, share: path.join(runDir, 'share'), child: null, watchdog: null }))
  }
  return found
}

/** The running machine whose PID 1 is `pid` (the only one running when pid is undefined). */
function attach(pid) {
  const machines = running()
  if (pid === undefined) {
    if (machines.length === 1) return machines[0]
    const pids = machines.map((m) => m.pid).join(', ')
    throw new SystemdNsError(
      machines.length === 0 ? 'no systemd namespace booted by this script is running' : `several are running (PID 1 = ${pids}): name one`,
    )
  }
  const machine = machines.find((m) => m.pid === pid)
  if (!machine) throw new SystemdNsError(`no running systemd namespace booted by this script has PID 1 = ${pid} (state in ${os.tmpdir()}/fdpass-systemd-*)`)
  return machine
}

const USAGE = `usage: systemd-ns.js create
       systemd-ns.js boot
       systemd-ns.js exec [PID] -- command [args...]
       systemd-ns.js kill [PID]
PID (as boot printed it) may be left out when one is running.`

async function cli(argv) {
  const [command, ...rest] = argv
  const pidArg = (arg) => {
    if (arg === undefined || arg === '--') return undefined
    if (!/^\d+$/.test(arg)) throw new SystemdNsError(`not a pid: '${arg}'\n${USAGE}`)
    return Number(arg)
  }
  if (command === 'create') {
    console.log(create())
  } else if (command === 'boot') {
    const machine = await boot({ tie: false })
    console.log(machine.pid)
  } else if (command === 'exec') {
    const dashes = rest.indexOf('--')
    if (dashes < 0 || dashes > 1 || dashes === rest.length - 1) throw new SystemdNsError(USAGE)
    const machine = attach(pidArg(rest[0]))
    const r = spawnSync('nsenter', machine.execArgs(rest.slice(dashes + 1)), { stdio: 'inherit' })
    process.exitCode = r.status ?? 1
  } else if (command === 'kill') {
    await attach(pidArg(rest[0])).kill()
  } else {
    console.error(USAGE)
    process.exitCode = 2
  }
}

module.exports = { create, boot, attach, running, unsupportedReason, rootfsPath, SystemdNsError }

if (require.main === module) {
  cli(process.argv.slice(2)).catch((e) => {
    console.error(`systemd-ns: ${e.message}`)
    process.exit(1)
  })
}
