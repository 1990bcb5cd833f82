// What every Node implementation of the benchmark shares: the command
// line, fd counting, verification against the expected file, timing.
'use strict'
const fs = require('node:fs')

const [role, path, a, b, c, d] = process.argv.slice(2)
const print = (v) => process.stdout.write(JSON.stringify(v) + '\n')
process.stdout.write('\n') // libuv opens a reserve fd when stdout starts: before counting
const openFds = () => fs.readdirSync(process.platform === 'darwin' ? '/dev/fd' : '/proc/self/fd').length
/**
 * Descriptors open on `file`: a leaked received fd is one of these. Counting
 * them rather than all fds keeps a runtime's own lazily opened descriptors
 * (Deno opens sockets as it runs) out of the leak count. Linux only; other
 * systems count every descriptor.
 */
const openOn = (file) => {
  if (!fs.existsSync('/proc/self/fd')) return openFds()
  let n = 0
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === file) n++
    } catch {
      // the directory's own descriptor, gone by now
    }
  }
  return n
}
const cpuUs = () => {
  const u = process.resourceUsage()
  return u.userCPUTime + u.systemCPUTime
}

/** Receiver bookkeeping: verify each fd's identity, close it, count. */
function receiver(count, nfds, file, before = openOn(file)) {
  const want = fs.statSync(file)
  const state = { msgs: 0, fds: 0, bad: 0, first: 0n, before, cpu0: cpuUs() }
  return {
    state,
    /**
     * One message's descriptors (numbers, or the caller's wrapper objects
     * with `statFd` to fstat them: fdpass's receivers use ReceivedFd.fileStat()).
     */
    take(fds, close, statFd = fs.fstatSync) {
      if (state.msgs === 0) state.first = process.hrtime.bigint()
      state.msgs++
      state.fds += fds.length
      for (const fd of fds) {
        const st = statFd(fd)
        if (Number(st.ino) !== Number(want.ino) || Number(st.dev) !== Number(want.dev)) state.bad++
      }
      close()
      return state.msgs >= count
    },
    /** The same, for a receiver that fstat'ed the descriptors already (one batch call). */
    takeStats(n, stats, close) {
      if (state.msgs === 0) state.first = process.hrtime.bigint()
      state.msgs++
      state.fds += n
      for (const st of stats) if (Number(st.ino) !== Number(want.ino) || Number(st.dev) !== Number(want.dev)) state.bad++
      close()
      return state.msgs >= count
    },
    report() {
      print({
        msgs: state.msgs,
        fds: state.fds,
        bad: state.bad,
        lost: count * nfds - state.fds,
        leaked: openOn(file) - state.before,
        ns: Number(process.hrtime.bigint() - state.first),
        cpuUs: cpuUs() - state.cpu0,
      })
    },
  }
}

// Round trips are timed with performance.now() into a Float64Array made
// up front: no BigInt, number or array growth per sample, so the timing
// adds no garbage collection to what it times.
function percentiles(lat) {
  lat.sort((x, y) => x - y)
  return { p50: +lat[lat.length >> 1].toFixed(2), p99: +lat[Math.floor(lat.length * 0.99)].toFixed(2) }
}

module.exports = { role, path, args: [a, b, c, d], print, openFds, openOn, cpuUs, receiver, percentiles }
