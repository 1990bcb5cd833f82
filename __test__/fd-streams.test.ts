// The addon's own read/write path for fs streams, which Deno needs (its
// node:fs refuses descriptors it did not open). Tested here on Node, where
// it is not the default, so that the path is checked on every run; the
// conformance suite runs it on Deno itself.
import * as fs from 'node:fs'
import { afterEach, describe, expect, test } from 'vitest'
import { nativeReadFs, nativeWriteFs } from '../ts/fd-streams'
import { cleanup, openFdCount, tmpPath } from './helpers'

afterEach(cleanup)

async function readAll(stream: fs.ReadStream): Promise<string> {
  let out = ''
  for await (const chunk of stream) out += chunk
  return out
}

describe('fs streams through the addon', () => {
  test('a ReadStream reads a whole file, honours start/end, and closes the fd natively', async () => {
    const file = tmpPath('r')
    const text = 'x'.repeat(200_000) + 'end'
    fs.writeFileSync(file, text)
    const before = openFdCount()
    const all = fs.createReadStream('', { fd: fs.openSync(file, 'r'), fs: nativeReadFs as never, encoding: 'utf8', highWaterMark: 4096 })
    expect(await readAll(all)).toBe(text)
    const part = fs.createReadStream('', { fd: fs.openSync(file, 'r'), fs: nativeReadFs as never, encoding: 'utf8', start: 199_998, end: 200_001 })
    expect(await readAll(part)).toBe('xxen')
    await new Promise((r) => setTimeout(r, 10))
    expect(openFdCount()).toBe(before)
  })

  test('a WriteStream writes in order at the current offset and at start', async () => {
    const file = tmpPath('w')
    const w = fs.createWriteStream('', { fd: fs.openSync(file, 'w'), fs: nativeWriteFs as never })
    for (let i = 0; i < 1000; i++) w.write(`${i},`)
    await new Promise<void>((resolve, reject) => w.end('done', (e?: Error | null) => (e ? reject(e) : resolve())))
    expect(fs.readFileSync(file, 'utf8')).toBe(Array.from({ length: 1000 }, (_, i) => `${i},`).join('') + 'done')
    const at = fs.createWriteStream('', { fd: fs.openSync(file, 'r+'), fs: nativeWriteFs as never, start: 2 })
    await new Promise<void>((resolve, reject) => at.end('ZZ', (e?: Error | null) => (e ? reject(e) : resolve())))
    expect(fs.readFileSync(file, 'utf8').slice(0, 8)).toBe('0,ZZ2,3,')
  })

  test('a FIFO is read as it is written (the read blocks on the thread pool, not the event loop)', async () => {
    const { spawn, spawnSync } = await import('node:child_process')
    const fifo = tmpPath('fifo')
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0)
    spawn('sh', ['-c', `exec 3>"${fifo}"; printf one >&3; sleep 0.3; printf two >&3`], { stdio: 'inherit' })
    const fd = fs.openSync(fifo, 'r') // waits for the writer to open its end
    let ticks = 0
    const timer = setInterval(() => ticks++, 20)
    const got = await readAll(fs.createReadStream('', { fd, fs: nativeReadFs as never, encoding: 'utf8' }))
    clearInterval(timer)
    expect(got).toBe('onetwo')
    expect(ticks).toBeGreaterThan(5) // the loop kept running while the read waited for "two"
  })

  test('errors are Node-shaped: code, errno, syscall', async () => {
    const file = tmpPath('ro')
    fs.writeFileSync(file, 'read only')
    const w = fs.createWriteStream('', { fd: fs.openSync(file, 'r'), fs: nativeWriteFs as never })
    w.write('nope')
    const [err] = (await new Promise((resolve) => w.once('error', (e) => resolve([e])))) as [NodeJS.ErrnoException]
    expect(err).toMatchObject({ code: 'EBADF', errno: -9, syscall: 'write' })
    const r = fs.createReadStream('', { fd: 987_654, fs: nativeReadFs as never, autoClose: false })
    r.resume()
    const [rerr] = (await new Promise((resolve) => r.once('error', (e) => resolve([e])))) as [NodeJS.ErrnoException]
    expect(rerr).toMatchObject({ code: 'EBADF', syscall: 'read' })
  })
})
