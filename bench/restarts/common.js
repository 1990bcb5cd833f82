// What the restart benchmarks share: their command-line flags, the HTTP
// load they put on a server, and how a run's latencies are summed up.
'use strict'
const http = require('node:http')

/** `flag(name, fallback)` reads `--name value` from argv; `quick` is `--quick`. */
function options(argv) {
  const flag = (name, fallback) => {
    const i = argv.indexOf(`--${name}`)
    return i >= 0 ? argv[i + 1] : fallback
  }
  return { flag, quick: argv.includes('--quick') }
}

/** The p-th quantile of sorted numbers (NaN when there are none). */
const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN)

/**
 * p50 and p99 of `samples` ([startMs, latencyMs, ...]) that started inside
 * one of `windows` ([fromMs, toMs]) and of those that did not.
 */
function windowLatencies(samples, windows) {
  const inWindow = (t) => windows.some(([a, b]) => t >= a && t <= b)
  const sorted = (keep) =>
    samples
      .filter((s) => keep(inWindow(s[0])))
      .map((s) => s[1])
      .sort((a, b) => a - b)
  const during = sorted((w) => w)
  const steady = sorted((w) => !w)
  return { windowP50: pct(during, 0.5), windowP99: pct(during, 0.99), steadyP50: pct(steady, 0.5), steadyP99: pct(steady, 0.99) }
}

/**
 * Closed-loop HTTP load: `clients` clients each GET / on 127.0.0.1:`port`
 * again as soon as the last answer came, with `keepAlive` or a new
 * connection per request.
 *   timeoutMs     a request with no answer by then fails (code 'timeout')
 *                 rather than hang the run (a connection lost in a
 *                 hand-over); 0: no limit
 *   errorPauseMs  how long a client waits after a failed request before
 *                 the next: a refused connect returns at once, and a loop
 *                 of them spins; 0: no wait
 * samples holds [startMs, latencyMs, ok] a request; errors counts failures
 * by cause (reset, refused, or the error's code); dials counts the
 * connections the clients opened: under keep-alive each client's first is
 * expected, any other means the server closed a connection.
 */
function httpLoad(port, { keepAlive, clients, timeoutMs = 0, errorPauseMs = 0, urlPath = '/' }) {
  const agent = new http.Agent({ keepAlive, maxSockets: clients })
  let dials = 0
  const createConnection = agent.createConnection.bind(agent)
  agent.createConnection = (...a) => {
    dials++
    return createConnection(...a)
  }
  const samples = []
  const errors = {}
  let running = true
  const one = () =>
    new Promise((resolve) => {
      const t0 = performance.now()
      const req = http.get({ host: '127.0.0.1', port, agent, path: urlPath }, (res) => {
        res.resume()
        res.on('end', () => {
          samples.push([t0, performance.now() - t0, res.statusCode === 200])
          resolve()
        })
      })
      if (timeoutMs > 0) req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`no answer in ${timeoutMs} ms`), { code: 'timeout' })))
      req.on('error', (e) => {
        const code = e.code === 'ECONNRESET' || e.message === 'socket hang up' ? 'reset' : e.code === 'ECONNREFUSED' ? 'refused' : (e.code ?? 'other')
        errors[code] = (errors[code] ?? 0) + 1
        samples.push([t0, performance.now() - t0, false])
        if (errorPauseMs > 0) setTimeout(resolve, errorPauseMs)
        else resolve()
      })
    })
  const loops = Array.from({ length: clients }, async () => {
    while (running) await one()
  })
  return {
    samples,
    errors,
    get dials() {
      return dials
    },
    async stop() {
      running = false
      await Promise.all(loops)
      agent.destroy()
    },
    /** Requests, and the failed ones by cause. */
    summary() {
      return {
        requests: samples.length,
        failed: samples.filter((s) => !s[2]).length,
        refused: errors.refused ?? 0,
        reset: errors.reset ?? 0,
        otherErrors: Object.fromEntries(Object.entries(errors).filter(([k]) => k !== 'refused' && k !== 'reset')),
      }
    },
  }
}

module.exports = { options, pct, windowLatencies, httpLoad }
