/**
 * The CLI's flags, derived from the schema's `flag` annotations: argv → the flat options, checked
 * by the same validator as a file, each problem worded with the flag as typed and its value as
 * written (`--tcp-idle-timeout 25h: at most 24h`); the options section of `--help`; and
 * `toYaml`, which prints the full-form file a command line stands for (`rp4 config --from-flags`),
 * so that a one-liner can grow into a file.
 */
import { parseArgs } from 'node:util'
import type { TSchema } from '@sinclair/typebox'
import { yaml } from './yaml.js'
import { FLAG_GROUPS, FLAT, SHARED, OptionsSchema, childSchema, flagsOf, kindOf, leaves, meta, type FlagGroup, type FlagSpec, type Options } from './schema.js'
import { formatUnit, parseUnit } from './units.js'
import { formatPath, listProblems, type Path, type Problem } from './problems.js'
import { validate } from './validate.js'
import { isFullForm } from './consistency.js'
import { expandFlat } from './expand.js'

/** A mistake on the command line; `message` has one line per problem. */
export class UsageError extends Error {
  readonly lines: readonly string[]

  constructor (lines: string | readonly string[]) {
    const list = typeof lines === 'string' ? [lines] : lines
    super(listProblems(list))
    this.name = 'UsageError'
    this.lines = list
  }
}

/** A flag that maps onto an option. */
export interface FlagDef {
  spec: FlagSpec
  /** The option it sets; `[]` stands for the item of a list of mappings, filled by position (`--cert`, `--key`). */
  path: readonly string[]
  leaf: TSchema
}

/** Flags of the command line itself, mapping onto no option. */
export interface CliFlag {
  name: string
  short?: string
  help: string
}

export const CLI_FLAGS: readonly CliFlag[] = [
  { name: '--quiet', short: '-q', help: 'no startup line, no error lines' },
  { name: '--from-flags', help: 'rp4 config: print the YAML file the rest of the command line stands for' },
  { name: '--help', short: '-h', help: 'this help' },
  { name: '--version', short: '-v', help: 'the version' },
]

let table: FlagDef[] | null = null

/** Every option flag, in schema order. */
export function flagDefs (): readonly FlagDef[] {
  if (table !== null) return table
  const defs: FlagDef[] = []
  const roots: Record<string, TSchema> = { ...FLAT, ...SHARED }
  for (const [key, schema] of Object.entries(roots)) {
    leaves(schema, (path, leaf) => {
      for (const spec of flagsOf(leaf)) defs.push({ spec, path: [key, ...path], leaf })
    })
  }
  table = defs
  return defs
}

export interface CommandLine {
  positionals: string[]
  help: boolean
  version: boolean
  quiet: boolean
  fromFlags: boolean
  /** Option flags as given, each with its values in order (`true` for a switch). */
  given: Array<{ def: FlagDef, values: Array<string | true> }>
}

/** argv (without node and the script) → flags and positionals; a `UsageError` for an unknown flag or a missing value. */
export function parseCommandLine (argv: string[]): CommandLine {
  const options: Record<string, { type: 'string' | 'boolean', multiple?: boolean, short?: string }> = {}
  for (const { spec } of flagDefs()) {
    options[spec.name.slice(2)] = spec.set !== undefined ? { type: 'boolean' } : { type: 'string', multiple: true }
  }
  for (const flag of CLI_FLAGS) {
    options[flag.name.slice(2)] = flag.short !== undefined ? { type: 'boolean', short: flag.short.slice(1) } : { type: 'boolean' }
  }
  let parsed
  try {
    parsed = parseArgs({ args: withBareValues(argv), options, allowPositionals: true, strict: true })
  } catch (err) {
    // parseArgs names the flag: "Unknown option '--bogus'", "Option '--to <value>' argument missing"
    throw new UsageError((err as Error).message)
  }
  const values = parsed.values as Record<string, string[] | boolean | undefined>
  const given: CommandLine['given'] = []
  for (const def of flagDefs()) {
    const value = values[def.spec.name.slice(2)]
    if (value === undefined || value === false) continue
    given.push({ def, values: value === true ? [true] : value as string[] })
  }
  return {
    positionals: parsed.positionals,
    help: values.help === true,
    version: values.version === true,
    quiet: values.quiet === true,
    fromFlags: values['from-flags'] === true,
    given,
  }
}

/**
 * A flag whose argument is optional (`--access-log [FILE]`) given bare, as `--flag=VALUE`: it is
 * bare when nothing follows it, or a flag does (`--access-log --to ...`). `--flag=FILE` always
 * names a file, even one starting with `-`.
 */
function withBareValues (argv: readonly string[]): string[] {
  const bare = new Map<string, string>()
  for (const { spec } of flagDefs()) if (spec.bare !== undefined) bare.set(spec.name, spec.bare)
  return argv.map((arg, i) => {
    const value = bare.get(arg)
    if (value === undefined) return arg
    const next = argv[i + 1]
    return next === undefined || (next.startsWith('-') && next !== '-') ? `${arg}=${value}` : arg
  })
}

type Obj = Record<string | number, unknown>

/** The argument as help shows it: ` FILE`, ` [FILE]` when it may be left out, nothing for a switch. */
export function argText (spec: FlagSpec): string {
  if (spec.arg === undefined) return ''
  return spec.bare !== undefined ? ` [${spec.arg}]` : ` ${spec.arg}`
}

function setIn (root: Obj, path: ReadonlyArray<string | number>, value: unknown): void {
  let node = root
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i]
    node[key] ??= typeof path[i + 1] === 'number' ? [] : {}
    node = node[key] as Obj
  }
  node[path[path.length - 1]] = value
}

/** One occurrence's value in the option's units, or why it cannot be. */
function convert (def: FlagDef, raw: string): unknown {
  const unit = meta(def.leaf).unit
  if (unit !== undefined) return parseUnit(unit, raw)
  // `auto|N` (--workers): a number where the option takes one, validated as such
  if (kindOf(def.leaf) === 'Union' && /^\s*\d+\s*$/.test(raw) && (def.leaf.anyOf as TSchema[]).some(b => kindOf(b) === 'Integer')) return Number(raw)
  return raw
}

/**
 * The flat options a command line stands for (`listen` is the address argument), validated: a
 * `UsageError` listing every problem, each naming its flag, otherwise.
 */
export function flagsToOptions (listen: string | undefined, line: CommandLine): Options {
  const options: Obj = {}
  const errors: string[] = []
  /** Option paths set by a flag: the flag and the value as typed, to word problems. */
  const origins = new Map<string, { flag: string, raw?: string }>()
  const origin = (path: Path, flag: string, raw?: string): void => { origins.set(JSON.stringify(path), { flag, raw }) }
  const setBy = new Map<string, string>()

  if (listen !== undefined) {
    options.listen = listen
    origin(['listen'], 'listen address')
  }
  const positional = new Map<string, Array<{ flag: string, count: number }>>()
  for (const { def, values } of line.given) {
    const { spec } = def
    const key = JSON.stringify(def.path)
    const other = setBy.get(key)
    if (other !== undefined && other !== spec.name) {
      errors.push(`${other} and ${spec.name} contradict each other`)
      continue
    }
    setBy.set(key, spec.name)
    const slot = def.path.indexOf('[]')
    if (spec.set !== undefined) {
      setIn(options, def.path, structuredClone(spec.set))
      origin(def.path, spec.name)
    } else if (slot !== -1) {
      const list = def.path.slice(0, slot)
      values.forEach((raw, i) => {
        const path = [...list, i, ...def.path.slice(slot + 1)]
        setIn(options, path, raw)
        origin(path, spec.name, raw as string)
      })
      const counts = positional.get(JSON.stringify(list)) ?? []
      counts.push({ flag: spec.name, count: values.length })
      positional.set(JSON.stringify(list), counts)
    } else if (spec.entry === true) {
      for (const raw of values as string[]) {
        const eq = raw.indexOf('=')
        if (eq < 1) {
          errors.push(`${spec.name}: "${raw}" is not ${spec.arg ?? 'NAME=VALUE'}`)
          continue
        }
        const path = [...def.path, raw.slice(0, eq)]
        setIn(options, path, raw.slice(eq + 1))
        origin(path, spec.name, raw)
      }
    } else if (spec.repeat === true) {
      const items = values.map((raw, i) => {
        origin([...def.path, i], spec.name, raw as string)
        return convert(def, raw as string)
      })
      setIn(options, def.path, items)
      origin(def.path, spec.name)
    } else {
      // given more than once: the last one counts, as with most commands
      const raw = values[values.length - 1] as string
      const value = convert(def, raw)
      if (typeof value === 'string' && meta(def.leaf).unit !== undefined) {
        errors.push(`${spec.name} ${raw}: ${value}`)
        continue
      }
      setIn(options, def.path, value)
      origin(def.path, spec.name, raw)
    }
  }
  const unpaired: string[] = []
  for (const [list, given] of positional) {
    // --cert and --key fill the same list by position: their counts must agree
    const partners = flagDefs().filter(d => d.path.includes('[]') && JSON.stringify(d.path.slice(0, d.path.indexOf('[]'))) === list)
    const counts = partners.map(d => ({ def: d, count: given.find(g => g.flag === d.spec.name)?.count ?? 0 }))
    if (counts.every(c => c.count === counts[0].count)) continue
    const pair = partners.map(d => `${d.spec.name} ${d.spec.arg ?? ''}`.trim()).join(' ')
    errors.push(`${counts.map(c => `${c.count} ${c.def.spec.name}`).join(' but ')}: give them in pairs, ${pair}`)
    unpaired.push(list.slice(0, -1))
  }
  // what could be read is validated all the same: every problem in one go
  // what an unpaired list lacks was said already
  const problems = validate(options).filter(p => !unpaired.some(list => JSON.stringify(p.path).startsWith(list)))
  const lines = [...errors, ...problems.map(p => renderFlagProblem(p, origins))]
  if (lines.length > 0) throw new UsageError(lines)
  return options as Options
}

function flagNamed (path: Path): FlagDef | undefined {
  const key = JSON.stringify(path)
  return flagDefs().find(d => JSON.stringify(d.path) === key && d.spec.set === undefined) ?? flagDefs().find(d => JSON.stringify(d.path) === key)
}

/** A problem of flag-made options, named by the flag that set what is wrong. */
function renderFlagProblem (p: Problem, origins: Map<string, { flag: string, raw?: string }>): string {
  /** The flag that set `path`, a value above it, or else one below it (`--sni` for a problem of `tls`). */
  const find = (path: Path): { flag: string, raw?: string } | undefined => {
    for (let i = path.length; i > 0; i--) {
      const found = origins.get(JSON.stringify(path.slice(0, i)))
      if (found !== undefined) return found
    }
    const prefix = JSON.stringify(path).slice(0, -1)
    for (const [key, found] of origins) {
      if (key.startsWith(prefix + ',')) return { flag: found.flag }
    }
    return undefined
  }
  const name = (path: Path): string => find(path)?.flag ?? flagNamed(path)?.spec.name ?? `option ${formatPath(path)}`
  if (p.missing !== undefined) {
    const wanted = flagNamed([...p.path, p.missing])
    const wantedText = wanted !== undefined ? `${wanted.spec.name}${wanted.spec.arg !== undefined ? ' ' + wanted.spec.arg : ''}` : p.missing
    const by = p.path.length > 0 ? find(p.path) : undefined
    if (by !== undefined) return `${by.flag} needs ${wanted?.spec.name ?? p.missing}`
    return `missing ${wantedText}${p.message !== '' ? ` (${p.message})` : ''}`
  }
  const at = find(p.path)
  const message = p.message.replace('{with}', p.with !== undefined ? name(p.with) : '')
  if (at === undefined) return `option ${formatPath(p.path)}: ${message}`
  return p.value !== undefined && at.raw !== undefined ? `${at.flag} ${at.raw}: ${message}` : `${at.flag}: ${message}`
}

// ── --help ──

const COLUMN = 30
const WIDTH = 80

function wrap (text: string, width: number): string[] {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(/\s+/)) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line)
      line = word
    } else {
      line = line === '' ? word : line + ' ' + word
    }
  }
  if (line !== '') lines.push(line)
  return lines
}

/** The default as the user would write it: `5s`, `64k`, `0 (no limit)`; '' when there is nothing to say. */
export function defaultText (leaf: TSchema, spec?: FlagSpec): string {
  if (spec?.defaultText !== undefined) return spec.defaultText
  const m = meta(leaf)
  if (m.defaultText !== undefined) return m.defaultText
  if (m.default === undefined) return ''
  if (m.default === 0 && m.zero !== undefined) return `0 = ${m.zero}`
  if (Array.isArray(m.default)) return m.default.join(', ')
  if (typeof m.default === 'object' && m.default !== null) return ''
  if (typeof m.default === 'boolean') return m.default ? 'on' : 'off'
  if (m.unit !== undefined && typeof m.default === 'number') return formatUnit(m.unit, m.default)
  return String(m.default)
}

/** A flag's help sentence: its own, or its option's description. */
export function flagHelpText (def: FlagDef): string {
  return def.spec.help ?? meta(def.leaf).description
}

/** The options part of `--help`: every flag by group, with its default. */
export function optionsHelp (): string {
  const out: string[] = []
  const byGroup = new Map<FlagGroup | 'Output', Array<{ head: string, text: string }>>()
  for (const group of FLAG_GROUPS) byGroup.set(group, [])
  byGroup.set('Output', [])
  for (const def of flagDefs()) {
    const deflt = defaultText(def.leaf, def.spec)
    const text = flagHelpText(def).replace(/`/g, '') + (deflt === '' ? '' : deflt.startsWith('(') ? ` ${deflt}` : ` (default ${deflt})`)
    byGroup.get(def.spec.group)!.push({ head: def.spec.name + argText(def.spec), text })
  }
  for (const flag of CLI_FLAGS) byGroup.get('Output')!.push({ head: (flag.short !== undefined ? flag.short + ', ' : '') + flag.name, text: flag.help })
  for (const [group, rows] of byGroup) {
    if (rows.length === 0) continue
    out.push(`${group}:`)
    for (const { head, text } of rows) {
      const lines = wrap(text, WIDTH - COLUMN)
      const first = `  ${head}`
      if (first.length < COLUMN - 1) {
        out.push(first.padEnd(COLUMN) + lines[0])
      } else {
        out.push(first)
        out.push(' '.repeat(COLUMN) + lines[0])
      }
      for (const line of lines.slice(1)) out.push(' '.repeat(COLUMN) + line)
    }
    out.push('')
  }
  return out.join('\n')
}

// ── rp4 config --from-flags ──

/** Numbers at duration and size leaves written in the user's units, for a file people read. */
function prettify (schema: TSchema | undefined, value: unknown): unknown {
  if (schema === undefined) return value
  const m = meta(schema)
  if (m.unit === 'duration' || m.unit === 'size') return typeof value === 'number' ? formatUnit(m.unit, value) : value
  if (Array.isArray(value)) return value.map(item => prettify(childSchema(schema, 0, item), item))
  if (value !== null && typeof value === 'object') {
    const out: Obj = {}
    for (const [key, item] of Object.entries(value)) out[key] = prettify(childSchema(schema, key, item), item)
    return out
  }
  return value
}

/**
 * The full-form YAML of `options` (either form): what `rp4 run FILE` needs to do what the
 * options do. Loading it gives the same model as the options.
 */
export function toYaml (options: Options, comment?: string): string {
  const full = isFullForm(options) ? options : expandFlat(options).options
  const document = new (yaml().Document)(prettify(OptionsSchema, full))
  if (comment !== undefined) document.commentBefore = ' ' + comment
  return document.toString({ lineWidth: 0 })
}
