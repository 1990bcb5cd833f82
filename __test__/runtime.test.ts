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
    const { threads, toWorker } = await child.next()
    // Workers 1 and 2 run at once; each received an fd in its own thread
    // and posted the released number, read here in the main thread.
    expect(threads).toEqual([
      { id: 1, after: 'terminate', kind: 'file', reactor: process.env.FDPASS_REACTOR, content: 'read in the main thread' },
      { id: 2, after: 'exit', kind: 'file', reactor: process.env.FDPASS_REACTOR, content: 'read in the main thread' },
      { id: 3, after: 'terminate', kind: 'file', reactor: process.env.FDPASS_REACTOR, content: 'read in the main thread' },
    ])
    // The main thread passed a file to a worker over an fdpass socket.
    expect(toWorker).toMatchObject({
      data: 'for the worker',
      count: 1,
      sameFile: true,
      cloexec: true,
      content: 'read in the main thread',
      reply: 'thanks',
      exitCode: 0,
      reactor: process.env.FDPASS_REACTOR,
    })
    // Terminated and exited workers with open sockets: the process neither aborted nor hung.
    expect(await child.exit).toEqual({ code: 0, signal: null })
    expect(child.stderr()).toBe('')
  })
})

describe('worker_threads under traffic', () => {
  // Was a SIGSEGV: creating the message values fails while a worker is
  // terminated, and the copy went through a null pointer (fixed in js.rs).
  test('a worker terminated while messages with fds stream into it does not crash the process', async () => {
    const dir = tmpPath('dir')
    fs.mkdirSync(dir, { mode: 0o700 })
    const file = tmpPath('file')
    fs.writeFileSync(file, 'x')
    const child = run('workers-main.js', [dir, file, 'busy'])
    const report = child.next().catch((e: Error) => ({ busy: e.message }))
    expect(await child.exit, child.stderr()).toEqual({ code: 0, signal: null })
    const { busy } = await report
    expect(busy).toHaveLength(10)
    for (const r of busy) {
      expect(r).toMatchObject({ terminated: true, sentMany: true, failure: expect.stringMatching(/^(EPIPE|ECONNRESET|ERR_FDPASS_SOCKET_CLOSED)$/) })
    }
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
