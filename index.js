'use strict'
// The package entry point: the TypeScript layer, compiled to dist/ by `npm run build`.
module.exports = require('./dist/index.js')
