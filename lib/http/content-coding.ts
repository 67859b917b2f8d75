/**
 * Content codings (RFC 9110 §8.4, §12.5.3): which coding a client accepts, by its Accept-Encoding
 * with q-values, and the small header facts a body transform must respect (Cache-Control
 * no-transform, a weak ETag, Vary).
 */

/** A coding rp4 can produce. */
export type Coding = 'br' | 'gzip'

/**
 * The coding to send among `offered` (in the server's order of preference), by the client's
 * Accept-Encoding: the highest q-value wins, the server's order breaks ties. `*` stands for any
 * coding not named; `q=0` refuses one. No header, or nothing acceptable: null (identity).
 */
export function negotiateCoding (acceptEncoding: string | undefined, offered: readonly Coding[]): Coding | null {
  if (acceptEncoding === undefined || offered.length === 0) return null
  let star = -1
  const named = new Map<string, number>()
  for (const part of acceptEncoding.split(',')) {
    const semi = part.indexOf(';')
    const name = (semi === -1 ? part : part.slice(0, semi)).trim().toLowerCase()
    if (name === '') continue
    const q = semi === -1 ? 1 : qValue(part.slice(semi + 1))
    const key = name === 'x-gzip' ? 'gzip' : name
    // the same coding twice: the lower weight is the safer reading
    const seen = key === '*' ? star : named.get(key)
    const weight = seen === undefined || seen < 0 ? q : Math.min(seen, q)
    if (key === '*') star = weight
    else named.set(key, weight)
  }
  let best: Coding | null = null
  let bestQ = 0
  for (const coding of offered) {
    const q = named.get(coding) ?? (star >= 0 ? star : 0)
    if (q > bestQ) {
      best = coding
      bestQ = q
    }
  }
  return best
}

/** `q=0.5` among a coding's parameters; 1 without one; 0 for a malformed weight (never chosen). */
function qValue (params: string): number {
  for (const param of params.split(';')) {
    const eq = param.indexOf('=')
    if (eq === -1) continue
    if (param.slice(0, eq).trim().toLowerCase() !== 'q') continue
    const value = param.slice(eq + 1).trim()
    // RFC 9110 §12.4.2: 0 to 1, at most three decimals
    if (!/^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/.test(value)) return 0
    return Number(value)
  }
  return 1
}

/** A comma-separated header (Cache-Control, Vary) names `token`, any case, with or without a value. */
export function hasDirective (value: string | undefined, token: string): boolean {
  if (value === undefined) return false
  const lower = value.toLowerCase()
  let from = 0
  for (;;) {
    const at = lower.indexOf(token, from)
    if (at === -1) return false
    const before = at === 0 ? ',' : lower[at - 1]
    const after = lower[at + token.length]
    if ((before === ',' || before === ' ' || before === '\t') && (after === undefined || after === ',' || after === '=' || after === ' ' || after === '\t' || after === ';')) return true
    from = at + token.length
  }
}

/** An ETag made weak: a transformed body is no longer byte-for-byte the one its strong tag named (RFC 9110 §8.8.3). */
export function weakETag (etag: string): string {
  return etag.startsWith('W/') ? etag : 'W/' + etag
}

/** Vary with `field` added when it is not there (or `*`). */
export function varyWith (vary: string | undefined, field: string): string {
  if (vary === undefined || vary.trim() === '') return field
  if (vary.trim() === '*' || hasDirective(vary, field.toLowerCase())) return vary
  return vary + ', ' + field
}

/** Media type patterns: `text/*`, `application/json`, `application/*+json` (a structured suffix). */
export class MediaTypes {
  readonly #exact = new Set<string>()
  readonly #prefixes: string[] = []
  readonly #suffixes: string[] = []

  constructor (patterns: readonly string[]) {
    for (const raw of patterns) {
      const pattern = raw.trim().toLowerCase()
      const star = pattern.indexOf('*')
      if (star === -1) this.#exact.add(pattern)
      else if (pattern.endsWith('/*')) this.#prefixes.push(pattern.slice(0, -1))
      else this.#suffixes.push(pattern.slice(star + 1))
    }
  }

  /** `contentType` (parameters ignored) is one of these. */
  has (contentType: string | undefined): boolean {
    if (contentType === undefined) return false
    const semi = contentType.indexOf(';')
    const type = (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
    if (this.#exact.has(type)) return true
    for (const prefix of this.#prefixes) if (type.startsWith(prefix)) return true
    for (const suffix of this.#suffixes) if (type.endsWith(suffix)) return true
    return false
  }
}
