'use strict'
// fdpass/handoff/ws: WebSocket (ws package) migration (compiled from ts/handoff-ws.ts).
module.exports = require('../dist/handoff-ws.js')
