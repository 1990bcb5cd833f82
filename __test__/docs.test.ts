// The documentation keeps its promises: every code block is a file that a
// test runs (quoted whole or in part, never retyped), or says why it is not
// run; every relative link and anchor leads somewhere.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { expect, test } from 'vitest'
import { root } from './helpers'

/** The Markdown files whose links and code blocks are checked. */
function markdownFiles(): string[] {
  const files = ['README.md', 'ARCHITECTURE.md', 'CHANGELOG.md', 'bench/README.md', 'examples/peers/README.md']
  for (const f of fs.readdirSync(path.join(root, 'docs'))) if (f.endsWith('.md')) files.push(`docs/${f}`)
  return files.filter((f) => fs.existsSync(path.join(root, f)))
}

interface Block {
  file: string
  line: number
  lang: string
  body: string
  /** The HTML comment on the nearest non-blank line above the fence, if any. */
  marker: string | null
}

function codeBlocks(file: string): Block[] {
  const lines = fs.readFileSync(path.join(root, file), 'utf8').split('\n')
  const blocks: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(```+|~~~+)\s*([\w-]*)/.exec(lines[i])
    if (!open) continue
    const fence = open[2]
    let j = i + 1
    while (j < lines.length && !lines[j].trimStart().startsWith(fence)) j++
    let k = i - 1
    while (k >= 0 && lines[k].trim() === '') k--
    const marker = k >= 0 && /^<!--.*-->$/.test(lines[k].trim()) ? lines[k].trim() : null
    blocks.push({ file, line: i + 1, lang: open[3].toLowerCase(), body: lines.slice(i + 1, j).join('\n'), marker })
    i = j
  }
  return blocks
}

/** Languages whose blocks are programs: each must be a tested file or say why not. */
const PROGRAM = new Set(['js', 'javascript', 'mjs', 'cjs', 'ts', 'typescript', 'python', 'py'])
const EXAMPLE = /^<!-- example: (\S+) -->$/
const EXCERPT = /^<!-- excerpt: (\S+) -->$/
const NOT_RUN = /^<!-- not run: (.{10,}) -->$/

/** The test files other than this one, to find who runs an example. */
const testSources = fs
  .readdirSync(__dirname)
  .filter((f) => f.endsWith('.test.ts') && f !== 'docs.test.ts')
  .map((f) => fs.readFileSync(path.join(__dirname, f), 'utf8'))

test('every program in the docs is an example file quoted exactly, and a test runs that file', () => {
  const problems: string[] = []
  let quoted = 0
  for (const file of markdownFiles()) {
    for (const b of codeBlocks(file)) {
      if (!PROGRAM.has(b.lang)) continue
      const where = `${b.file}:${b.line} (\`\`\`${b.lang})`
      const m = b.marker && (EXAMPLE.exec(b.marker) ?? EXCERPT.exec(b.marker))
      if (!m) {
        if (!(b.marker && NOT_RUN.test(b.marker))) {
          problems.push(`${where}: no <!-- example: path -->, <!-- excerpt: path --> or <!-- not run: why --> above it`)
        }
        continue
      }
      const target = path.join(root, m[1])
      if (!fs.existsSync(target)) {
        problems.push(`${where}: ${m[1]} does not exist`)
        continue
      }
      const text = fs.readFileSync(target, 'utf8').replace(/\n$/, '')
      if (EXAMPLE.test(b.marker!)) {
        if (b.body !== text) problems.push(`${where}: differs from ${m[1]} (quote the whole file, unchanged)`)
      } else if (!`\n${text}\n`.includes(`\n${b.body}\n`)) {
        problems.push(`${where}: not a run of whole lines of ${m[1]}`)
      }
      // A test names the file it runs: "examples/x.js" or "x/y.mjs" under examples/.
      const name = m[1].replace(/^examples\//, '')
      if (!testSources.some((src) => src.includes(name))) problems.push(`${where}: no test in __test__/ runs ${m[1]}`)
      quoted++
    }
  }
  expect(problems).toEqual([])
  expect(quoted).toBeGreaterThanOrEqual(8)
})

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .replace(/`/g, '')
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-')
}

function anchors(file: string): Set<string> {
  const seen = new Map<string, number>()
  const out = new Set<string>()
  const text = fs.readFileSync(file, 'utf8').replace(/^```[\s\S]*?^```/gm, '')
  for (const m of text.matchAll(/^#{1,6}\s+(.+?)\s*#*$/gm)) {
    const base = slug(m[1])
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  return out
}

/** Relative link targets of a Markdown file, outside code blocks and code spans. */
function links(file: string): string[] {
  const text = fs
    .readFileSync(path.join(root, file), 'utf8')
    .replace(/^```[\s\S]*?^```/gm, '')
    .replace(/`[^`\n]*`/g, '')
  const out: string[] = []
  for (const m of text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) out.push(m[1])
  for (const m of text.matchAll(/^\[[^\]]+\]:\s+(\S+)/gm)) out.push(m[1])
  return out.filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t))
}

test('every relative link and anchor in the docs resolves', () => {
  const problems: string[] = []
  let checked = 0
  for (const file of markdownFiles()) {
    for (const link of links(file)) {
      checked++
      const [target, anchor] = link.split('#', 2)
      const resolved = target === '' ? path.join(root, file) : path.resolve(path.dirname(path.join(root, file)), decodeURI(target))
      if (!fs.existsSync(resolved)) {
        problems.push(`${file}: ${link}: no such file`)
        continue
      }
      if (anchor !== undefined) {
        if (!resolved.endsWith('.md')) problems.push(`${file}: ${link}: an anchor into a file that is not Markdown`)
        else if (!anchors(resolved).has(anchor)) problems.push(`${file}: ${link}: no heading with that anchor`)
      }
    }
  }
  expect(problems).toEqual([])
  expect(checked).toBeGreaterThan(20)
})

test('the docs hold the product, not its history', () => {
  const diary: string[] = []
  for (const file of markdownFiles()) {
    const text = fs.readFileSync(path.join(root, file), 'utf8')
    for (const m of text.matchAll(/\bsession [0-9]/gi)) diary.push(`${file}: "${m[0]}"`)
  }
  expect(diary).toEqual([])
})

/** Every source file a test name may live in. */
function testSourceFiles(): string[] {
  const out: string[] = []
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`
      if (e.isDirectory()) {
        if (!['corpus', 'fixtures', 'node_modules'].includes(e.name)) walk(rel)
      } else if (/\.(ts|cjs|rs)$/.test(e.name)) out.push(rel)
    }
  }
  walk('__test__')
  for (const crate of fs.readdirSync(path.join(root, 'crates'))) walk(`crates/${crate}`)
  return out
}

test('docs/testing.md names tests and files that exist', () => {
  const sources = testSourceFiles().map((f) => fs.readFileSync(path.join(root, f), 'utf8'))
  const table = fs.readFileSync(path.join(root, 'docs/testing.md'), 'utf8')
  const rows = [...table.matchAll(/^\| (.+) \| (.+) \|$/gm)].slice(2).map((m) => m[2])
  expect(rows.length).toBeGreaterThan(25)
  const problems: string[] = []
  for (const cell of rows) {
    // A test's name in quotes ("..." marks a name cut short), or a Rust test function in backquotes.
    const names = [...cell.matchAll(/"([^"]+)"/g)].map((m) => m[1].replace(/\s*\.\.\.$/, ''))
    names.push(...[...cell.matchAll(/`([a-z0-9]+(?:_[a-z0-9]+){3,})`/g)].map((m) => m[1]))
    for (const name of names) if (!sources.some((src) => src.includes(name))) problems.push(`no test named "${name}"`)
    for (const m of cell.matchAll(/`((?:[\w.-]+\/)*[\w.-]+\.(?:ts|rs|cjs|js|sh))`/g)) {
      const f = m[1]
      const candidates = [f, `__test__/${f}`, `crates/fdpass-core/${f}`, `crates/fdpass-core/tests/${f}`, `scripts/${f}`]
      if (!candidates.some((c) => fs.existsSync(path.join(root, c)))) problems.push(`no file ${f}`)
    }
  }
  expect(problems).toEqual([])
})

test('the package ships the MIT notice that package.json names, and the changelog', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
  expect(pkg.license).toBe('MIT')
  const license = fs.readFileSync(path.join(root, 'LICENSE'), 'utf8')
  expect(license).toMatch(/^MIT License\n\nCopyright \(c\) \d{4} the fdpass authors\n/)
  expect(license).toContain('Permission is hereby granted, free of charge')
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  const pack = spawnSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', timeout: 60_000 })
  expect(pack.status, pack.stderr).toBe(0)
  const shipped = JSON.parse(pack.stdout)[0].files.map((f: { path: string }) => f.path)
  expect(shipped).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'CHANGELOG.md', 'package.json']))
})

test('ARCHITECTURE.md names files that exist', () => {
  const text = fs.readFileSync(path.join(root, 'ARCHITECTURE.md'), 'utf8')
  // Paths are written from the root, or (in the tables) from their crate or ts/.
  const bases = [
    '',
    'ts/',
    ...fs.readdirSync(path.join(root, 'crates')).map((c) => `crates/${c}/`),
    'crates/fdpass-napi/src/',
    'crates/fdpass-napi/src/reactor/',
    'crates/fdpass-core/src/',
    'crates/fdpass-core/src/engine/',
    'crates/fdpass-core/tests/',
  ]
  const named = new Set([...text.matchAll(/`((?:[\w.-]+\/)*[\w-]+\.(?:rs|ts|js|cjs|md|sh)|(?:[\w.-]+\/)+)`/g)].map((m) => m[1]))
  expect(named.size).toBeGreaterThan(30)
  const missing = [...named].filter((p) => !bases.some((b) => fs.existsSync(path.join(root, b + p))))
  expect(missing).toEqual([])
})
