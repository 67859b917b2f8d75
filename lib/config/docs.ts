/**
 * The README's reference tables, generated from the schema: the CLI's flags, the flat options
 * (the library's options object and the shorthand of a file), and the keys of the full form.
 * `npm run docs` rewrites the README between the markers; spec/config/docs.ts fails when the
 * README says something else than the schema.
 *
 *   node dist/lib/config/docs.js [README.md]
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { TSchema } from '@sinclair/typebox'
import { FLAT, FULL, SHARED, flagsOf, kindOf, leaves, meta } from './schema.js'
import { CLI_FLAGS, argText, defaultText, flagDefs, flagHelpText } from './flags.js'
import { formatUnit } from './units.js'

function cell (text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ')
}

function code (text: string): string {
  return text === '' ? '' : '`' + text + '`'
}

function row (cells: string[]): string {
  return `| ${cells.map(cell).join(' | ')} |`
}

function keyPath (path: readonly string[]): string {
  return path.join('.').replace(/\.\[\]/g, '[]')
}

/** What a leaf takes: its unit and range, its choices, or its kind. */
function valueText (leaf: TSchema): string {
  const m = meta(leaf)
  if (m.unit !== undefined) {
    const bound = (v: number | string | undefined): string | undefined =>
      v === undefined || v === Number.MAX_SAFE_INTEGER ? undefined : typeof v === 'string' ? v : formatUnit(m.unit!, v)
    const min = bound(m.min)
    const max = bound(m.max)
    const unit = { duration: 'duration', size: 'size', count: 'integer', rate: 'number' }[m.unit]
    const range = min !== undefined && max !== undefined ? `${min}–${max}` : min !== undefined ? `≥ ${min}` : max !== undefined ? `≤ ${max}` : ''
    return [unit, range, m.zero !== undefined ? `or 0 (${m.zero})` : ''].filter(s => s !== '').join(' ')
  }
  const checks: Record<string, string> = {
    listen: '[HOST]:PORT', target: 'HOST:PORT or https://HOST[:PORT]', hostPort: 'HOST:PORT', cidr: 'IP or CIDR', headerName: 'header name',
    headerValue: 'header value', token: 'token', method: 'method', serverName: 'server name', dnsName: 'DNS name', host: 'host name',
    path: 'path', regex: 'regular expression', location: 'URL or path', name: 'name', file: 'file',
    targetSpec: 'HOST:PORT[,weight=N][,backup]', balance: 'policy', healthCheck: 'path or tcp', statusRanges: 'statuses (200-399,404)',
  }
  if (m.check !== undefined) return checks[m.check]
  switch (kindOf(leaf)) {
    case 'Boolean': return 'true/false'
    case 'Union': {
      const branches = leaf.anyOf as TSchema[]
      if (branches.every(b => kindOf(b) === 'Literal')) return branches.map(b => String(b.const)).join(' | ')
      return branches.map(valueText).join(' or ')
    }
    case 'Literal': return String(leaf.const)
    case 'Array': return `list of ${valueText(leaf.items as TSchema)}`
    case 'Record': {
      const key = m.keyCheck !== undefined ? checks[m.keyCheck] : 'name'
      return `${key}: ${valueText(Object.values(leaf.patternProperties as Record<string, TSchema>)[0])}`
    }
    case 'Object': return 'mapping'
    case 'String': return 'string'
    case 'Integer': return 'integer'
    case 'Number': return 'number'
    case 'Null': return 'empty'
  }
  return ''
}

/** The CLI's flags, grouped as `--help` lists them. */
export function flagTable (): string {
  const lines = [row(['flag', 'option', 'default', 'meaning']), '| --- | --- | --- | --- |']
  for (const def of flagDefs()) {
    const head = def.spec.name + argText(def.spec)
    const option = keyPath(def.path) + (def.spec.set !== undefined ? `: ${JSON.stringify(def.spec.set)}` : '')
    lines.push(row([code(head), code(option), defaultText(def.leaf, def.spec), flagHelpText(def)]))
  }
  for (const flag of CLI_FLAGS) {
    lines.push(row([(flag.short !== undefined ? code(flag.short) + ', ' : '') + code(flag.name), '', '', flag.help]))
  }
  return lines.join('\n')
}

/** The flat options: the library's options object, and the shorthand of a file. */
export function optionTable (): string {
  const lines = [row(['option', 'value', 'default', 'flag', 'meaning']), '| --- | --- | --- | --- | --- |']
  const roots: Record<string, TSchema> = { ...FLAT, ...SHARED }
  for (const [key, schema] of Object.entries(roots)) {
    leaves(schema, (path, leaf) => {
      const flags = flagsOf(leaf).map(f => code(f.name)).join(', ')
      lines.push(row([code(keyPath([key, ...path])), valueText(leaf), defaultText(leaf), flags, meta(leaf).description]))
    })
  }
  return lines.join('\n')
}

/** The full form's keys. */
export function configTable (): string {
  const lines = [row(['key', 'value', 'default', 'meaning']), '| --- | --- | --- | --- |']
  const roots: Record<string, TSchema> = { ...FULL, ...SHARED }
  for (const [key, schema] of Object.entries(roots)) {
    leaves(schema, (path, leaf) => {
      lines.push(row([code(keyPath([key, ...path])), valueText(leaf), defaultText(leaf), meta(leaf).description]))
    })
  }
  return lines.join('\n')
}

export const SECTIONS: Readonly<Record<string, () => string>> = {
  flags: flagTable,
  options: optionTable,
  config: configTable,
}

/** `readme` with each generated section (between `<!-- rp4:NAME:begin -->` and `<!-- rp4:NAME:end -->`) rewritten. */
export function updateReadme (readme: string): string {
  let out = readme
  for (const [name, render] of Object.entries(SECTIONS)) {
    const begin = `<!-- rp4:${name}:begin (generated by npm run docs from lib/config/schema.ts) -->`
    const end = `<!-- rp4:${name}:end -->`
    const from = out.indexOf(begin)
    const to = out.indexOf(end)
    if (from === -1 || to < from) throw new Error(`README: markers of the ${name} table not found: ${begin} ... ${end}`)
    out = out.slice(0, from + begin.length) + '\n' + render() + '\n' + out.slice(to)
  }
  return out
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2] ?? fileURLToPath(new URL('../../../README.md', import.meta.url))
  const before = readFileSync(file, 'utf8')
  const after = updateReadme(before)
  if (after !== before) writeFileSync(file, after)
  process.stdout.write(`${file}: ${after === before ? 'up to date' : 'reference tables rewritten'}\n`)
}
