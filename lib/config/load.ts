/**
 * A YAML configuration file → options → model, with every problem reported at once as
 * `file:line:col: key.path: message`, pointing at what is wrong: the unknown key, the bad value,
 * the reference to a name that does not exist, the YAML that does not parse.
 *
 * The file is bounded before it is parsed (size), and while it is turned into values (alias
 * expansion: a "billion laughs" file is refused, not expanded); duplicate keys are errors, as are
 * tags YAML 1.2 does not know. YAML 1.2 means `yes`, `on` and `no` are strings, never booleans.
 */
import { closeSync, openSync, readSync } from 'node:fs'
import path from 'node:path'
import type { TSchema } from '@sinclair/typebox'
import type { CST, Document, LineCounter, Node, YAMLError } from 'yaml'
import { yaml } from './yaml.js'
import type { Model } from '../model/model.js'
import { OptionsSchema, branchFor, childSchema, kindOf, meta, type Options } from './schema.js'
import { ConfigError, describe, type Path, type Problem } from './problems.js'
import { validate, type ValidateContext } from './validate.js'
import { buildModel } from './build.js'

/** Bytes; a configuration longer than this is a mistake (a log file, a binary) or an attack. */
export const MAX_FILE_SIZE = 1024 * 1024
/** Alias expansions while a file becomes values: plenty for reuse, far too few for an exponential blow-up. */
export const MAX_ALIAS_COUNT = 1000
/** Collections inside collections: a configuration needs about six. */
export const MAX_DEPTH = 64

export interface Position {
  line: number
  col: number
}

/** A file's text, parsed, with a way to find where a key path was written. */
export class ConfigSource {
  readonly name: string
  readonly value: unknown
  /** Problems of the YAML itself (syntax, duplicate keys, size, aliases), already worded. */
  readonly syntax: readonly string[]
  readonly #document: Document | null
  readonly #lines: LineCounter

  constructor (text: string, name: string) {
    this.name = name
    const { Composer, LineCounter, Parser } = yaml()
    this.#lines = new LineCounter()
    const syntax: string[] = []
    let value: unknown = null
    let document: Document | null = null
    if (Buffer.byteLength(text) > MAX_FILE_SIZE) {
      syntax.push(tooLarge(name, Buffer.byteLength(text)))
    } else {
      // the token stream is built without recursion; building values from it recurses once per
      // level, so the depth is bounded first (a stack overflow there is not always catchable)
      const tokens = [...new Parser(this.#lines.addNewLine).parse(text)]
      const deepest = deepestToken(tokens)
      if (deepest !== null) {
        syntax.push(`${this.#at(deepest)}: nested more than ${MAX_DEPTH} levels deep`)
      } else {
        const composer = new Composer({ prettyErrors: false, uniqueKeys: true, strict: true, version: '1.2' })
        for (const doc of composer.compose(tokens, true, text.length)) {
          if (document === null) {
            document = doc
          } else {
            syntax.push(`${this.#at(doc.range[0])}: a second YAML document (---): a configuration is one document`)
            break
          }
        }
        const errors = [...document!.errors, ...document!.warnings]
        syntax.unshift(...errors.map(error => this.#syntaxLine(error, text)))
        if (syntax.length === 0) {
          try {
            value = document!.toJS({ maxAliasCount: MAX_ALIAS_COUNT })
          } catch (err) {
            if (!(err instanceof ReferenceError)) throw err
            syntax.push(`${this.#at(firstAlias(document!))}: aliases expand to too much (more than ${MAX_ALIAS_COUNT} copies): refused`)
          }
        }
      }
    }
    this.value = value
    this.syntax = syntax
    this.#document = document
  }

  #syntaxLine (error: YAMLError, text: string): string {
    const where = this.#at(error.pos[0])
    switch (error.code) {
      case 'TAB_AS_INDENT': return `${where}: a tab in the indentation: YAML indents with spaces`
      case 'DUPLICATE_KEY': {
        const key = /^[^:\n]*/.exec(text.slice(error.pos[0], error.pos[0] + 200))?.[0].trim()
        return `${where}: duplicate key${key !== undefined && key !== '' ? ` ${key}` : ''}: each key may appear once in a mapping`
      }
      case 'TAG_RESOLVE_FAILED': return `${where}: ${error.message.split('\n')[0]}: rp4 reads plain YAML values (no tags)`
      default:
        return `${where}: ${error.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}`
    }
  }

  /** `file:line:col` of an offset in the text. */
  #at (offset: number): string {
    const { line, col } = this.#lines.linePos(offset)
    return `${this.name}:${line}:${col}`
  }

  /** Where `path` was written: its key (`at: 'key'`) or its value, else the nearest enclosing node found. */
  position (path: Path, at: 'key' | 'value' = 'value'): Position {
    const { isAlias, isMap, isPair, isScalar, isSeq } = yaml()
    const root = this.#document?.contents ?? null
    let node: unknown = root
    let offset = rangeStart(root) ?? 0
    let viaAlias: number | undefined
    for (let i = 0; i < path.length; i++) {
      if (isAlias(node)) {
        viaAlias ??= rangeStart(node)
        node = node.resolve(this.#document!)
      }
      const part = path[i]
      if (isMap(node)) {
        const pair = node.items.find(p => isPair(p) && isScalar(p.key) && String(p.key.value) === String(part))
        if (pair === undefined) break
        const last = i === path.length - 1
        const keyStart = rangeStart(pair.key)
        const valueStart = rangeStart(pair.value)
        offset = (last && at === 'key') || valueStart === undefined ? keyStart ?? offset : valueStart
        node = pair.value
      } else if (isSeq(node) && typeof part === 'number' && part < node.items.length) {
        node = node.items[part]
        offset = rangeStart(node) ?? offset
      } else {
        break
      }
    }
    return this.#lines.linePos(viaAlias ?? offset)
  }

  render (problem: Problem): string {
    const { line, col } = this.position(problem.path, problem.at)
    return `${this.name}:${line}:${col}: ${describe(problem)}`
  }
}

function tooLarge (name: string, size: number, more = false): string {
  return `${name}: ${more ? 'over ' : ''}${size} bytes: a configuration file is at most 1m (${MAX_FILE_SIZE} bytes)`
}

function rangeStart (node: unknown): number | undefined {
  return node !== null && typeof node === 'object' && 'range' in node && Array.isArray(node.range) ? node.range[0] as number : undefined
}

/** The offset of a collection nested more than MAX_DEPTH deep, or null; walked with a stack of its own. */
function deepestToken (tokens: CST.Token[]): number | null {
  const stack: Array<[unknown, number]> = tokens.map(token => [token, 0])
  while (stack.length > 0) {
    const [token, depth] = stack.pop()!
    if (token === null || typeof token !== 'object') continue
    const { type, offset, items, value } = token as { type?: string, offset?: number, items?: Array<{ key?: unknown, value?: unknown }>, value?: unknown }
    const collection = type === 'block-map' || type === 'block-seq' || type === 'flow-collection'
    const level = collection ? depth + 1 : depth
    if (level > MAX_DEPTH) return offset ?? 0
    if (value !== undefined) stack.push([value, level])
    for (const item of items ?? []) {
      if (item.key !== undefined) stack.push([item.key, level])
      if (item.value !== undefined) stack.push([item.value, level])
    }
  }
  return null
}

function firstAlias (document: Document): number {
  const { visit } = yaml()
  let offset = 0
  visit(document, {
    Alias (_key, node) {
      offset = rangeStart(node as Node) ?? 0
      return visit.BREAK
    },
  })
  return offset
}

/** The problems of `source`, each as `file:line:col: ...`, in the order they appear in the file. */
export function sourceProblems (source: ConfigSource, context: ValidateContext = {}): string[] {
  if (source.syntax.length > 0) return [...source.syntax]
  return inFileOrder(source, validate(source.value, context))
}

function inFileOrder (source: ConfigSource, problems: readonly Problem[]): string[] {
  return problems
    .map(problem => ({ problem, position: source.position(problem.path, problem.at) }))
    .sort((a, b) => a.position.line - b.position.line || a.position.col - b.position.col)
    .map(({ problem }) => source.render(problem))
}

/** Reads `file` (bounded), or throws a `ConfigError` whose message names it. */
export function readSource (file: string): ConfigSource {
  let bytes: Buffer
  try {
    bytes = readBounded(file, MAX_FILE_SIZE + 1)
  } catch (err) {
    throw fileError([`${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`])
  }
  if (bytes.length > MAX_FILE_SIZE) throw fileError([tooLarge(file, MAX_FILE_SIZE, true)])
  return new ConfigSource(bytes.toString('utf8'), file)
}

/** At most `limit` bytes of `file`: a path to a device, a pipe or a huge log is never read whole. */
function readBounded (file: string, limit: number): Buffer {
  const fd = openSync(file, 'r')
  try {
    const buffer = Buffer.alloc(limit)
    let length = 0
    while (length < limit) {
      const n = readSync(fd, buffer, length, limit - length, null)
      if (n === 0) break
      length += n
    }
    return buffer.subarray(0, length)
  } finally {
    closeSync(fd)
  }
}

/** The options of a YAML text, validated; a `ConfigError` with every problem otherwise. */
export function parseOptions (text: string, name: string, context: ValidateContext = {}): Options {
  const source = new ConfigSource(text, name)
  const lines = sourceProblems(source, context)
  if (lines.length > 0) throw fileError(lines)
  return source.value as Options
}

/**
 * A YAML file's options and model: every problem (files that cannot be read included) in one
 * `ConfigError`. File names in it are relative to its directory; the options returned have them
 * absolute.
 */
export function loadConfig (file: string, context: ValidateContext = {}): { options: Options, model: Model } {
  return loadSource(readSource(file), context, path.dirname(path.resolve(file)))
}

export function loadSource (source: ConfigSource, context: ValidateContext = {}, base?: string): { options: Options, model: Model } {
  const lines = sourceProblems(source, context)
  if (lines.length > 0) throw fileError(lines)
  const options = base === undefined ? source.value as Options : absoluteFiles(source.value as Options, base)
  try {
    return { options, model: buildModel(options, context) }
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    throw fileError(inFileOrder(source, err.problems))
  }
}

/** `options` (valid) with every relative file name made absolute against `base`: a copy. */
export function absoluteFiles<T> (options: T, base: string): T {
  const walk = (schema: TSchema | undefined, value: unknown): unknown => {
    if (schema === undefined) return value
    if (meta(schema).check === 'file') return typeof value === 'string' ? path.resolve(base, value) : value
    // a union of a file name and a mapping (static: DIR or { root, ... })
    if (kindOf(schema) === 'Union' && typeof value === 'string') return walk(branchFor(schema, value), value)
    if (Array.isArray(value)) return value.map(item => walk(childSchema(schema, 0, item), item))
    if (value !== null && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, walk(childSchema(schema, key, item), item)]))
    }
    return value
  }
  return walk(OptionsSchema, options) as T
}

/** An error of lines already worded with their positions. */
function fileError (lines: string[]): ConfigError {
  return new ConfigError(lines.map(line => ({ path: [], message: line })), p => p.message)
}
