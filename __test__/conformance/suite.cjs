#!/usr/bin/env node
// The conformance suite: the same file runs unchanged on Node, Bun and Deno
// (`deno run -A`), on x64 and on arm64 under qemu. Plain node:assert, no test
// runner. One JSON line per case on stdout, then a summary line; exits 0
// when every case passed.
//
//   node __test__/conformance/suite.cjs [case-name-substring]
//
// FDPASS_CONFORMANCE_CHILD: JSON array, the command that starts a second
// process of this same runtime (default: this runtime's own executable).
'use strict'
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')
const fdpass = require('../..')

const runtime = fdpass.runtime.name
const version = runtime === 'bun' ? globalThis.Bun.version : runtime === 'deno' ? globalThis.Deno.version.deno : process.versions.node
const childCommand = process.env.FDPASS_CONFORMANCE_CHILD
  ? JSON.parse(process.env.FDPASS_CONFORMANCE_CHILD)
  : runtime === 'deno'
    ? [process.execPath, 'run', '-A']
    : [process.execPath]
const peerScript = path.join(__dirname, 'peer.cjs')
const fdDir = fs.existsSync('/proc/self/fd') ? '/proc/self/fd' : '/dev/fd'
// On Linux the kernel keeps boundaries natively on seqpacket; elsewhere the
// framed stream is the portable choice.
const messageType = fdpass.runtime.supportsSeqpacket ? 'seqpacket' : 'stream'

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-conf-'))
fs.chmodSync(tmp, 0o700)
let seq = 0
const tmpPath = (name) => path.join(tmp, `${++seq}-${name}`)

function openFds() {
  return fs.readdirSync(fdDir).length
}

/**
 * How many open descriptors refer to one of `targets` (what /proc/self/fd
 * links say: a file's path, or 'socket:[inode]'). Counting these rather than
 * every descriptor keeps a runtime's own lazily opened ones out (Deno opens
 * a socketpair of its own at some point after a child process exited).
 * Linux only: /dev/fd on macOS has no links.
 */
function openTo(targets) {
  let n = 0
  for (const name of fs.readdirSync(fdDir)) {
    try {
      if (targets.includes(fs.readlinkSync(`${fdDir}/${name}`))) n++
    } catch {
      // the directory's own descriptor, closed by now
    }
  }
  return n
}

/**
 * A file with `name` as content and a socketpair, and `ours()`: how many
 * descriptors of the case are open (on Linux those referring to the file or
 * the pair, elsewhere every descriptor beyond the count before).
 */
async function fileAndPair(name) {
  const file = tmpPath(name)
  fs.writeFileSync(file, name)
  const before = await settledOpenFds()
  const [a, b] = fdpass.socketpair({ type: messageType })
  const targets = [file, linkOf(a.fd), linkOf(b.fd)]
  const ours = () => (fdDir === '/proc/self/fd' ? openTo(targets) : openFds() - before)
  return { file, a, b, ours }
}

function linkOf(fd) {
  try {
    return fs.readlinkSync(`${fdDir}/${fd}`)
  } catch {
    return `fd ${fd}`
  }
}

/** What each open descriptor is (Linux), for a failure message. */
function fdLinks() {
  return fs
    .readdirSync(fdDir)
    .map((n) => {
      try {
        return `${n}→${fs.readlinkSync(`${fdDir}/${n}`)}`
      } catch {
        return n
      }
    })
    .join(' ')
}

/** The open-descriptor count once earlier cases' asynchronous closes have landed. */
async function settledOpenFds() {
  let last = openFds()
  for (let stable = 0; stable < 3; ) {
    await new Promise((r) => setTimeout(r, 20))
    const now = openFds()
    stable = now === last ? stable + 1 : 0
    last = now
  }
  return last
}

function sameFile(received, file) {
  const st = received.stat()
  const want = fs.statSync(file)
  return st.kind === 'file' && st.dev === Number(want.dev) && st.ino === Number(want.ino)
}

async function readAll(stream) {
  let out = ''
  for await (const chunk of stream) out += chunk
  return out
}

/** A second process of this runtime running peer.cjs; its stdout is JSON lines. */
function startPeer(args) {
  const [cmd, ...pre] = childCommand
  const child = spawn(cmd, [...pre, peerScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  const lines = []
  const waiting = []
  readline.createInterface({ input: child.stdout }).on('line', (l) => {
    const v = JSON.parse(l)
    const w = waiting.shift()
    if (w) w(v)
    else lines.push(v)
  })
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  return {
    child,
    stderr: () => stderr,
    exited,
    next: () => {
      if (lines.length) return Promise.resolve(lines.shift())
      return new Promise((resolve, reject) => {
        waiting.push(resolve)
        exited.then((e) => reject(new Error(`peer exited (${JSON.stringify(e)}) before answering: ${stderr}`)))
      })
    },
  }
}

const cases = []
const test = (name, fn) => cases.push({ name, fn })

test('socketpair passes a file', async () => {
  const file = tmpPath('file')
  fs.writeFileSync(file, 'the same open file')
  const [a, b] = fdpass.socketpair({ type: messageType })
  const fd = fs.openSync(file, 'r')
  await a.send('here', [fd])
  fs.closeSync(fd)
  const m = await b.receive()
  assert.equal(m.data.toString(), 'here')
  assert.equal(m.fds.length, 1)
  assert.ok(sameFile(m.fds[0], file), 'the received fd is the sent file')
  assert.equal(m.fds[0].stat().cloexec, true)
  assert.equal(await readAll(m.fds[0].createReadStream({ encoding: 'utf8' })), 'the same open file')
  a.close()
  b.close()
})

test('two processes over a path, with peer credentials', async () => {
  const address = tmpPath('s.sock')
  const file = tmpPath('from-parent')
  fs.writeFileSync(file, 'parent')
  const server = await fdpass.listen(address, { type: messageType })
  const peer = startPeer(['connect-and-send', address, messageType, tmp])
  const socket = await server.accept()
  const creds = socket.peerCredentials()
  assert.equal(creds.pid, peer.child.pid, 'peer pid is the child')
  assert.equal(creds.uid, process.getuid())
  const m = await socket.receive()
  assert.equal(m.data.toString(), 'from the child')
  assert.equal(m.fds.length, 2)
  const sent = await peer.next()
  assert.ok(sameFile(m.fds[0], sent.file), 'first fd is the child file')
  m.fds[0].close()
  // The second is one end of a socketpair whose other end stayed in the child.
  assert.equal(m.fds[1].kind(), 'socket')
  const inner = fdpass.adopt(m.fds[1].release(), { type: 'stream', raw: true })
  assert.equal((await inner.receive()).data.toString(), 'through the passed socket')
  inner.close()
  // And back: the child checks what it gets.
  const fd = fs.openSync(file, 'r')
  await socket.send('from the parent', [fd])
  fs.closeSync(fd)
  const reply = await peer.next()
  assert.deepEqual(reply, { got: 'from the parent', fds: 1, content: 'parent', ppid: process.pid })
  assert.deepEqual(await peer.exited, { code: 0, signal: null }, peer.stderr())
  socket.close()
  await server.close()
  assert.equal(fs.existsSync(address), false, 'the socket file is removed')
})

test(`${fdpass.MAX_FDS_PER_MESSAGE} fds in one message`, async () => {
  const file = tmpPath('many')
  fs.writeFileSync(file, 'x')
  const [a, b] = fdpass.socketpair({ type: messageType })
  const fds = Array.from({ length: fdpass.MAX_FDS_PER_MESSAGE }, () => fs.openSync(file, 'r'))
  await a.send('many', fds)
  for (const fd of fds) fs.closeSync(fd)
  const m = await b.receive()
  assert.equal(m.fds.length, fdpass.MAX_FDS_PER_MESSAGE)
  for (const r of m.fds) {
    assert.ok(sameFile(r, file))
    r.close()
  }
  assert.throws(
    () =>
      a.send(
        'too many',
        Array.from({ length: fdpass.MAX_FDS_PER_MESSAGE + 1 }, () => 0),
      ),
    (e) => e.code === 'ERR_FDPASS_TOO_MANY_FDS',
  )
  a.close()
  b.close()
})

test('backpressure with nothing lost', async () => {
  const N = 5000
  const file = tmpPath('bp')
  fs.writeFileSync(file, 'bp')
  const fd = fs.openSync(file, 'r')
  const [a, b] = fdpass.socketpair({ type: messageType })
  b.pause()
  const sends = []
  let maxPending = 0
  for (let i = 0; i < N; i++) {
    sends.push(a.send(String(i), [fd]))
    maxPending = Math.max(maxPending, a.pendingSends)
  }
  fs.closeSync(fd) // the queued sends hold their own duplicates
  assert.ok(maxPending > 0, 'sends queued behind a full socket buffer')
  b.resume()
  for (let i = 0; i < N; i++) {
    const m = await b.receive()
    assert.equal(m.data.toString(), String(i), 'in order')
    assert.equal(m.fds.length, 1)
    if (i % 500 === 0) assert.ok(sameFile(m.fds[0], file))
    m.fds[0].close()
  }
  await Promise.all(sends)
  assert.equal(a.pendingSends, 0)
  a.close()
  b.close()
})

test('a peer that goes away', async () => {
  const address = tmpPath('gone.sock')
  const server = await fdpass.listen(address, { type: 'stream' })
  const peer = startPeer(['send-then-wait', address, 'stream', tmp])
  const socket = await server.accept()
  const m = await socket.receive()
  assert.equal(m.data.toString(), 'before dying')
  assert.equal(m.fds.length, 1)
  m.fds[0].close()
  peer.child.kill('SIGKILL')
  assert.equal((await peer.exited).signal, 'SIGKILL')
  // Reading ends cleanly; receive() then says the socket closed.
  const rest = []
  for await (const x of socket) rest.push(x)
  assert.equal(rest.length, 0)
  await assert.rejects(socket.receive(), (e) => e.code === 'ERR_FDPASS_SOCKET_CLOSED')
  // Sending to the vanished peer is an error, never a SIGPIPE.
  await assert.rejects(socket.send('anyone?', [0]), (e) => ['EPIPE', 'ECONNRESET', 'ERR_FDPASS_SOCKET_CLOSED'].includes(e.code))
  socket.close()
  await server.close()
})

test('1,000 messages with no fd leaked', async () => {
  const { file, a, b, ours } = await fileAndPair('leak')
  const fd = fs.openSync(file, 'r')
  const received = (async () => {
    let n = 0
    for await (const m of b) {
      for (const r of m.fds) r.close()
      n += m.fds.length
      if (n === 1500) return n
    }
    return n
  })()
  for (let i = 0; i < 1000; i++) await a.send('m', i % 2 ? [fd, fd] : [fd])
  fs.closeSync(fd)
  assert.equal(await received, 1500)
  a.close()
  b.close()
  await settledOpenFds()
  assert.equal(ours(), 0, `open descriptors after = before; now open: ${fdLinks()}`)
})

test('worker threads', async () => {
  // Two workers at once; one exits by itself, one is terminated with its sockets open.
  const { Worker } = require('node:worker_threads')
  const file = tmpPath('for-workers')
  fs.writeFileSync(file, 'w')
  const ino = Number(fs.statSync(file).ino)
  const start = () => {
    const w = new Worker(path.join(__dirname, 'worker.cjs'), { workerData: { file } })
    const message = new Promise((resolve, reject) => {
      w.once('message', resolve)
      w.once('error', reject)
    })
    const exit = new Promise((resolve) => w.once('exit', resolve))
    return { w, message, exit }
  }
  const one = start()
  const two = start()
  for (const { message } of [one, two]) {
    assert.deepEqual(await message, { data: 'in a worker', ino, reactor: fdpass.runtime.reactor })
  }
  await one.w.terminate()
  two.w.unref()
  await one.exit
  // The second worker's open sockets keep it alive until it is terminated too.
  await two.w.terminate()
  await two.exit
  // This thread still works afterwards.
  const [a, b] = fdpass.socketpair()
  await a.send('after', [])
  assert.equal((await b.receive()).data.toString(), 'after')
  a.close()
  b.close()
})

test('unref() lets the process exit', async () => {
  const peer = startPeer(['unref', '', '', tmp])
  assert.deepEqual(await peer.next(), { unrefed: true })
  const timer = setTimeout(() => peer.child.kill('SIGKILL'), 10_000)
  assert.deepEqual(await peer.exited, { code: 0, signal: null }, 'exited by itself, not killed')
  clearTimeout(timer)
})

test('sendSync, receiveSync and the batch calls', async () => {
  const { file, a, b, ours } = await fileAndPair('sync')
  const fd = fs.openSync(file, 'r')
  a.sendSync('64', Array(64).fill(fd))
  fs.closeSync(fd)
  const m = b.receiveSync({ timeout: 5000 })
  assert.equal(m.data.toString(), '64')
  const stats = fdpass.ReceivedFd.statAll(m.fds)
  assert.equal(stats.length, 64)
  const want = fs.statSync(file)
  assert.ok(
    stats.every((s) => s.kind === 'file' && s.ino === want.ino && s.dev === want.dev),
    'statAll sees the file sent',
  )
  assert.equal(ours(), 64 + 2, 'the 64 received and the pair are open')
  fdpass.ReceivedFd.closeAll(m.fds)
  assert.ok(m.fds.every((f) => f.closed))
  assert.throws(() => b.receiveSync({ timeout: 20 }), { code: 'ETIMEDOUT', syscall: 'recvmsg' })
  // After that wait, receiveSync() without a timeout waits in recvmsg itself
  // (it makes the file blocking): a message already there comes back at
  // once, and send() on that socket still queues instead of blocking.
  a.sendSync('after the wait')
  assert.equal(b.receiveSync().data.toString(), 'after the wait')
  const sends = []
  for (let i = 0; i < 1000 && b.pendingSends === 0; i++) sends.push(b.send(Buffer.alloc(1024, i)))
  assert.ok(b.pendingSends > 0, 'a full buffer queues the send rather than blocking the thread')
  let received = 0
  a.on('message', () => received++)
  await Promise.all(sends)
  for (let i = 0; i < 200 && received < sends.length; i++) await new Promise((r) => setTimeout(r, 10))
  assert.equal(received, sends.length, 'every queued message arrived')
  a.close()
  b.close()
  await settledOpenFds()
  assert.equal(ours(), 0, `nothing of this case left open; now open: ${fdLinks()}`)
})

test('readiness mechanism', async () => {
  const forced = process.env.FDPASS_REACTOR
  assert.equal(fdpass.runtime.reactor, forced || (runtime === 'node' ? 'uv' : 'thread'))
  if (runtime === 'node') return `${fdpass.runtime.reactor}`
  // Forcing libuv's mechanism where libuv is absent or partial is a clear error, not an abort.
  const [cmd, ...pre] = childCommand
  const r = await new Promise((resolve) => {
    // peer.cjs loads fdpass first thing.
    const child = spawn(cmd, [...pre, peerScript, 'load'], {
      env: { ...process.env, FDPASS_REACTOR: 'uv' },
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (d) => (stderr += d))
    child.on('exit', (code, signal) => resolve({ code, signal, stderr }))
  })
  assert.equal(r.signal, null, 'no abort')
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, /ERR_FDPASS_UNSUPPORTED|FDPASS_REACTOR=uv needs Node's own libuv/)
  return 'thread; uv refused'
})

test('converters', async () => {
  // Each converter either works or, where the runtime cannot do it, throws
  // ERR_FDPASS_UNSUPPORTED and leaves the descriptor with its owner.
  const expectUnsupported = { bun: ['toNetSocket'], deno: ['toDgramSocket'] }[runtime] ?? []
  const [a, b] = fdpass.socketpair({ type: messageType })
  const pass = async (fd) => {
    await a.send('fd', [fd])
    return (await b.receive()).fds[0]
  }
  const works = []
  // make() gives a descriptor and a function that closes the sender's copy.
  const attempt = async (name, make, use) => {
    const [fd, closeOwn] = await make()
    const received = await pass(fd)
    closeOwn()
    if (expectUnsupported.includes(name)) {
      await assert.rejects(
        async () => use(received),
        (e) => e.code === 'ERR_FDPASS_UNSUPPORTED',
      )
      assert.equal(received.kind(), 'socket', 'still owned after the refusal')
      received.close()
      return
    }
    await use(received)
    works.push(name)
  }
  const file = tmpPath('conv')
  fs.writeFileSync(file, 'read me')
  const fileFd = (flags) => {
    const fd = fs.openSync(file, flags)
    return [fd, () => fs.closeSync(fd)]
  }
  // Raw sockets come from the addon: Deno's own net objects have no fd to send.
  // The binding as fdpass loaded it (for this process's libc).
  const native = require('../../dist/native.js').binding
  await attempt(
    'createReadStream',
    () => fileFd('r'),
    async (r) => assert.equal(await readAll(r.createReadStream({ encoding: 'utf8' })), 'read me'),
  )
  await attempt(
    'createWriteStream',
    () => fileFd('w'),
    async (r) => {
      const w = r.createWriteStream()
      await new Promise((res, rej) => w.end('written', (e) => (e ? rej(e) : res())))
      await new Promise((res) => w.close(res))
      assert.equal(fs.readFileSync(file, 'utf8'), 'written')
    },
  )
  const net = require('node:net')
  const dgram = require('node:dgram')
  const unix = tmpPath('conv.sock')
  await attempt(
    'toNetServer',
    () => {
      const fd = native.listenUnixSocket(unix, 16, 0o600, true)
      return [fd, () => native.closeFd(fd)]
    },
    async (r) => {
      const server = r.toNetServer((c) => c.end('served'))
      const c = net.connect(unix)
      assert.equal(await readAll(c.setEncoding('utf8')), 'served')
      await new Promise((res) => server.close(res))
    },
  )
  const [x, y] = fdpass.socketpair({ type: 'stream', raw: true })
  await attempt(
    'toNetSocket',
    () => [y.fd, () => y.close()],
    async (r) => {
      const s = r.toNetSocket()
      s.end('over net.Socket')
      const m = await x.receive()
      assert.equal(m.data.toString(), 'over net.Socket')
      s.destroy()
    },
  )
  x.close()
  let port
  await attempt(
    'toDgramSocket',
    () => {
      const fd = native.bindInetSocket('udp', '127.0.0.1', 0, 0, false)
      port = native.inetPort(fd)
      return [fd, () => native.closeFd(fd)]
    },
    async (r) => {
      const s = r.toDgramSocket('udp4')
      const got = new Promise((res) => s.once('message', (msg) => res(msg.toString())))
      const sender = dgram.createSocket('udp4')
      sender.send('datagram', port, '127.0.0.1')
      assert.equal(await got, 'datagram')
      sender.close()
      s.close()
    },
  )
  a.close()
  b.close()
  return works.join(' ')
})

test('net and dgram objects as fds', async () => {
  // fdpass reads the descriptor from the runtime's internals (no public API
  // gives it): this case shows each runtime version still keeps it there.
  const net = require('node:net')
  const dgram = require('node:dgram')
  const { once } = require('node:events')
  const warnings = []
  const onWarning = (w) => warnings.push(`${w.name}: ${w.message}`)
  process.on('warning', onWarning)
  const [a, b] = fdpass.socketpair({ type: messageType })
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const client = net.connect(server.address().port, '127.0.0.1')
  await once(client, 'connect')
  const udp = dgram.createSocket('udp4')
  udp.bind(0, '127.0.0.1')
  await once(udp, 'listening')
  const notYet = [net.createServer(), new net.Socket(), dgram.createSocket('udp4')]
  let detail
  if (runtime === 'deno') {
    // Deno keeps resource ids, not descriptors, in its net objects.
    for (const owner of [server, client, udp, ...notYet]) {
      assert.throws(
        () => a.send('x', [owner]),
        (e) => e.code === 'ERR_FDPASS_UNSUPPORTED' && /Deno/.test(e.message),
      )
    }
    detail = 'refused: ERR_FDPASS_UNSUPPORTED'
  } else {
    await a.send('open', [server, client, udp])
    const m = await b.receive()
    assert.deepEqual(
      m.fds.map((f) => f.kind()),
      ['socket', 'socket', 'socket'],
    )
    for (const f of m.fds) f.close()
    for (const owner of notYet) {
      assert.throws(
        () => a.send('x', [owner]),
        (e) => e.code === 'ERR_FDPASS_INVALID_FD',
      )
    }
    detail = 'sent'
  }
  // A deprecation warning (dgram's _handle getter, DEP0112) is emitted on a later tick.
  await new Promise((resolve) => setTimeout(resolve, 10))
  process.off('warning', onWarning)
  assert.deepEqual(warnings, [])
  client.destroy()
  await new Promise((resolve) => server.close(resolve))
  await new Promise((resolve) => udp.close(resolve))
  a.close()
  b.close()
  return detail
})

/** The fdpass binary mapped into this process (Linux: /proc/self/maps), so a run shows which one the loader picked. */
function loadedAddon() {
  let maps
  try {
    maps = fs.readFileSync('/proc/self/maps', 'latin1')
  } catch {
    return null
  }
  const names = maps
    .split('\n')
    .map((l) => l.slice(l.lastIndexOf('/') + 1))
    .filter((n) => /^fdpass\..*\.node$/.test(n))
  return [...new Set(names)].join(' ') || null
}

async function main() {
  const only = process.argv[2]
  const summary = { runtime, version, arch: process.arch, reactor: fdpass.runtime.reactor, addon: loadedAddon(), passed: 0, failed: 0, cases: {} }
  for (const { name, fn } of cases) {
    if (only && !name.includes(only)) continue
    const started = Date.now()
    let result
    try {
      let timer
      const detail = await Promise.race([
        fn(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('timed out after 60 s')), 60_000)
        }),
      ])
      clearTimeout(timer)
      result = { case: name, ok: true, ms: Date.now() - started, ...(detail ? { detail } : {}) }
      summary.passed++
    } catch (e) {
      result = { case: name, ok: false, ms: Date.now() - started, error: `${e.code ?? e.name}: ${e.message}` }
      summary.failed++
    }
    summary.cases[name] = result.ok ? (result.detail ?? 'ok') : `FAIL ${result.error}`
    console.log(JSON.stringify(result))
  }
  console.log(JSON.stringify({ summary }))
  // Exit with sockets open and a message in flight: the runtime's teardown
  // (the addon's cleanup hook) must not abort. runtimes.js checks the exit code.
  if (summary.failed === 0) {
    const [openA, openB] = fdpass.socketpair()
    await openA.send('left in flight', [0])
    void openB
  }
  try {
    fs.rmSync(tmp, { recursive: true, force: true })
  } catch {
    // A failed case may have left the process out of descriptors; the summary is out already.
  }
  process.exit(summary.failed === 0 && summary.passed > 0 ? 0 : 1)
}

main().catch((e) => {
  console.error(e)
  process.exit(2)
})
