/**
 * RFC 9111 as arithmetic over header values, for a shared cache: Cache-Control directives,
 * whether a response may be stored (§3), its freshness lifetime (§4.2.1, with heuristics §4.2.2),
 * its current age (§4.2.3), and what the request's own directives allow (§5.2.1). No I/O, no
 * clock of its own: every time is passed in, in ms, so the conformance table can pin it.
 */
import { parseHttpDate } from './conditional.js'
import type { HeaderList } from './headers.js'

export type Directives = ReadonlyMap<string, string | null>

const NONE: Directives = new Map()

/** Directives by lowercased name; a quoted value unquoted; the first occurrence of a name wins (§4.2.1). */
export function parseCacheControl (values: readonly string[]): Directives {
  if (values.length === 0) return NONE
  const out = new Map<string, string | null>()
  for (const value of values) {
    const re = /\s*([^\s=,]+)(?:\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*)))?\s*(?:,|$)/g
    let m: RegExpExecArray | null
    while ((m = re.exec(value)) !== null && m[0] !== '') {
      const name = m[1].toLowerCase()
      if (out.has(name)) continue
      out.set(name, m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3] !== undefined ? m[3] : null)
    }
  }
  return out
}

/** A delta-seconds directive (§1.2.2): its value, or null when absent or not a number. */
export function seconds (d: Directives, name: string): number | null {
  const value = d.get(name)
  if (value === undefined || value === null || !/^\d+$/.test(value)) return null
  // §1.2.2: too large a value is taken as 2^31
  return Math.min(Number(value), 2 ** 31)
}

/** Statuses a cache may give a heuristic freshness to (RFC 9110 §15.1: "heuristically cacheable"). */
export const HEURISTIC_STATUSES: ReadonlySet<number> = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501])

/** What a cache needs of a stored or incoming response. */
export interface ResponseFacts {
  status: number
  headers: HeaderList
  cc: Directives
}

export function responseFacts (status: number, headers: HeaderList): ResponseFacts {
  return { status, headers, cc: parseCacheControl(headers.getAll('cache-control')) }
}

/** Why a response is not stored, or null when it may be (§3, for a shared cache). */
export function notStorable (method: string, request: HeaderList, requestCc: Directives, r: ResponseFacts): string | null {
  if (method !== 'GET') return 'method'
  // 206 would need the ranges combined (§3.3), 304 updates an entry, never makes one
  if (r.status < 200 || r.status === 206 || r.status === 304) return 'status'
  if (requestCc.has('no-store')) return 'request no-store'
  if (r.cc.has('no-store')) return 'no-store'
  // §5.2.2.7: private with field names still forbids storing those fields; a shared cache stores none of it
  if (r.cc.has('private')) return 'private'
  // §3.5: a request with Authorization only where the response says a shared cache may serve it
  if (request.get('authorization') !== undefined && !r.cc.has('public') && !r.cc.has('s-maxage') && !r.cc.has('must-revalidate')) return 'authorization'
  const vary = r.headers.getAll('vary').join(',')
  if (vary.split(',').some(f => f.trim() === '*')) return 'vary *'
  // a cookie set for one client must not reach the next, unless the response says it is public
  if (r.headers.get('set-cookie') !== undefined && !r.cc.has('public') && !r.cc.has('s-maxage')) return 'set-cookie'
  const explicit = r.cc.has('s-maxage') || r.cc.has('max-age') || r.headers.get('expires') !== undefined
  if (explicit || r.cc.has('public') || HEURISTIC_STATUSES.has(r.status)) return null
  return 'status'
}

/** Longest heuristic lifetime, s: a tenth of the time since Last-Modified, at most this (a day, as common caches use). */
export const HEURISTIC_MAX = 86_400

/**
 * §4.2.1: s-maxage, else max-age, else Expires minus Date, else a heuristic (§4.2.2: 10% of the
 * time since Last-Modified, for heuristically cacheable statuses, capped); seconds.
 * `responseTime` stands in for a missing Date.
 */
export function freshnessLifetime (r: ResponseFacts, responseTime: number): number {
  const shared = seconds(r.cc, 's-maxage')
  if (shared !== null) return shared
  const max = seconds(r.cc, 'max-age')
  if (max !== null) return max
  if (r.cc.has('max-age') || r.cc.has('s-maxage')) return 0 // present but invalid: stale (§4.2.1)
  const expires = r.headers.get('expires')
  if (expires !== undefined) {
    const at = parseHttpDate(expires)
    // §5.3: an invalid Expires (such as "0") means already expired
    if (Number.isNaN(at)) return 0
    return Math.max(0, Math.floor((at - dateOf(r, responseTime)) / 1000))
  }
  if (!HEURISTIC_STATUSES.has(r.status) && !r.cc.has('public')) return 0
  const modified = r.headers.get('last-modified')
  if (modified === undefined) return 0
  const at = parseHttpDate(modified)
  if (Number.isNaN(at)) return 0
  return Math.min(HEURISTIC_MAX, Math.max(0, Math.floor((dateOf(r, responseTime) - at) / 10_000)))
}

/** §4.2.3: the response's current age, seconds, from when it was requested and received and now (all ms). */
export function currentAge (r: ResponseFacts, requestTime: number, responseTime: number, now: number): number {
  return ageFrom(correctedInitialAge(r, requestTime, responseTime), responseTime, now)
}

/** §4.2.3's corrected_initial_age, seconds: the part of the age that `now` does not change (a stored entry keeps it). */
export function correctedInitialAge (r: ResponseFacts, requestTime: number, responseTime: number): number {
  const ageHeader = r.headers.get('age')
  const ageValue = ageHeader !== undefined && /^\s*\d+\s*$/.test(ageHeader) ? Number(ageHeader) : 0
  const apparentAge = Math.max(0, (responseTime - dateOf(r, responseTime)) / 1000)
  const responseDelay = Math.max(0, (responseTime - requestTime) / 1000)
  const correctedAgeValue = ageValue + responseDelay
  return Math.max(apparentAge, correctedAgeValue)
}

/** §4.2.3's current_age from the corrected initial age, the response time and now (ms), seconds. */
export function ageFrom (initialAge: number, responseTime: number, now: number): number {
  const residentTime = Math.max(0, (now - responseTime) / 1000)
  return Math.floor(initialAge + residentTime)
}

function dateOf (r: ResponseFacts, fallback: number): number {
  const date = r.headers.get('date')
  const at = date === undefined ? NaN : parseHttpDate(date)
  return Number.isNaN(at) ? fallback : at
}

/** What may be done with a stored response for a request. */
export const enum Use {
  /** Serve it as it is. */
  FRESH,
  /** Revalidate it first (or serve it stale, where stale-while-revalidate allows). */
  STALE,
  /** Must be validated whatever its age (no-cache, request no-cache or max-age=0). */
  VALIDATE,
}

/**
 * §4.2, §5.2.1 and §5.2.2: whether a stored response of `age` and `lifetime` seconds may be
 * served fresh for a request with directives `req`.
 */
export function usability (r: ResponseFacts, req: Directives, age: number, lifetime: number): Use {
  // §5.2.2.4: no-cache without field names: always validated; with names, those fields would be
  // dropped, which rp4 does not do: validated all the same
  if (r.cc.has('no-cache')) return Use.VALIDATE
  // §5.2.1.4 (and the Pragma of §5.4 when there is no Cache-Control)
  if (req.has('no-cache')) return Use.VALIDATE
  const reqMax = seconds(req, 'max-age')
  // max-age=0: nothing stored is young enough (ages are whole seconds; a reload means it)
  if (reqMax !== null && (reqMax === 0 || age > reqMax)) return Use.STALE
  const minFresh = seconds(req, 'min-fresh')
  const fresh = lifetime > age && (minFresh === null || lifetime - age >= minFresh)
  if (fresh) return Use.FRESH
  // §5.2.1.2: max-stale lets a client take a stale response, unless the response forbids it
  if (req.has('max-stale') && !mustRevalidate(r)) {
    const maxStale = seconds(req, 'max-stale')
    if (maxStale === null || age - lifetime <= maxStale) return Use.FRESH
  }
  return Use.STALE
}

/** §5.2.2.2, §5.2.2.8, §4.2.4: a stale copy must never be served without validation. */
export function mustRevalidate (r: ResponseFacts): boolean {
  return r.cc.has('must-revalidate') || r.cc.has('proxy-revalidate') || r.cc.has('s-maxage')
}

/**
 * RFC 5861: how long past its freshness a response may still be served while it is revalidated
 * in the background (`stale-while-revalidate`), or when the backend fails (`stale-if-error`),
 * seconds; the route's default when the response does not say; 0 where it must revalidate.
 */
export function staleAllowance (r: ResponseFacts, directive: 'stale-while-revalidate' | 'stale-if-error', routeDefault: number): number {
  if (mustRevalidate(r) || r.cc.has('no-cache')) return 0
  return seconds(r.cc, directive) ?? routeDefault
}

/** The request's Cache-Control, with `Pragma: no-cache` standing for `no-cache` when there is none (§5.4). */
export function requestDirectives (headers: HeaderList): Directives {
  const cc = headers.getAll('cache-control')
  if (cc.length > 0) return parseCacheControl(cc)
  const pragma = headers.get('pragma')
  return pragma !== undefined && /(^|,)\s*no-cache\s*(,|$)/i.test(pragma) ? new Map([['no-cache', null]]) : NONE
}
