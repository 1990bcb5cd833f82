// What the restart benchmarks share: their command-line flags and how a
// run's latencies are summed up.
'use strict'

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

module.exports = { options, pct, windowLatencies }
