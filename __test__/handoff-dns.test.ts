// A handoff listener's host name is resolved off the JavaScript thread,
// and a name that does not resolve fails with the resolver's own code.
import { spawnSync } from 'node:child_process'
import * as net from 'node:net'
import { afterEach, describe, expect, test } from 'vitest'
import { cleanup, root, tmpPath } from './helpers'

afterEach(cleanup)

// Names under .invalid never resolve (RFC 6761).
const NOWHERE = 'fdpass-test.invalid'

describe('handoff listener hosts', () => {
  test('an unresolvable host rejects with ENOTFOUND from getaddrinfo, and the event loop runs while it is looked up', () => {
    // One libuv pool thread, held by a read of a FIFO nobody has opened for
    // writing: a lookup through the pool waits behind it, a lookup on the
    // JavaScript thread would not. The timer shows the loop running while
    // takeover() waits; opening the FIFO lets the lookup go.
    const control = tmpPath('control')
    const fifo = tmpPath('fifo')
    const script = `
      const { execFileSync } = require('child_process'); const fs = require('fs')
      const { takeover } = require(${JSON.stringify(`${root}/handoff.js`)})
      const report = (r) => { process.stdout.write(JSON.stringify(r) + '\\n'); process.exit(0) }
      execFileSync('mkfifo', [${JSON.stringify(fifo)}])
      fs.readFile(${JSON.stringify(fifo)}, () => {})
      let settled = null
      takeover({ control: ${JSON.stringify(control)}, log: false, listeners: { web: { tcp: { host: ${JSON.stringify(NOWHERE)}, port: 0 } } } })
        .then(() => (settled = { resolved: true }), (e) => (settled = { code: e.code, syscall: e.syscall, hostname: e.hostname, name: e.name, message: e.message }))
      setTimeout(() => {
        const pendingWhileThePoolWasBusy = settled === null
        fs.closeSync(fs.openSync(${JSON.stringify(fifo)}, 'w'))
        const check = setInterval(() => { if (settled) { clearInterval(check); report({ pendingWhileThePoolWasBusy, ...settled }) } }, 10)
      }, 200)`
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, UV_THREADPOOL_SIZE: '1' } })
    const line = r.stdout.trim().split('\n').pop()
    expect(line, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBeTruthy()
    const result = JSON.parse(line!)
    expect(result).toMatchObject({ pendingWhileThePoolWasBusy: true, code: 'ENOTFOUND', syscall: 'getaddrinfo', hostname: NOWHERE, name: 'FdpassError' })
    expect(result.message).toContain(`getaddrinfo ENOTFOUND ${NOWHERE}`)
  }, 70_000)

  test('a host that is an IP address binds without a lookup; a name that resolves binds its address', async () => {
    const { takeover } = await import('../handoff')
    for (const host of ['127.0.0.1', 'localhost']) {
      const generation = await takeover({ control: tmpPath('control'), log: false, exitAfterDrain: false, listeners: { web: { tcp: { host, port: 0 } } } })
      const server = await generation.listen('web', net.createServer())
      const address = server.address() as { address: string }
      expect(['127.0.0.1', '::1']).toContain(address.address)
      await new Promise((resolve) => server.close(resolve))
      await generation.close()
    }
  })
})
