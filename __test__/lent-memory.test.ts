// The addon reads and writes JavaScript memory through typed arrays: two
// views of the same memory, where one is written, are refused rather than
// trusted. Lending replaces the process's own lent buffers, so those cases
// run in a child process.
import { spawnSync } from 'node:child_process'
import { describe, expect, test } from 'vitest'
import { fdStat } from '../dist/native'
import { root } from './helpers'

describe('views of JavaScript memory', () => {
  test('lent buffers that share memory (within a pair, or with the other pair) are refused', () => {
    const script = `
      const { binding } = require(${JSON.stringify(`${root}/dist/native.js`)})
      const attempt = (f) => { try { f(); return 'accepted' } catch (e) { return e.message } }
      const ab = new ArrayBuffer(4096)
      const results = [
        attempt(() => binding.lendSendScratch(new Uint8Array(ab, 0, 64), new Int32Array(ab, 32, 16))),
        attempt(() => binding.lendDeliveryBuffers(new Uint8Array(ab, 0, 64), new Int32Array(ab, 64, 16))),
        attempt(() => binding.lendSendScratch(new Uint8Array(ab, 64, 16), new Int32Array(ab, 1024, 16))),
        attempt(() => binding.lendSendScratch(new Uint8Array(ab, 2048, 64), new Int32Array(ab, 3072, 16))),
      ]
      process.stdout.write(JSON.stringify(results) + '\\n')`
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })
    const results = JSON.parse(r.stdout.trim().split('\n').pop() || 'null')
    expect(results, r.stderr).toEqual([
      expect.stringMatching(/send scratch: .*must not share memory/), // data and fds overlap
      'accepted', // disjoint from each other and from the process's own scratch
      expect.stringMatching(/send scratch: .*must not share memory/), // overlaps the delivery buffers
      'accepted',
    ])
  })

  test('fdStatMany refuses an output array that shares memory with the descriptor numbers', async () => {
    const { hot } = await import('../dist/native')
    const ab = new ArrayBuffer(1024)
    const fds = new Int32Array(ab, 0, 2)
    fds[0] = 0
    expect(() => hot.fdStatMany(fds, 1, new Float64Array(ab, 0, 10))).toThrow(/must not share memory/)
    const out = new Float64Array(new ArrayBuffer(80))
    hot.fdStatMany(fds, 1, out)
    expect(out[1]).toBe(fdStat(0).dev)
  })
})
