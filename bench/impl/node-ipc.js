// Node's own handle passing: subprocess.send(message, handle) over the
// child_process IPC channel, one net.Server handle per message (W1 only).
// Usage: node node-ipc.js run COUNT FILE   (it forks its own receiver)
'use strict'
const { fork } = require('node:child_process')
const net = require('node:net')
const { print, cpuUs, openFds } = require('./common')

const [, , role, countArg] = process.argv
const count = Number(countArg)

if (role === 'child') {
  let got = 0
  let first = 0n
  const before = openFds()
  const cpu0 = cpuUs()
  process.on('message', (m, handle) => {
    if (!first) first = process.hrtime.bigint()
    if (handle) {
      got++
      handle.close()
    }
    if (m === 'last') {
      setTimeout(() => {
        process.send({
          msgs: count,
          fds: got,
          bad: 0,
          lost: count - got,
          leaked: openFds() - before,
          ns: Number(process.hrtime.bigint() - first),
          cpuUs: cpuUs() - cpu0,
        })
        process.disconnect()
      }, 50)
    }
  })
} else {
  const server = net.createServer().listen(0, '127.0.0.1', async () => {
    const child = fork(__filename, ['child', String(count)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
    const cpu0 = cpuUs()
    for (let i = 0; i < count; i++) {
      await new Promise((resolve) => child.send(i === count - 1 ? 'last' : 'm', server, { keepOpen: true }, resolve))
    }
    const senderCpu = cpuUs() - cpu0
    child.once('message', (r) => {
      print({ recv: r, send: { cpuUs: senderCpu } })
      server.close()
    })
  })
}
