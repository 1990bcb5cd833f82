#!/usr/bin/env node
// A broker that opens files for a process that may not, and hands it the
// open descriptors: the privileged-helper pattern. The broker is a plain
// blocking loop (receiveSync/sendSync), as such a helper usually is; the
// client uses the asynchronous API.
//
//   node examples/file-broker.js [path ...]
//
// The client asks for each path (default: this file and /etc/shadow); the
// broker opens only files under its allowed directory (this directory) and
// answers the others with a refusal. In real use the broker would run as
// another user, and the socket would come from a socketpair as here or from
// a listening path with a peer-credentials filter (docs/security.md).
'use strict'
const fdpass = require('..')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const ALLOWED = path.resolve(__dirname)

function broker() {
  // fd 3 is the broker's end of the socketpair the client made.
  const socket = fdpass.adopt(3)
  for (;;) {
    let request
    try {
      request = socket.receiveSync()
    } catch (e) {
      if (e.code === 'ERR_FDPASS_SOCKET_CLOSED') return // the client is done
      throw e
    }
    const wanted = path.resolve(request.data.toString())
    if (!wanted.startsWith(ALLOWED + path.sep)) {
      socket.sendSync(`refused: ${wanted} is outside ${ALLOWED}`)
      continue
    }
    let fd
    try {
      fd = fs.openSync(wanted, 'r')
    } catch (e) {
      socket.sendSync(`refused: ${e.code}`)
      continue
    }
    socket.sendSync('ok', [fd])
    fs.closeSync(fd) // the client has its own descriptor now
  }
}

async function client(paths) {
  const [mine, theirs] = fdpass.socketpair({ type: fdpass.runtime.supportsSeqpacket ? 'seqpacket' : 'stream' })
  const child = spawn(process.execPath, [__filename, '--broker'], { stdio: ['inherit', 'inherit', 'inherit', theirs.fd] })
  theirs.close()
  for (const p of paths) {
    await mine.send(p)
    const reply = await mine.receive()
    const answer = reply.data.toString()
    if (answer !== 'ok') {
      console.log(`${p}: ${answer}`)
      continue
    }
    const [file] = reply.fds
    const st = file.fileStat()
    let first = ''
    for await (const chunk of file.createReadStream({ end: 59, encoding: 'utf8' })) first += chunk
    console.log(`${p}: got fd ${st.kind}, ${st.size} bytes, first line: ${JSON.stringify(first.split('\n')[0])}`)
  }
  await mine.end()
  const code = await new Promise((resolve) => child.on('exit', resolve))
  console.log(`broker exited with ${code}`)
}

if (process.argv[2] === '--broker') broker()
else {
  const paths = process.argv.length > 2 ? process.argv.slice(2) : [__filename, '/etc/shadow', path.join(__dirname, 'no-such-file')]
  client(paths).catch((e) => {
    console.error(e)
    process.exit(1)
  })
}
