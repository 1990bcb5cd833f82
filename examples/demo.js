#!/usr/bin/env node
// Two processes pass a file and a listening TCP socket to each other.
//
//   parent                                   child
//   listen(/tmp/...sock)  <--- connect ---   connect(/tmp/...sock)
//   send("a file", [fd of a temp file]) -->  reads the file through the fd it got
//   send("a listener", [net.Server]) ----->  serves HTTP on that very socket
//   closes its own copy, then GET / ------>  answers (the kernel socket moved)
'use strict'
const fdpass = require('..')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

// Colour only on a terminal, and not when NO_COLOR is set (no-color.org):
// files and pipes get plain text.
const colour = process.stdout.isTTY === true && !process.env.NO_COLOR
const paint = (code, text) => (colour ? `\x1b[${code}m${text}\x1b[0m` : text)
const say = (who, text) => console.log(`${who === 'parent' ? paint(36, '[parent]') : paint(35, '[child] ')} ${text}`)

async function child(address) {
  const socket = await fdpass.connect(address)
  say('child', `connected to ${address} (pid ${process.pid})`)
  for await (const { data, fds } of socket) {
    const what = data.toString()
    if (what === 'a file') {
      const [file] = fds
      say('child', `got a ${file.kind()} as fd ${file.fd}; reading it:`)
      const text = await readAll(file.createReadStream())
      say('child', `  "${text.trim()}"`)
      await socket.send('read it')
    } else if (what === 'a listener') {
      const server = http.createServer((req, res) => res.end(`served by the child, pid ${process.pid}\n`))
      server.listen({ fd: fds[0].release() }, () => {
        say('child', `serving HTTP on the listening socket it received (port ${server.address().port})`)
        socket.send('serving')
      })
      socket.on('close', () => server.close())
    }
  }
}

async function parent() {
  const address = path.join(os.tmpdir(), `fdpass-demo-${process.pid}.sock`)
  const server = await fdpass.listen(address)
  say('parent', `listening on ${address} (mode 0600)`)
  const worker = spawn(process.execPath, [__filename, '--child', address], { stdio: 'inherit' })
  const socket = await server.accept()
  const peer = socket.peerCredentials()
  say('parent', `child connected: pid ${peer.pid}, uid ${peer.uid}`)

  // 1. A file.
  const file = path.join(os.tmpdir(), `fdpass-demo-${process.pid}.txt`)
  fs.writeFileSync(file, 'hello from a file the parent opened\n')
  const handle = await fs.promises.open(file, 'r')
  fs.unlinkSync(file) // the open descriptor keeps the file alive; no path needed
  await socket.send('a file', [handle])
  await handle.close()
  say('parent', 'sent an open file (and deleted its path)')
  await socket.receive()

  // 2. A listening TCP socket.
  const listener = net.createServer()
  await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const { port } = listener.address()
  await socket.send('a listener', [listener])
  listener.close() // the child's copy keeps the kernel socket listening
  say('parent', `sent its listening socket on 127.0.0.1:${port} and closed its own copy`)
  await socket.receive()

  const body = await new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port }, (res) => readAll(res).then(resolve, reject)).on('error', reject)
  })
  say('parent', `GET http://127.0.0.1:${port}/ -> ${body.trim()}`)

  socket.close()
  await server.close()
  await new Promise((resolve) => worker.on('exit', resolve))
  say('parent', 'done: the child exited, the socket file is gone: ' + !fs.existsSync(address))
}

function readAll(stream) {
  return new Promise((resolve, reject) => {
    let s = ''
    stream.setEncoding('utf8')
    stream.on('data', (d) => (s += d))
    stream.on('end', () => resolve(s))
    stream.on('error', reject)
  })
}

const run = process.argv[2] === '--child' ? child(process.argv[3]) : parent()
run.catch((e) => {
  console.error(e)
  process.exit(1)
})
