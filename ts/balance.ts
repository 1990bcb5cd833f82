// Connection balancing among `fdpass run --workers` processes.
//
// Workers accept from one shared listening socket, so the kernel gives a
// new connection to whichever worker accepts first, and a keep-alive
// connection stays where it landed: a burst of them can leave one worker
// with most (1 of 16 on one, 15 on the other, seen). Here each worker
// counts its open connections in counters the supervisor shares with all
// of them (a mapped file, SharedCounters); a worker that accepts a
// connection while it holds BALANCE_MARGIN more than the least loaded one
// passes it, before a byte of it is read, to that worker over a Unix
// socket (SCM_RIGHTS), which serves it as if it had accepted it. A worker
// that has not taken MAX_UNTAKEN connections passed to it (its event loop
// is blocked) is given no more, so a busy worker does not hold up new
// connections. The common case costs one native call per accepted
// connection; no process relays connections as Node cluster's primary does.
//
// BalanceHub is the supervisor's side (the counters' file and one inbox
// socket pair per worker); WorkerBalance is a generation's.
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import type { Message } from './delivery'
import { binding, hot } from './native'
import { adopt, socketpair } from './open'
import type { FdSocket } from './socket'

/** A worker passes a connection on when it holds this many more than the least loaded one. */
export const BALANCE_MARGIN = 2
/**
 * Connections passed to a worker and not taken yet, past which it is given
 * no more: enough for a burst that arrives before the worker's event loop
 * runs (a burst of 16 keep-alive connections splits 8/8), few enough that
 * a blocked worker holds up only these.
 */
export const MAX_UNTAKEN = 8
/** The count of a worker that nothing serves: never the least loaded. */
const NOBODY_SERVES = 1 << 29

/** What the supervisor tells a generation, as JSON in $FDPASS_BALANCE: descriptor numbers in the generation. */
interface BalanceSpec {
  worker: number
  workers: number
  counts: number
  inbox: number
  peers: number[]
}

/** The supervisor's side: the shared counters and every worker's inbox, for the life of the supervisor. */
export class BalanceHub {
  readonly #countsFd: number
  readonly #counts: InstanceType<typeof binding.SharedCounters>
  /**
   * Per worker: [the end it reads, the end the others write to], as bare
   * descriptors: a socket object here would read what is meant for the workers.
   */
  readonly #inboxes: Array<[number, number]>

  constructor(workers: number) {
    // An unlinked file in the temp directory: only the descriptors name it.
    const file = path.join(os.tmpdir(), `fdpass-balance-${process.pid}-${Date.now()}`)
    this.#countsFd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600)
    fs.unlinkSync(file)
    fs.ftruncateSync(this.#countsFd, binding.SharedCounters.fileLen(workers))
    this.#counts = new binding.SharedCounters(this.#countsFd, workers)
    this.#inboxes = []
    for (let k = 0; k < workers; k++) {
      this.#counts.reset(k, NOBODY_SERVES)
      const pair = socketpair({ type: 'seqpacket' })
      this.#inboxes.push([binding.dupFd(pair[0].fd), binding.dupFd(pair[1].fd)])
      for (const s of pair) s.close()
    }
  }

  /**
   * The descriptors a generation of `worker` inherits (after `first`
   * others: LISTEN_FDS), and its $FDPASS_BALANCE. A start with nobody
   * serving the worker (first start, or after a crash) resets its count.
   */
  forGeneration(worker: number, first: number, fresh: boolean): { fds: number[]; env: string } {
    if (fresh) this.#counts.reset(worker, 0)
    const fds = [this.#countsFd, this.#inboxes[worker][0], ...this.#inboxes.map(([, write]) => write)]
    const at = (i: number) => 3 + first + i
    const spec: BalanceSpec = {
      worker,
      workers: this.#inboxes.length,
      counts: at(0),
      inbox: at(1),
      peers: this.#inboxes.map((_, k) => at(2 + k)),
    }
    return { fds, env: JSON.stringify(spec) }
  }

  /** `worker`'s open connections; null while nothing serves it. */
  connections(worker: number): number | null {
    const n = this.#counts.connections(worker)
    return n >= NOBODY_SERVES / 2 ? null : n
  }

  /** Nothing serves `worker` now: pass nothing to it until a generation starts there again. */
  nobodyServes(worker: number): void {
    this.#counts.reset(worker, NOBODY_SERVES)
  }

  close(): void {
    for (const pair of this.#inboxes) for (const fd of pair) hot.closeFd(fd)
    fs.closeSync(this.#countsFd)
  }
}

/** Parse $FDPASS_BALANCE; null (with the reason logged) when it is absent or not the supervisor's. */
function specFromEnv(log: (line: string) => void): BalanceSpec | null {
  const raw = process.env.FDPASS_BALANCE
  if (!raw) return null
  // The descriptors are this process's: a child of the app must not take them for its own.
  delete process.env.FDPASS_BALANCE
  try {
    const spec = JSON.parse(raw) as BalanceSpec
    const fds = [spec.counts, spec.inbox, ...spec.peers]
    if (!Number.isInteger(spec.worker) || spec.peers.length !== spec.workers || !fds.every((fd) => Number.isInteger(fd) && fd > 2)) throw new Error('malformed')
    return spec
  } catch (e) {
    log(`ignoring $FDPASS_BALANCE (${(e as Error).message}): this worker will not balance`)
    return null
  }
}

interface AcceptingHandle {
  onconnection: (err: number, client?: { fd?: number; close(): void }) => unknown
}

/**
 * A generation's side: counts its connections while it serves, passes an
 * accepted one on when it holds too many, and serves what the others pass.
 */
export class WorkerBalance {
  readonly #me: number
  readonly #counts: InstanceType<typeof binding.SharedCounters>
  readonly #inbox: FdSocket
  readonly #peers: FdSocket[]
  readonly #servers = new Map<string, net.Server>()
  readonly #log: (line: string) => void
  #active = false
  #closed = false

  static fromEnv(log: (line: string) => void): WorkerBalance | null {
    const spec = specFromEnv(log)
    if (!spec) return null
    // Each inherited descriptor is closed once: as a bare number until a socket owns it, then by that socket.
    const bare = new Set([spec.counts, spec.inbox, ...spec.peers])
    const owned: FdSocket[] = []
    const own = (fd: number) => {
      const socket = adopt(fd).unref()
      bare.delete(fd)
      owned.push(socket)
      return socket
    }
    try {
      const counts = new binding.SharedCounters(spec.counts, spec.workers)
      const inbox = own(spec.inbox)
      const peers = spec.peers.map(own)
      return new WorkerBalance(spec.worker, counts, inbox, peers, log)
    } catch (e) {
      // Balancing is an optimisation: a worker that cannot take part serves on its own.
      log(`cannot balance (${(e as Error).message}): this worker keeps what it accepts`)
      for (const socket of owned) socket.close()
      return null
    } finally {
      for (const fd of bare) {
        try {
          hot.closeFd(fd) // the counters' mapping outlives its descriptor
        } catch {
          // not open: the supervisor did not give it
        }
      }
    }
  }

  private constructor(me: number, counts: InstanceType<typeof binding.SharedCounters>, inbox: FdSocket, peers: FdSocket[], log: (line: string) => void) {
    this.#me = me
    this.#log = log
    this.#counts = counts
    this.#inbox = inbox
    this.#peers = peers
    this.#inbox.on('message', (m: Message) => this.#onPassed(m))
    this.#inbox.on('error', (e: Error) => this.#log(`balance inbox: ${e.message}`))
    this.#inbox.pause()
  }

  /**
   * Balance `server`'s connections on the named listener: count each
   * connection it serves, and pass on what it accepts while it holds too
   * many. A runtime whose server has no libuv accept callback (Bun, Deno)
   * only counts and receives.
   */
  attach(name: string, server: net.Server): void {
    this.#servers.set(name, server)
    server.on('connection', (socket: net.Socket) => this.#count(socket))
    const handle = (server as unknown as { _handle?: AcceptingHandle | null })._handle
    if (!handle || typeof handle.onconnection !== 'function') return
    const accept = handle.onconnection
    handle.onconnection = (err, client) => {
      if (!err && client && this.#passOn(name, client)) return
      return accept.call(handle, err, client)
    }
  }

  /** Serving: count, pass on and receive from here. */
  start(): void {
    if (this.#closed || this.#active) return
    this.#active = true
    this.#inbox.resume()
  }

  /** No longer serving (a handoff, a stop): pass nothing on, read no more; what waits in the inbox stays for the next generation. */
  stop(): void {
    if (this.#closed) return
    this.#closed = true
    this.#active = false
    this.#inbox.close()
    for (const peer of this.#peers) peer.close()
  }

  #count(socket: net.Socket): void {
    if (!this.#active) return
    this.#counts.addConnections(this.#me, 1)
    socket.once('close', () => this.#counts.addConnections(this.#me, -1))
  }

  /** Pass a connection just accepted (nothing read from it) to a less loaded worker; false: serve it here. */
  #passOn(name: string, client: { fd?: number; close(): void }): boolean {
    if (!this.#active || typeof client.fd !== 'number' || client.fd < 0) return false
    const to = this.#counts.place(this.#me, BALANCE_MARGIN, MAX_UNTAKEN)
    if (to < 0) return false
    try {
      // The kernel holds the connection from sendmsg on; closing ours sends no FIN.
      this.#peers[to].sendSync(name, [client.fd])
    } catch {
      this.#counts.taken(to) // its inbox is full: serve it here
      return false
    }
    client.close()
    return true
  }

  #onPassed(m: Message): void {
    const name = m.data.toString()
    for (const received of m.fds) {
      this.#counts.taken(this.#me) // #count counts it as ours
      const server = this.#servers.get(name)
      const fd = received.release()
      if (!server) {
        this.#log(`a connection was passed for listener ${name}, which this generation does not serve: closing it`)
        hot.closeFd(fd)
        continue
      }
      let socket: net.Socket
      try {
        socket = new net.Socket({ fd, readable: true, writable: true })
      } catch (e) {
        this.#log(`a connection passed to this worker could not be served (${(e as Error).message}): closing it`)
        hot.closeFd(fd)
        continue
      }
      server.emit('connection', socket)
    }
  }
}
