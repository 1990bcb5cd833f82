#!/usr/bin/env node
// Soak: N messages with descriptors between two processes, bounded in time.
// Fails if either process leaks a descriptor, if one is lost, or if the
// receiver's RSS grows more than the bound after warm-up.
//   node scripts/soak.js [--messages 1000000] [--seconds 300] [--rss-mib 32] [--type stream|seqpacket]
'use strict'
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const fdpass = require('..')

const argv = process.argv.slice(2)
const opt = (n, d) => (argv.includes(`--${n}`) ? argv[argv.indexOf(`--${n}`) + 1] : d)
const MESSAGES = Number(opt('messages', 1_000_000))
const SECONDS = Number(opt('seconds', 300))
const RSS_MIB = Number(opt('rss-mib', 32))
const TYPE = opt('type', 'stream')
const openFds = () => fs.readdirSync(process.platform === 'darwin' ? '/dev/fd' : '/proc/self/fd').length

if (argv[0] === '--child') {
  // The sender: adopts fd 3, sends MESSAGES messages with 1–3 fds each.
  process.stdout.write('\n')
  const socket = fdpass.adopt(3)
  const file = fs.openSync(__filename, 'r')
  const before = openFds()
  ;(async () => {
    let p
    for (let i = 0; i < MESSAGES; i++) {
      p = socket.send(`soak ${i}`, i % 3 === 0 ? [file, file, file] : [file])
      if (socket.pendingSends > 256) await p
    }
    await p
    await socket.end()
    fs.closeSync(file)
    // Closed since `before`: the socket and the file.
    process.stdout.write(JSON.stringify({ leaked: openFds() - (before - 2) }) + '\n')
  })()
} else {
  const want = fs.statSync(__filename)
  process.stdout.write('') // start stdout's reserve fd before counting
  const before = openFds()
  const [mine, theirs] = fdpass.socketpair({ type: TYPE })
  const child = spawn(process.execPath, [__filename, '--child', ...argv], { stdio: ['ignore', 'pipe', 'inherit', theirs.fd] })
  theirs.close()
  let childReport = ''
  child.stdout.on('data', (d) => (childReport += d))
  const started = Date.now()
  let received = 0
  let fds = 0
  let wrong = 0
  // Memory once warmed up: what the rest of the run may grow from.
  let warm = { rss: 0, heapUsed: 0 }
  let expectedFds = 0
  for (let i = 0; i < MESSAGES; i++) expectedFds += i % 3 === 0 ? 3 : 1
  const deadline = setTimeout(() => {
    console.error(`soak: not done after ${SECONDS} s (${received} of ${MESSAGES} messages)`)
    process.exit(1)
  }, SECONDS * 1000)
  mine.on('message', (m) => {
    for (const f of m.fds) {
      const st = f.stat()
      if (st.ino !== want.ino || st.dev !== want.dev) wrong++
      f.close()
    }
    fds += m.fds.length
    received++
    if (received === Math.min(50_000, MESSAGES >> 2)) {
      global.gc?.()
      warm = process.memoryUsage()
    }
  })
  mine.on('close', () => {
    clearTimeout(deadline)
    child.on('close', () => {
      global.gc?.()
      const rssGrowthMiB = (process.memoryUsage().rss - warm.rss) / 2 ** 20
      const report = {
        messages: received,
        fds,
        lost: expectedFds - fds,
        wrongFile: wrong,
        leakedReceiver: openFds() - before,
        leakedSender: JSON.parse(childReport.trim() || '{"leaked":null}').leaked,
        rssGrowthMiB: Number(rssGrowthMiB.toFixed(2)),
        rssBoundMiB: RSS_MIB,
        heapGrowthMiB: Number(((process.memoryUsage().heapUsed - warm.heapUsed) / 2 ** 20).toFixed(2)),
        seconds: (Date.now() - started) / 1000,
        reactor: fdpass.runtime.reactor,
        type: TYPE,
      }
      const ok =
        report.messages === MESSAGES &&
        report.lost === 0 &&
        report.wrongFile === 0 &&
        report.leakedReceiver === 0 &&
        report.leakedSender === 0 &&
        rssGrowthMiB <= RSS_MIB
      console.log(JSON.stringify({ ok, ...report }))
      process.exit(ok ? 0 : 1)
    })
  })
}
