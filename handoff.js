'use strict'
// fdpass/handoff: zero-downtime restarts (compiled from ts/handoff.ts).
module.exports = require('./dist/handoff.js')
