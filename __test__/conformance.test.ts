// The conformance suite (conformance/suite.cjs) on this Node, with the
// readiness mechanism of this vitest project. scripts/runtimes.js runs the
// same file on Node 22 and 24, Bun, Deno and arm64 Node under qemu.
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { describe, expect, test } from 'vitest'

describe('conformance suite', () => {
  test('every case passes on this Node', () => {
    const r = spawnSync(process.execPath, [path.join(__dirname, 'conformance', 'suite.cjs')], { encoding: 'utf8', timeout: 120_000 })
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    const { summary } = lines.at(-1)
    expect(
      lines.filter((l) => l.ok === false),
      r.stderr,
    ).toEqual([])
    expect(summary).toMatchObject({ runtime: 'node', reactor: process.env.FDPASS_REACTOR, failed: 0, passed: lines.length - 1 })
    expect(lines.length - 1).toBeGreaterThanOrEqual(9)
    expect(r.status).toBe(0)
  }, 130_000)

  test('a failing case fails the suite', () => {
    // The suite must be able to fail: a receiver limited to 10 descriptors cannot take 253.
    const r = spawnSync(
      'bash',
      ['-c', `ulimit -n 40 && exec "${process.execPath}" "${path.join(__dirname, 'conformance', 'suite.cjs')}" "fds in one message"`],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    )
    const { summary } = JSON.parse(r.stdout.trim().split('\n').at(-1)!)
    expect(summary.failed).toBe(1)
    expect(r.status).toBe(1)
  }, 70_000)
})
