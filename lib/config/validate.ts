/**
 * Options (either form, as a file or the library gives them) → every problem, each naming the key
 * path as written. Three passes, all driven by schema.ts: the compiled TypeBox validator for
 * shapes (types, unknown keys, required keys); the leaves' own checks (units and ranges in the
 * user's units, addresses, names, header names, paths); then the checks across keys
 * (consistency.ts: which form, names and references, one action per route). Each pass skips what
 * an earlier one found wrong, so that one mistake is reported once.
 */
import type { TSchema } from '@sinclair/typebox'
import type { TypeCheck } from '@sinclair/typebox/compiler'
import type { ValueError } from '@sinclair/typebox/errors'
import { TypeCompiler, Value, ValueErrorType } from './typebox.js'
import { checkHealthShorthand, parseBalance, parseStatusRanges, parseTargetSpec } from './balance.js'
import { parseHostPort } from './address.js'
import { parseTarget } from './address.js'
import { parseCidr } from '../admission/access.js'
import { matchingPath } from '../http/path.js'
import { OptionsSchema, RENAMED_KEYS, branchFor, kindOf, meta, schemaAt, type StringCheck } from './schema.js'
import { checkRange, parseUnit, showUnit } from './units.js'
import { BadPaths, show, suggest, type Path, type Problem, type ValidateContext } from './problems.js'

export type { ValidateContext } from './problems.js'
import { checkConsistency } from './consistency.js'


let compiled: TypeCheck<typeof OptionsSchema> | null = null

/** Every problem of `options`; an empty list means `buildModel` will accept them (files aside). */
export function validate (options: unknown, context: ValidateContext = {}): Problem[] {
  if (options === null || options === undefined) {
    return [{ path: [], message: 'nothing to run: give listen and targets (one proxy), or listeners, routes and upstreams' }]
  }
  if (typeof options !== 'object' || Array.isArray(options)) {
    return [{ path: [], message: `the options must be a mapping (key: value), got ${show(options)}` }]
  }
  const problems: Problem[] = []
  const bad = new BadPaths()
  shapes(options, problems, bad)
  walk(OptionsSchema, options, [], problems, bad)
  checkConsistency(options as Record<string, unknown>, context, bad, problems)
  return problems
}


/** A JSON pointer (`/routes/2/match`) as a path into `root`: indices where the value is a list. */
function toPath (pointer: string, root: unknown): Array<string | number> {
  const path: Array<string | number> = []
  let node = root
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~')
    const part = Array.isArray(node) ? Number(key) : key
    path.push(part)
    node = node !== null && typeof node === 'object' ? (node as Record<string | number, unknown>)[part] : undefined
  }
  return path
}

const KIND_EXPECTED: Readonly<Record<string, string>> = {
  Number: 'must be a number',
  Integer: 'must be a whole number',
  String: 'must be a string',
  Boolean: 'must be true or false',
  Array: 'must be a list',
  Object: 'must be a mapping (key: value)',
  Record: 'must be a mapping (key: value)',
  Null: 'must be empty',
}

function expected (schema: TSchema): string {
  const own = meta(schema).expected
  if (own !== undefined) return own
  if (kindOf(schema) === 'Literal') return `must be ${JSON.stringify(schema.const)}`
  return KIND_EXPECTED[kindOf(schema)] ?? 'is not valid here'
}

function shapes (options: object, problems: Problem[], bad: BadPaths): void {
  compiled ??= TypeCompiler.Compile(OptionsSchema)
  let seen = 0
  for (const error of compiled.Errors(options)) {
    // a file of a million wrong items must not keep rp4 busy: what is listed is capped anyway
    if (++seen > 10_000) break
    const path = toPath(error.path, options)
    if (error.type === ValueErrorType.ObjectRequiredProperty) {
      const parent = path.slice(0, -1)
      if (bad.has(parent)) continue
      // nothing more to say about what is not there
      bad.add(path)
      problems.push({ path: parent, missing: String(path[path.length - 1]), message: '' })
      continue
    }
    if (bad.has(path)) continue
    // a value or its settings (`compress: true` or `{ ... }`): a wrong mapping is named key by key
    const branch = error.type === ValueErrorType.Union && isMapping(error.value) ? branchFor(error.schema, error.value) : undefined
    if (branch !== undefined && kindOf(branch) === 'Object' && Value.Errors(branch, error.value).First() !== undefined) {
      for (const inner of Value.Errors(branch, error.value)) {
        const at = [...path, ...toPath(inner.path, error.value)]
        if (bad.has(at)) continue
        bad.add(at)
        problems.push(inner.type === ValueErrorType.ObjectRequiredProperty
          ? { path: at.slice(0, -1), missing: String(at[at.length - 1]), message: '' }
          : shapeProblem(inner, at))
      }
      continue
    }
    bad.add(path)
    problems.push(shapeProblem(error, path))
  }
}

function isMapping (value: unknown): boolean {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function shapeProblem (error: ValueError, path: Array<string | number>): Problem {
  switch (error.type) {
    case ValueErrorType.ObjectAdditionalProperties: {
      const key = String(path[path.length - 1])
      let parent = schemaAt(path.slice(0, -1))
      // a value or its settings: the settings' keys are the known ones
      if (parent !== undefined && kindOf(parent) === 'Union') parent = branchFor(parent, {})
      const known = parent !== undefined && kindOf(parent) === 'Object' ? Object.keys(parent.properties as object) : []
      const close = suggest(key, known)
      let message = 'unknown key'
      if (path.length === 1 && Object.hasOwn(RENAMED_KEYS, key)) message = RENAMED_KEYS[key]
      else if (key === '<<') message += ' (YAML merge keys are not supported: repeat the keys, or use an alias for the whole value)'
      else if (close !== null) message += ` (did you mean ${close}?)`
      else if (known.length > 0 && known.length <= 12) message += ` (known here: ${known.join(', ')})`
      return { path, message, at: 'key' }
    }
    case ValueErrorType.ArrayMinItems:
      return { path, message: 'must not be empty' }
    case ValueErrorType.StringMaxLength:
      return { path, message: `must be at most ${String(error.schema.maxLength)} characters long` }
    default: {
      const yaml11 = error.type === ValueErrorType.Boolean && typeof error.value === 'string' && /^(y|yes|n|no|on|off|true|false)$/i.test(error.value)
      return { path, message: `${expected(error.schema)}, got ${show(error.value)}${yaml11 ? ' (a string in YAML 1.2: write true or false, unquoted)' : ''}` }
    }
  }
}

/** The leaves' own checks, where the shape was right. */
function walk (schema: TSchema, value: unknown, path: Path, problems: Problem[], bad: BadPaths): void {
  if (value === undefined || bad.has(path)) return
  const m = meta(schema)
  if (m.unit !== undefined) {
    if (typeof value !== 'number' && typeof value !== 'string') return
    const parsed = parseUnit(m.unit, value)
    const message = typeof parsed === 'string' ? parsed : checkRange(m.unit, parsed, m)
    if (message !== null) {
      bad.add(path)
      problems.push({ path, value: showUnit(m.unit, value), message })
    }
    return
  }
  if (m.check !== undefined) {
    const message = checkString(m.check, value)
    if (message !== null) {
      bad.add(path)
      problems.push({ path, message })
    }
    return
  }
  switch (kindOf(schema)) {
    case 'Object':
      for (const [key, child] of Object.entries(schema.properties as Record<string, TSchema>)) {
        walk(child, (value as Record<string, unknown>)[key], [...path, key], problems, bad)
      }
      return
    case 'Record': {
      const child = Object.values(schema.patternProperties as Record<string, TSchema>)[0]
      for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
        const keyProblem = m.keyCheck === undefined ? null : checkString(m.keyCheck, key)
        if (keyProblem !== null) {
          bad.add([...path, key])
          problems.push({ path: [...path, key], message: keyProblem, at: 'key' })
        } else {
          walk(child, item, [...path, key], problems, bad)
        }
      }
      return
    }
    case 'Array':
      (value as unknown[]).forEach((item, i) => walk(schema.items as TSchema, item, [...path, i], problems, bad))
      return
    case 'Union': {
      const branch = branchFor(schema, value)
      if (branch !== undefined) walk(branch, value, path, problems, bad)
    }
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/
const DNS_NAME = /^[a-z0-9_]([a-z0-9_-]{0,62})?(\.[a-z0-9_]([a-z0-9_-]{0,62})?)*$/
const LOCATION_VARIABLES = ['scheme', 'host', 'hostname', 'path', 'query']

/** A server or host name as it is compared: lowercased, without a trailing dot. */
export function canonicalHost (name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '')
}

/** Why `value` does not pass `check`, or null when it does. */
export function checkString (check: StringCheck, value: unknown): string | null {
  if (typeof value === 'number' && (check === 'listen' || check === 'headerValue')) value = String(value)
  if (typeof value !== 'string') return null
  switch (check) {
    case 'listen': return orNull(parseHostPort(value, { hostRequired: false, portZero: true }))
    case 'target': return orNull(parseTarget(value))
    case 'targetSpec': return orNull(parseTargetSpec(value))
    case 'balance': return orNull(parseBalance(value, 1))
    case 'statusRanges': return orNull(parseStatusRanges(value))
    case 'healthCheck': return checkHealthShorthand(value)
    case 'hostPort':
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value.trim())) return `"${value}": a raw TCP backend is HOST:PORT, without a scheme`
      return orNull(parseHostPort(value, { hostRequired: true, portZero: false }))
    case 'cidr': return orNull(parseCidr(value))
    case 'headerName': return TOKEN.test(value) ? null : `"${value}" is not a header name`
    case 'headerValue': return /[\r\n\0]/.test(value) ? 'a header value cannot hold CR, LF or NUL' : null
    case 'token': return TOKEN.test(value) ? null : `"${value}" is not an HTTP token (letters, digits and !#$%&'*+-.^_\`|~)`
    case 'method': return TOKEN.test(value) ? null : `"${value}" is not a method name`
    case 'serverName': {
      const name = canonicalHost(value)
      return name === '*' || DNS_NAME.test(name.replace(/^\*\./, '')) ? null : `"${value}" is not a server name (a.example.com, *.example.com, or * for every other)`
    }
    case 'host': {
      const name = canonicalHost(value)
      if (/:\d+$/.test(name)) return `"${value}": a host name without a port`
      return DNS_NAME.test(name.replace(/^\*\./, '')) ? null : `"${value}" is not a host name (api.example.com, or *.example.com)`
    }
    case 'dnsName': return DNS_NAME.test(canonicalHost(value)) ? null : `"${value}" is not a DNS name`
    case 'path': {
      if (!value.startsWith('/')) return `"${value}" must start with /`
      if (/[\s?#\0;]/.test(value)) return `"${value}": a path without spaces, query (?), fragment (#) or parameters (;)`
      const normal = matchingPath(value)
      return normal === value ? null : `"${value}" would never match a normalized request path: write "${normal}"`
    }
    case 'regex':
      try {
        RegExp(value)
        return null
      } catch (err) {
        return `not a regular expression: ${(err as Error).message}`
      }
    case 'location': {
      if (/[\s\0]/.test(value)) return 'a redirect target cannot hold spaces or control characters'
      for (const [, name] of value.matchAll(/\$([A-Za-z_]\w*)?/g)) {
        if (name === undefined || !LOCATION_VARIABLES.includes(name)) {
          return `unknown variable $${name ?? ''} (known: ${LOCATION_VARIABLES.map(v => '$' + v).join(', ')})`
        }
      }
      if (!value.startsWith('/') && !/^([a-z][a-z0-9+.-]*|\$scheme):\/\/./i.test(value)) return `"${value}" must be a URL (https://...) or a path (/...)`
      return null
    }
    case 'name': return NAME.test(value) ? null : `"${value}" is not a name (up to 64 letters, digits, _ . -, starting with a letter or digit)`
    case 'file': return value === '' ? 'an empty file name' : value.includes('\0') ? 'a file name cannot hold NUL' : null
  }
}

function orNull (result: object | string): string | null {
  return typeof result === 'string' ? result : null
}
