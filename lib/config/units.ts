/**
 * Durations and sizes as people write them (`500ms 5s 2m 1h`, `64k 1m 1g`) and as the library takes
 * them (numbers: milliseconds, bytes). Every message speaks the user's units: a limit of
 * 86 400 000 ms is shown as `24h`, never as a number of milliseconds nobody wrote.
 */

export type UnitKind =
  /** Milliseconds; strings `500ms`, `5s`, `2m`, `1h` (decimals allowed: `1.5s`), a bare number is ms. */
  | 'duration'
  /** Bytes; strings `64k`, `1m`, `1g` (powers of 1024; `kb`, `KiB` accepted), a bare number is bytes. */
  | 'size'
  /** A whole number of things (connections, requests, header fields). */
  | 'count'
  /** A number that may have a fraction (requests per second). */
  | 'rate'

const DURATION_UNITS: ReadonlyArray<readonly [string, number]> = [['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]]
const SIZE_UNITS: ReadonlyArray<readonly [string, number]> = [['g', 1024 ** 3], ['m', 1024 ** 2], ['k', 1024]]

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i
const SIZE = /^(\d+(?:\.\d+)?)\s*(?:([kmg])(?:i?b)?|b)?$/i

export const DURATION_HINT = 'a duration: 500ms, 5s, 2m, 1h (a number is milliseconds)'
export const SIZE_HINT = 'a size: 512, 64k, 1m, 1g (a number is bytes)'

/** Milliseconds, or an error message (without the value, which the caller shows). */
export function parseDuration (input: number | string): number | string {
  if (typeof input === 'number') {
    // a negative number is a number all the same: the range check words it ("at least 1ms")
    return Number.isFinite(input) ? Math.round(input) : `not ${DURATION_HINT}`
  }
  const match = DURATION.exec(input.trim())
  if (match === null) return `not ${DURATION_HINT}`
  const unit = (match[2] ?? 'ms').toLowerCase()
  const factor = DURATION_UNITS.find(([name]) => name === unit)![1]
  const value = Number(match[1]) * factor
  if (!Number.isSafeInteger(Math.round(value))) return 'too large'
  return Math.round(value)
}

/** Bytes, or an error message. A fraction of a byte is refused: `1.5k` is fine, `0.3` is not. */
export function parseSize (input: number | string): number | string {
  let value: number
  if (typeof input === 'number') {
    value = input
  } else {
    const match = SIZE.exec(input.trim())
    if (match === null) return `not ${SIZE_HINT}`
    const unit = match[2]?.toLowerCase()
    value = Number(match[1]) * (unit === undefined ? 1 : SIZE_UNITS.find(([name]) => name === unit)![1])
  }
  if (!Number.isFinite(value)) return `not ${SIZE_HINT}`
  if (!Number.isInteger(value)) return 'not a whole number of bytes'
  if (!Number.isSafeInteger(value)) return 'too large'
  return value
}

/** The shortest exact spelling: 3600000 → `1h`, 90000 → `90s`, 1500 → `1500ms`. */
export function formatDuration (ms: number): string {
  if (ms === 0) return '0'
  for (const [unit, factor] of DURATION_UNITS) {
    if (ms % factor === 0) return `${ms / factor}${unit}`
  }
  return `${ms}ms`
}

/** 1073741824 → `1g`, 65536 → `64k`, 500 → `500`. */
export function formatSize (bytes: number): string {
  for (const [unit, factor] of SIZE_UNITS) {
    if (bytes !== 0 && bytes % factor === 0) return `${bytes / factor}${unit}`
  }
  return String(bytes)
}

/** A value of `kind` in the library's units (ms, bytes, plain numbers), or an error message. */
export function parseUnit (kind: UnitKind, input: number | string): number | string {
  switch (kind) {
    case 'duration': return parseDuration(input)
    case 'size': return parseSize(input)
    case 'count': {
      const value = typeof input === 'number' ? input : /^\s*-?\d+\s*$/.test(input) ? Number(input) : NaN
      if (!Number.isSafeInteger(value)) return 'not a whole number'
      return value
    }
    case 'rate': {
      const value = typeof input === 'number' ? input : /^\s*-?\d+(\.\d+)?\s*$/.test(input) ? Number(input) : NaN
      if (!Number.isFinite(value)) return 'not a number'
      return value
    }
  }
}

/** A value in library units as the user would write it. */
export function formatUnit (kind: UnitKind, value: number): string {
  switch (kind) {
    case 'duration': return formatDuration(value)
    case 'size': return formatSize(value)
    default: return String(value)
  }
}

/**
 * The value as the user wrote it, for a message: a string as is, a number of milliseconds or
 * bytes with its meaning (`90000000 (25h)`) unless it reads the same either way.
 */
export function showUnit (kind: UnitKind, input: number | string): string {
  if (typeof input === 'string') return input
  if (kind !== 'duration' && kind !== 'size') return String(input)
  const pretty = formatUnit(kind, input)
  return pretty === String(input) ? pretty : `${input} (${pretty})`
}

export interface Range {
  /** In the user's units, as the help shows them: `1ms`, `24h`, `256`, `1k`. */
  min?: number | string
  max?: number | string
  /** 0 is accepted below `min` and means this (`no limit`, `off`). */
  zero?: string
}

/** Whether `value` (library units) is within `range`; an error message in the user's units otherwise. */
export function checkRange (kind: UnitKind, value: number, range: Range): string | null {
  if (value === 0 && range.zero !== undefined) return null
  const min = range.min === undefined ? undefined : bound(kind, range.min)
  const max = range.max === undefined ? undefined : bound(kind, range.max)
  if (min !== undefined && value < min) {
    const zero = range.zero !== undefined ? ` (or 0: ${range.zero})` : ''
    return `at least ${written(kind, range.min!)}${zero}`
  }
  if (max !== undefined && value > max) return `at most ${written(kind, range.max!)}`
  return value < 0 ? 'must not be negative' : null
}

function bound (kind: UnitKind, limit: number | string): number {
  const value = parseUnit(kind, limit)
  if (typeof value === 'string') throw new Error(`bad bound ${String(limit)} for a ${kind}`)
  return value
}

function written (kind: UnitKind, limit: number | string): string {
  return typeof limit === 'string' ? limit : formatUnit(kind, limit)
}
