// worker_threads, and the choice of readiness mechanism.
import * as fs from 'node:fs'
import { afterEach, describe, expect, test } from 'vitest'
import { runtime } from '..'
import { cleanup, run, tmpPath } from './helpers'

afterEach(cleanup)

describe('worker_threads', () => {
  test('workers load the addon, pass fds, and exit or are terminated with sockets open: no abort', async () => {
    const dir = tmpPath('dir')
    fs.mkdirSync(dir, { mode: 0o700 })
    const file = tmpPath('file')
    fs.writeFileSync(file, 'read in the main thread')
    const child = run('workers-main.js', [dir, file])
    const results = await child.next()
    expect(results).toHaveLength(3)
    for (const r of results) {
      expect(r).toMatchObject({ kind: 'file', reactor: process.env.FDPASS_REACTOR, content: 'read in the main thread' })
    }
    expect(await child.exit).toEqual({ code: 0, signal: null })
    expect(child.stderr()).toBe('')
  })
})

describe('readiness mechanism', () => {
  test('FDPASS_REACTOR selects it', () => {
    expect(runtime.reactor).toBe(process.env.FDPASS_REACTOR)
  })

  test('an unknown FDPASS_REACTOR fails loading with a clear error', async () => {
    const child = run('bad-reactor.js', [], { env: { ...process.env, FDPASS_REACTOR: 'bogus' } })
    const out = await child.next()
    expect(out).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' })
    expect(out.message).toMatch(/FDPASS_REACTOR must be 'uv' or 'thread'/)
  })
})
