// A worker thread of the conformance suite: loads fdpass in its own
// environment, passes a file over its own socketpair, reports, and keeps its
// sockets open so that the main thread's terminate() meets them.
'use strict'
const fs = require('node:fs')
const { parentPort, workerData } = require('node:worker_threads')
const fdpass = require('../..')

;(async () => {
  const [a, b] = fdpass.socketpair()
  const fd = fs.openSync(workerData.file, 'r')
  await a.send('in a worker', [fd])
  fs.closeSync(fd)
  const m = await b.receive()
  const st = m.fds[0].stat()
  m.fds[0].close()
  parentPort.postMessage({ data: m.data.toString(), ino: st.ino, reactor: fdpass.runtime.reactor })
})()
