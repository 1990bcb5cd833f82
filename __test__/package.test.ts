// The package as users get it, and the CI workflows that build it.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as semver from 'semver'
import { describe, expect, test } from 'vitest'
import { root } from './helpers'

describe('packaging', () => {
  // verify-pack.sh packs this machine's linux-x64-gnu binary package.
  const glibcX64 =
    process.platform === 'linux' &&
    process.arch === 'x64' &&
    Boolean((process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime)
  test.runIf(glibcX64)(
    `packed tarballs install outside the repo, without Rust, and pass an fd between processes${glibcX64 ? '' : ' (skipped: packs linux-x64-gnu only)'}`,
    () => {
      const r = spawnSync('bash', [path.join(root, 'scripts/verify-pack.sh')], { encoding: 'utf8', timeout: 120_000 })
      expect(r.stderr.replace(/npm warn[^\n]*\n/g, '')).toBe('')
      expect(r.stdout).toContain('verify-pack: ok (passed between processes)')
      expect(r.status).toBe(0)
    },
    150_000,
  )

  test('every platform package names its os, cpu and libc', () => {
    const dirs = fs.readdirSync(path.join(root, 'npm'))
    expect(dirs.sort()).toEqual(['darwin-arm64', 'darwin-x64', 'linux-arm64-gnu', 'linux-arm64-musl', 'linux-x64-gnu', 'linux-x64-musl'])
    for (const d of dirs) {
      const pkg = JSON.parse(fs.readFileSync(path.join(root, 'npm', d, 'package.json'), 'utf8'))
      expect(pkg.name).toBe(`fdpass-${d}`)
      expect(pkg.main).toBe(`fdpass.${d}.node`)
      expect(pkg.os).toEqual([d.startsWith('linux') ? 'linux' : 'darwin'])
      expect(pkg.cpu).toEqual([d.includes('arm64') ? 'arm64' : 'x64'])
      if (d.startsWith('linux')) expect(pkg.libc).toEqual([d.endsWith('musl') ? 'musl' : 'glibc'])
    }
  })
})

describe('workflows', () => {
  test('.github/workflows pass actionlint', () => {
    const r = spawnSync('bash', [path.join(root, 'scripts/lint-workflows.sh')], { encoding: 'utf8', timeout: 240_000 })
    expect(r.status, r.stdout + r.stderr).toBe(0)
  }, 250_000)

  test('the publish job publishes through scripts/publish.sh, the script the release rehearsal runs', () => {
    const workflow = fs.readFileSync(path.join(root, '.github/workflows/CI.yml'), 'utf8')
    const publishJob = workflow.slice(workflow.indexOf('\n  publish:\n'))
    expect(publishJob).toContain('run: bash scripts/publish.sh --provenance')
    // Nothing else publishes: a bare `npm publish` would ship a root package without optionalDependencies.
    expect(publishJob).not.toMatch(/npm publish/)
    expect(workflow).toContain('run: bash scripts/release-rehearsal.sh')
    const publish = fs.readFileSync(path.join(root, 'scripts/publish.sh'), 'utf8')
    expect(publish).toMatch(/^npx napi pre-publish -t npm --skip-optional-publish --no-gh-release$/m)
    const rehearsal = fs.readFileSync(path.join(root, 'scripts/release-rehearsal.sh'), 'utf8')
    expect(rehearsal).toContain('publish_script="${FDPASS_PUBLISH_SCRIPT:-$stage/scripts/publish.sh}"')
  })

  test('and actionlint does fail a broken workflow', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-wf-'))
    const file = path.join(dir, 'broken.yml')
    fs.writeFileSync(file, 'on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n        run: echo both\n')
    const bin = path.join(process.env.FDPASS_TOOLS ?? path.join(os.homedir(), '.cache/fdpass/bin'), 'actionlint')
    const r = spawnSync(bin, ['-shellcheck=', file], { encoding: 'utf8' })
    expect(r.status).toBe(1)
    expect(r.stdout).toMatch(/broken\.yml/)
    fs.rmSync(dir, { recursive: true })
  })
})

describe('loader errors', () => {
  test('a missing binary names the package to install and why it may be missing', () => {
    // A copy of the package without its .node file.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-nobin-'))
    for (const f of ['index.js', 'binding.js', 'package.json']) fs.copyFileSync(path.join(root, f), path.join(dir, f))
    fs.cpSync(path.join(root, 'dist'), path.join(dir, 'dist'), { recursive: true })
    const r = spawnSync(
      process.execPath,
      ['-e', `try { require(${JSON.stringify(dir)}) } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`],
      {
        encoding: 'utf8',
      },
    )
    const out = JSON.parse(r.stdout)
    expect(out.code).toBe('ERR_FDPASS_BINARY_MISSING')
    // The package for the platform this runs on, as the loader names it.
    const glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime
    const target = process.platform === 'linux' ? `linux-${process.arch}-${glibc ? 'gnu' : 'musl'}` : `${process.platform}-${process.arch}`
    expect(out.message).toContain(`npm install fdpass-${target}`)
    expect(out.message).toMatch(/npm\/cli#4828/)
    expect(out.message).toMatch(/asarUnpack/)
    fs.rmSync(dir, { recursive: true })
  })

  test('on Windows it says that SCM_RIGHTS does not exist there', () => {
    const preload = "Object.defineProperty(process, 'platform', { value: 'win32' })"
    const r = spawnSync(
      process.execPath,
      ['-e', `${preload}; try { require(${JSON.stringify(root)}) } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`],
      {
        encoding: 'utf8',
      },
    )
    const out = JSON.parse(r.stdout)
    expect(out.code).toBe('ERR_FDPASS_UNSUPPORTED_PLATFORM')
    expect(out.message).toMatch(/SCM_RIGHTS/)
    expect(out.message).toMatch(/Windows/)
  })

  test('an unsupported platform lists the supported ones', () => {
    const preload = "Object.defineProperty(process, 'arch', { value: 'riscv64' })"
    const r = spawnSync(
      process.execPath,
      ['-e', `${preload}; try { require(${JSON.stringify(root)}) } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`],
      {
        encoding: 'utf8',
      },
    )
    const out = JSON.parse(r.stdout)
    expect(out.code).toBe('ERR_FDPASS_UNSUPPORTED_PLATFORM')
    expect(out.message).toMatch(/linux-x64-gnu.*darwin-arm64/)
  })
})

describe('module structure', () => {
  const checker = path.join(root, 'scripts/check-import-cycles.js')

  test('the modules of ts/ import each other in no cycle', () => {
    const r = spawnSync(process.execPath, [checker], { cwd: root, encoding: 'utf8' })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
  })

  test('and the check does find a cycle, type-only imports included', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-cycle-'))
    try {
      fs.writeFileSync(path.join(dir, 'a.ts'), "import { b } from './b'\nexport const a = b\n")
      fs.writeFileSync(path.join(dir, 'b.ts'), "import type { C } from './c'\nexport const b: C = 1\n")
      fs.writeFileSync(path.join(dir, 'c.ts'), "export type C = number\nexport { a } from './a'\n")
      const r = spawnSync(process.execPath, [checker, dir], { encoding: 'utf8' })
      expect(r.status).toBe(1)
      expect(r.stderr).toMatch(/import cycle: .*a\.ts -> .*b\.ts -> .*c\.ts -> .*a\.ts/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('index.ts only re-exports', () => {
    const source = fs.readFileSync(path.join(root, 'ts/index.ts'), 'utf8')
    const statements = source
      .replace(/\/\/[^\n]*/g, '')
      .split(/\n(?=\S)/)
      .map((s) => s.trim())
      .filter((s) => s !== '')
    expect(statements.length).toBeGreaterThan(0)
    for (const s of statements) expect(s).toMatch(/^export (type )?\{[^}]*\} from '\.\/[\w-]+'$/s)
  })
})

describe('development set-up', () => {
  const lock = JSON.parse(fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8'))
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))

  test("package-lock.json's root entry is what npm install writes from package.json (so it leaves the file alone)", () => {
    const entry = lock.packages['']
    for (const field of [
      'name',
      'version',
      'license',
      'bin',
      'os',
      'cpu',
      'engines',
      'dependencies',
      'devDependencies',
      'optionalDependencies',
      'peerDependencies',
      'peerDependenciesMeta',
    ]) {
      expect(entry[field], field).toEqual(pkg[field])
    }
    expect(lock.name).toBe(pkg.name)
    expect(lock.version).toBe(pkg.version)
  })

  test('every locked package installs on Node 20 without EBADENGINE', () => {
    // fdpass runs on Node >= 20.3 (engines); developing it (vite, oxlint)
    // needs 20.19, the oldest Node 20 the dev dependencies accept.
    const oldestDevelopmentNode20 = '20.19.0'
    const refused = Object.entries(lock.packages as Record<string, { engines?: { node?: string } }>)
      .filter(([name, p]) => name !== '' && typeof p.engines?.node === 'string')
      .filter(([, p]) => !semver.satisfies(oldestDevelopmentNode20, p.engines!.node!))
      .map(([name, p]) => `${name} (node ${p.engines!.node})`)
    expect(refused).toEqual([])
  })

  test('oxlint is pinned in devDependencies, and lint uses that one', () => {
    expect(pkg.devDependencies.oxlint).toMatch(/^\d+\.\d+\.\d+$/)
    const ci =
      fs.readFileSync(path.join(root, '.ci/run'), 'utf8') + fs.readFileSync(path.join(root, '.github/workflows/CI.yml'), 'utf8') + JSON.stringify(pkg.scripts)
    expect(ci).not.toMatch(/npx (--yes )?oxlint@/)
    expect(pkg.scripts['lint:js']).toMatch(/^oxlint /)
  })
})

describe('error codes agree between the Rust core and the TypeScript types', () => {
  const rust = fs.readFileSync(path.join(root, 'crates/fdpass-core/src/error.rs'), 'utf8')
  const ts = fs.readFileSync(path.join(root, 'ts/errors.ts'), 'utf8')
  const quoted = (text: string, pattern: RegExp) => new Set([...text.matchAll(pattern)].map((m) => m[1]))
  const between = (text: string, start: string, end: string) => {
    const from = text.indexOf(start)
    expect(from, start).toBeGreaterThanOrEqual(0)
    return text.slice(from, text.indexOf(end, from))
  }

  test('SystemErrorCode is ERRNO_NAMES and UNKNOWN', () => {
    const names = quoted(between(rust, 'ERRNO_NAMES', '];'), /"(E[A-Z0-9]+)"/g)
    expect(names.size).toBeGreaterThan(50)
    names.add(
      quoted(rust, /UNKNOWN_ERRNO_NAME: &str = "([A-Z]+)"/g)
        .values()
        .next().value as string,
    )
    const union = quoted(between(ts, 'export type SystemErrorCode =', '\n\n'), /'([A-Z0-9_]+)'/g)
    expect([...union].sort()).toEqual([...names].sort())
  })

  test("every code the core makes is one of FdpassErrorFields'", () => {
    const codes = quoted(between(rust, 'pub fn code(&self)', '\n  }\n'), /"(ERR_[A-Z_]+)"/g)
    expect(codes.size).toBeGreaterThan(5)
    const fields = quoted(between(ts, 'export interface FdpassErrorFields {', '\n}\n'), /^ {2}([A-Z_]+):/gm)
    for (const code of codes) expect(fields, code).toContain(code)
  })
})

describe('the contract between the addon and the TypeScript layer is defined once, in Rust', () => {
  const sources = fs
    .readdirSync(path.join(root, 'ts'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => [f, fs.readFileSync(path.join(root, 'ts', f), 'utf8')] as const)

  test('ts/ defines no event code, flag or descriptor-kind list of its own', () => {
    for (const [file, text] of sources) {
      expect(text, file).not.toMatch(/\b(EV|FLAG)_[A-Z_]+\s*=\s*\d/)
      expect(text, file).not.toMatch(/\[\s*'file',\s*'directory'/)
    }
  })

  test('binding.d.ts declares what the TypeScript layer reads, and the addon gives the values ts/ expects', async () => {
    const dts = fs.readFileSync(path.join(root, 'binding.d.ts'), 'utf8')
    for (const name of [
      'EV_MESSAGES',
      'EV_SENT',
      'EV_SEND_FAILED',
      'EV_END',
      'EV_ERROR',
      'EV_ACCEPTABLE',
      'FLAG_DATA_TRUNCATED',
      'FLAG_FDS_TRUNCATED',
      'MAX_FDS_PER_MESSAGE',
    ]) {
      expect(dts).toMatch(new RegExp(`export declare const ${name}: number`))
    }
    expect(dts).toMatch(/export declare function fdKinds\(\): Array<string>/)
    expect(dts).toMatch(/export declare function socketpair\([^)]*\): \[NativeSocket, NativeSocket\]/)
    expect(dts).not.toMatch(/crate::/)
    const { binding } = await import('../dist/native')
    expect(binding.fdKinds()).toEqual(['file', 'directory', 'pipe', 'socket', 'character-device', 'block-device', 'symlink', 'unknown'])
    expect(binding.MAX_FDS_PER_MESSAGE).toBe(253)
    expect(new Set([binding.EV_MESSAGES, binding.EV_SENT, binding.EV_SEND_FAILED, binding.EV_END, binding.EV_ERROR, binding.EV_ACCEPTABLE]).size).toBe(6)
  })

  // The string unions of the native functions' arguments: #[napi(string_enum)] in contract.rs.
  const unions: Record<string, string[]> = {
    SocketType: ['stream', 'seqpacket', 'dgram'],
    Reactor: ['uv', 'thread'],
    Runtime: ['node', 'bun', 'deno'],
    InetKind: ['tcp', 'udp'],
  }

  test('binding.d.ts declares the socket type, reactor, runtime and inet kind unions, and the native functions take them', () => {
    const dts = fs.readFileSync(path.join(root, 'binding.d.ts'), 'utf8')
    for (const [name, values] of Object.entries(unions)) {
      expect(dts).toContain(`export type ${name} = ${values.map((v) => `'${v}'`).join(' | ')}\n`)
    }
    for (const fn of ['connect', 'socketpair', 'listen']) expect(dts).toMatch(new RegExp(`export declare function ${fn}\\(socketType: SocketType,`))
    expect(dts).toContain('export declare function configure(reactor: Reactor, runtime?: Runtime | undefined | null): Reactor')
    expect(dts).toContain('export declare function bindInetSocket(kind: InetKind,')
    expect(dts).toMatch(/class NativeSocket \{[^}]*get type\(\): SocketType/)
    expect(dts).toMatch(/class NativeServer \{[^}]*get type\(\): SocketType/)
    expect(dts).toMatch(/interface SocketInfo \{\s*type: SocketType/)
  })

  test('the addon exports the values of each union, and rejects a value outside it', async () => {
    const { binding } = await import('../dist/native')
    const exported = binding as unknown as Record<string, Record<string, string>>
    for (const [name, values] of Object.entries(unions)) expect(Object.values(exported[name]), name).toEqual(values)
    expect(() => binding.socketpair('stream-ish' as never, false, 1024)).toThrow(/does not match any variant of enum `SocketType`/)
  })

  test('ts/ writes none of these unions out itself: it uses the types binding.d.ts declares', () => {
    // Every run of quoted literals joined by `|` or `,` (a union, an array, a
    // message listing choices), comments left out.
    const runs = (text: string) =>
      text
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/(^|[^:'"`])\/\/.*$/gm, '$1')
        .match(/'[\w-]+'(\s*[|,]\s*'[\w-]+')+/g) ?? []
    for (const [file, text] of sources) {
      for (const run of runs(text)) {
        const literals = run.match(/[\w-]+/g) ?? []
        for (const [name, values] of Object.entries(unions)) {
          expect(literals.filter((l) => values.includes(l)).length, `${file} spells out ${name}: ${run}`).toBeLessThan(2)
        }
      }
    }
    const native = sources.find(([f]) => f === 'native.ts')?.[1] ?? ''
    expect(native).toMatch(/export type \{[^}]*\bInetKind\b[^}]*\bReactor\b[^}]*\bRuntime\b[^}]*\bSocketType\b[^}]*\} from '\.\.\/binding\.js'/)
  })
})

test('the fast calls hot.rs defines are the ones binding-hot.d.ts declares, and binding.d.ts re-exports them from its header', () => {
  const rust = fs.readFileSync(path.join(root, 'crates/fdpass-napi/src/hot.rs'), 'utf8')
  const hot = fs.readFileSync(path.join(root, 'binding-hot.d.ts'), 'utf8')
  const defined = [...rust.slice(rust.indexOf('pub fn exports()')).matchAll(/\(c"(\w+)", Some\(/g)].map((m) => m[1]).sort()
  const declared = [...hot.matchAll(/^export declare function (\w+)\(/gm)].map((m) => m[1]).sort()
  expect(defined.length).toBeGreaterThan(5)
  expect(declared).toEqual(defined)
  const headerFile = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).napi.dtsHeaderFile
  const header = fs.readFileSync(path.join(root, headerFile), 'utf8')
  expect(header).toMatch(/^export \* from '\.\/binding-hot'$/m)
  expect(fs.readFileSync(path.join(root, 'binding.d.ts'), 'utf8').startsWith(header)).toBe(true)
})

test('every file the published declarations import is in the package', () => {
  const files: string[] = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).files
  const dts = fs.readFileSync(path.join(root, 'binding.d.ts'), 'utf8')
  const imported = [...dts.matchAll(/^(?:import|export)\b[^'\n]*from '\.\/([^']+)'/gm)].map((m) => `${m[1].replace(/\.js$/, '')}.d.ts`)
  expect(imported).toContain('binding-hot.d.ts')
  for (const file of imported) {
    expect(fs.existsSync(path.join(root, file)), file).toBe(true)
    expect(files, file).toContain(file)
  }
})
