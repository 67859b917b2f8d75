/**
 * Conditional requests (RFC 9110 §13): what a request's preconditions say of a representation
 * with a given ETag and Last-Modified. The static files handler and the cache both answer with
 * it, so a client's revalidation gets the same answer from either.
 */
import { isName, type HeaderList } from './headers.js'

export const enum Precondition {
  /** Serve the representation (a Range may still apply). */
  PASS,
  /** 304 Not Modified (GET and HEAD only). */
  NOT_MODIFIED,
  /** 412 Precondition Failed. */
  FAILED,
}

/** What a precondition is checked against. */
export interface Validators {
  /** The entity tag as sent, `"x"` or `W/"x"`; null when there is none. */
  etag: string | null
  /** Last-Modified, ms since the epoch; NaN when there is none. */
  lastModified: number
}

/** A response's validators, from its ETag and Last-Modified fields. */
export function validatorsOf (headers: HeaderList): Validators {
  const modified = headers.get('last-modified')
  return { etag: headers.get('etag') ?? null, lastModified: modified === undefined ? NaN : parseHttpDate(modified) }
}

/**
 * The request has a field that can make its answer other than the representation in full: a
 * precondition (`If-*`: If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since,
 * If-Range) or a Range. One pass over the names, so that a plain request (nearly every one) skips
 * the lookups of each of them.
 */
export function hasConditions (headers: HeaderList): boolean {
  const raw = headers.raw
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    if (name.length < 5) continue
    const first = name.charCodeAt(0) | 0x20
    if (first === 0x69 /* i */ && (name.charCodeAt(1) | 0x20) === 0x66 /* f */ && name.charCodeAt(2) === 0x2d /* - */) return true
    if (first === 0x72 /* r */ && name.length === 5 && isName(name, 'range')) return true
  }
  return false
}

/**
 * The order of RFC 9110 §13.2.2: If-Match, else If-Unmodified-Since; then If-None-Match, else
 * If-Modified-Since (GET and HEAD only). `method` is the request's.
 */
export function evaluatePreconditions (method: string, headers: HeaderList, v: Validators): Precondition {
  const ifMatch = joined(headers, 'if-match')
  if (ifMatch !== undefined) {
    // §13.1.1: strong comparison
    if (!matchesAny(ifMatch, v.etag, true)) return Precondition.FAILED
  } else {
    const since = headers.get('if-unmodified-since')
    const date = since === undefined ? NaN : parseHttpDate(since)
    // §13.1.4: ignored when the date is invalid, or there is no Last-Modified
    if (!Number.isNaN(date) && !Number.isNaN(v.lastModified) && seconds(v.lastModified) > seconds(date)) return Precondition.FAILED
  }
  const safe = method === 'GET' || method === 'HEAD'
  const ifNoneMatch = joined(headers, 'if-none-match')
  if (ifNoneMatch !== undefined) {
    // §13.1.2: weak comparison
    if (matchesAny(ifNoneMatch, v.etag, false)) return safe ? Precondition.NOT_MODIFIED : Precondition.FAILED
    return Precondition.PASS
  }
  if (!safe) return Precondition.PASS
  const since = headers.get('if-modified-since')
  if (since === undefined || Number.isNaN(v.lastModified)) return Precondition.PASS
  const date = parseHttpDate(since)
  // §13.1.3: an invalid date, or one in the future, is ignored
  if (Number.isNaN(date) || date > Date.now()) return Precondition.PASS
  return seconds(v.lastModified) <= seconds(date) ? Precondition.NOT_MODIFIED : Precondition.PASS
}

/**
 * If-Range (§13.1.5): the Range applies only if the validator still names this representation.
 * An entity tag compares strongly; a date must equal Last-Modified exactly (and only a strong
 * validator counts, so a weak ETag never lets a Range through).
 */
export function ifRangeHolds (value: string, v: Validators): boolean {
  const trimmed = value.trim()
  if (trimmed.startsWith('"') || trimmed.startsWith('W/')) {
    return v.etag !== null && !trimmed.startsWith('W/') && !v.etag.startsWith('W/') && trimmed === v.etag
  }
  const date = parseHttpDate(trimmed)
  return !Number.isNaN(date) && !Number.isNaN(v.lastModified) && seconds(date) === seconds(v.lastModified)
}

/** `*`, or one of a comma-separated list of entity tags, matches `etag`. */
export function matchesAny (list: string, etag: string | null, strong: boolean): boolean {
  if (list.trim() === '*') return etag !== null
  if (etag === null) return false
  if (strong && etag.startsWith('W/')) return false
  const opaque = etag.startsWith('W/') ? etag.slice(2) : etag
  for (const tag of splitTags(list)) {
    if (tag.startsWith('W/')) {
      if (!strong && tag.slice(2) === opaque) return true
    } else if (tag === opaque) {
      return true
    }
  }
  return false
}

/** Entity tags of a list: commas may appear inside the quotes. */
function splitTags (list: string): string[] {
  const tags: string[] = []
  let i = 0
  while (i < list.length) {
    while (i < list.length && (list[i] === ',' || list[i] === ' ' || list[i] === '\t')) i++
    if (i >= list.length) break
    let start = i
    if (list.startsWith('W/', i)) i += 2
    if (list[i] !== '"') {
      // not a tag: skip to the next comma
      while (i < list.length && list[i] !== ',') i++
      continue
    }
    const close = list.indexOf('"', i + 1)
    if (close === -1) break
    tags.push(list.slice(start, close + 1))
    i = close + 1
    start = i
  }
  return tags
}

function joined (headers: HeaderList, name: string): string | undefined {
  const all = headers.getAll(name)
  return all.length === 0 ? undefined : all.join(', ')
}

function seconds (ms: number): number {
  return Math.floor(ms / 1000)
}

const HTTP_DATE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/

/**
 * An HTTP-date (§5.6.7), ms since the epoch, or NaN. IMF-fixdate is what senders must use; the
 * obsolete RFC 850 and asctime forms are accepted as recipients must.
 */
export function parseHttpDate (value: string): number {
  const trimmed = value.trim()
  if (HTTP_DATE.test(trimmed)) return Date.parse(trimmed)
  // RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`)
  if (/^[A-Za-z]+, \d{2}-[A-Za-z]{3}-\d{2} \d{2}:\d{2}:\d{2} GMT$/.test(trimmed) || /^[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/.test(trimmed)) {
    const parsed = Date.parse(trimmed.endsWith('GMT') ? trimmed : trimmed + ' GMT')
    return Number.isNaN(parsed) ? NaN : parsed
  }
  return NaN
}

/** IMF-fixdate of `ms`. */
export function httpDate (ms: number): string {
  return new Date(ms).toUTCString()
}
