// Opens a file and passes the open descriptor to receiver.mjs.
import fs from 'node:fs'
import { connect } from 'fdpass'

const socket = await connect('files.sock')
const file = await fs.promises.open(new URL('report.csv', import.meta.url), 'r')
await socket.send('report.csv', [file])
await file.close() // the receiver has its own descriptor now
await socket.end() // wait for queued sends, then close: an open socket keeps the process alive
