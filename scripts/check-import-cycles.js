#!/usr/bin/env node
// Fails when the modules of ts/ import each other in a cycle, type-only
// imports included: a cycle makes a module see another half-initialised
// at load time, and makes the layers impossible to read in order.
// Usage: node scripts/check-import-cycles.js [directory]  (default: ts)
'use strict'
const fs = require('node:fs')
const path = require('node:path')

const dir = path.resolve(process.argv[2] ?? path.join(__dirname, '..', 'ts'))

/** The relative modules `file` imports or re-exports, as paths inside `dir`. */
function importsOf(file) {
  const source = fs.readFileSync(file, 'utf8')
  const found = new Set()
  const pattern =
    /(?:^|\n)\s*(?:import|export)\s[^;'"]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|(?:^|\n)\s*import\s*['"](\.{1,2}\/[^'"]+)['"]|\brequire\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)|\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g
  for (const m of source.matchAll(pattern)) {
    const spec = m[1] ?? m[2] ?? m[3] ?? m[4]
    const target = resolve(path.dirname(file), spec)
    if (target !== null) found.add(target)
  }
  return [...found]
}

/** A specifier's file inside `dir`, or null when it points outside (../binding.js). */
function resolve(from, spec) {
  const base = path.resolve(from, spec).replace(/\.js$/, '')
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts')]) {
    if (candidate.startsWith(dir + path.sep) && fs.existsSync(candidate)) return candidate
  }
  return null
}

const files = fs
  .readdirSync(dir, { recursive: true })
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
  .map((f) => path.join(dir, f))
const graph = new Map(files.map((f) => [f, importsOf(f)]))

// Depth-first search; a back edge to a module on the current path is a cycle.
const cycles = []
const state = new Map() // file -> 'open' | 'done'
const stack = []
function visit(file) {
  state.set(file, 'open')
  stack.push(file)
  for (const next of graph.get(file) ?? []) {
    if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next])
    else if (!state.has(next)) visit(next)
  }
  stack.pop()
  state.set(file, 'done')
}
for (const file of [...graph.keys()].sort()) if (!state.has(file)) visit(file)

const rel = (f) => path.relative(process.cwd(), f)
if (cycles.length > 0) {
  for (const cycle of cycles) process.stderr.write(`import cycle: ${cycle.map(rel).join(' -> ')}\n`)
  process.stderr.write(`${cycles.length} import cycle(s) in ${rel(dir)}: move what both sides need into a module of its own\n`)
  process.exit(1)
}
process.stdout.write(`no import cycles among ${graph.size} modules in ${rel(dir)}\n`)
