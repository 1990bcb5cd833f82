// The other process of the conformance suite (suite.cjs), on the same
// runtime. Reports on stdout as JSON lines.
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const fdpass = require('../..')

const [mode, address, type, dir] = process.argv.slice(2)
const say = (v) => console.log(JSON.stringify(v))

async function readAll(stream) {
  let out = ''
  for await (const chunk of stream) out += chunk
  return out
}

async function connectAndSend() {
  const socket = await fdpass.connect(address, { type })
  const file = path.join(dir, `child-${process.pid}`)
  fs.writeFileSync(file, 'child')
  const fd = fs.openSync(file, 'r')
  const [mine, theirs] = fdpass.socketpair({ type: 'stream', raw: true })
  await socket.send('from the child', [fd, theirs])
  fs.closeSync(fd)
  theirs.close()
  say({ file })
  await mine.send('through the passed socket')
  await mine.end()
  const m = await socket.receive()
  const content = await readAll(m.fds[0].createReadStream({ encoding: 'utf8' }))
  say({ got: m.data.toString(), fds: m.fds.length, content, ppid: process.ppid })
  socket.close()
}

async function sendThenWait() {
  const socket = await fdpass.connect(address, { type })
  await socket.send('before dying', [fs.openSync(__filename, 'r')])
  say({ sent: true })
  setInterval(() => {}, 1000) // until killed
}

// Sockets and a server that are unref()ed must not keep the process alive.
async function unrefExits() {
  const [a, b] = fdpass.socketpair()
  b.on('message', () => {})
  a.unref()
  b.unref()
  const server = await fdpass.listen(path.join(dir, `unref-${process.pid}.sock`))
  server.unref()
  say({ unrefed: true })
}

const modes = {
  unref: unrefExits,
  'connect-and-send': connectAndSend,
  'send-then-wait': sendThenWait,
  load: async () => say({ reactor: fdpass.runtime.reactor }),
}
modes[mode]().catch((e) => {
  console.error(e)
  process.exit(1)
})
