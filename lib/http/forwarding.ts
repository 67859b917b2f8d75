/**
 * What a proxy owes both hops: an absolute-form target becomes origin-form; the request loses the hop-by-hop headers (RFC 9110 7.6.1: those
 * named by Connection too), the X-Forwarded-Proto and -Host the client sent (rp4 states them
 * itself), `HTTP2-Settings` and any h2c in Upgrade, and header names with `_` unless allowed; it
 * gains X-Forwarded-For (appended to the last one the client sent), X-Forwarded-Proto,
 * X-Forwarded-Host and Via. The response loses its hop-by-hop headers and gains Via.
 *
 * The header list is compacted in place: no array is allocated per request.
 */
import { Header, classify, connectionOptions, isHopByHop, withoutH2c } from './fields.js'
import { isName, type HeaderList } from './headers.js'
import type { RequestHead, ResponseHead } from './message.js'

export interface ForwardContext {
  /** The client's address as X-Forwarded-For shows it. */
  clientIp: string
  /** `http` or `https`: how the client reached rp4. */
  proto: string
  /** `1.1 rp4`: this hop in Via. */
  via: string
  /** Header names with `_` are passed; otherwise they are dropped. */
  underscores: boolean
}

/** A Host value no client can send (llhttp refuses NUL): the encoder puts the target's authority there. */
export const HOST_PLACEHOLDER = '\0'

/** Connection values, gathered in a first pass only when there are any (most requests have at most one). */
function namedByConnection (raw: string[]): Set<string> | null {
  let values: string[] | null = null
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 10 && classify(raw[i]) === Header.CONNECTION) (values ??= []).push(raw[i + 1])
  }
  return values === null ? null : connectionOptions(values)
}

export function forwardRequest (head: RequestHead, ctx: ForwardContext, needsHost: boolean): void {
  // RFC 9112 3.2.1: to an origin server, only the path and query. An absolute-form target's
  // scheme (`https://` over cleartext) and authority are rp4's to act on, not the backend's.
  const target = head.target
  if (target.charCodeAt(0) !== 47 /* / */ && target !== '*') head.target = (head.path === '' ? '/' : head.path) + head.query
  const raw = head.headers.raw
  const named = namedByConnection(raw)
  const upgrade = head.upgrade
  const underscores = ctx.underscores
  let host: string | null = null
  let lastXff = -1
  let lastVia = -1
  let w = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    let value = raw[i + 1]
    const kind = classify(name)
    if (kind !== Header.OTHER) {
      if (isHopByHop(kind) || kind === Header.X_FORWARDED_PROTO || kind === Header.X_FORWARDED_HOST || kind === Header.HTTP2_SETTINGS) continue
      if (kind === Header.UPGRADE) {
        // the parser has already decided that an Upgrade naming h2c alone is no upgrade
        if (!upgrade) continue
        value = withoutH2c(value)
        if (value === '') continue
      } else if (kind === Header.HOST) {
        host = value
      } else if (kind === Header.X_FORWARDED_FOR) {
        lastXff = w
      } else if (kind === Header.VIA) {
        lastVia = w
      }
    } else if (named !== null && named.has(name.toLowerCase())) {
      continue
    } else if (!underscores && name.includes('_')) {
      // CGI, WSGI and many frameworks read `Transfer_Encoding` as Transfer-Encoding: a second
      // framing header rp4 never saw. Dropped silently, as nginx does (underscores_in_headers off)
      continue
    }
    raw[w] = name
    raw[w + 1] = value
    w += 2
  }
  if (w !== raw.length) raw.length = w
  // an HTTP/1.0 request without Host: the target's authority, filled in when the target is known
  if (needsHost) raw.push('Host', HOST_PLACEHOLDER)
  if (lastXff === -1) raw.push('X-Forwarded-For', ctx.clientIp)
  else raw[lastXff + 1] += ', ' + ctx.clientIp
  raw.push('X-Forwarded-Proto', ctx.proto)
  if (host !== null) raw.push('X-Forwarded-Host', host)
  if (lastVia === -1) raw.push('Via', ctx.via)
  else raw[lastVia + 1] += ', ' + ctx.via
}

/** Hop-by-hop headers out, this hop into Via. Transfer-Encoding is the encoder's (it re-frames). */
export function forwardResponse (head: ResponseHead, via: string): void {
  const raw = head.headers.raw
  const named = namedByConnection(raw)
  const upgraded = head.status === 101
  let lastVia = -1
  let w = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    const kind = classify(name)
    if (kind !== Header.OTHER) {
      if (isHopByHop(kind)) continue
      if (kind === Header.UPGRADE && !upgraded) continue
      if (kind === Header.VIA) lastVia = w
    } else if (named !== null && named.has(name.toLowerCase())) {
      continue
    }
    raw[w] = name
    raw[w + 1] = raw[i + 1]
    w += 2
  }
  if (w !== raw.length) raw.length = w
  if (lastVia === -1) raw.push('Via', via)
  else raw[lastVia + 1] += ', ' + via
}

/**
 * Response headers that would tell what runs behind rp4, out. `byLength[n]` lists the lowercase
 * names of length n (or is undefined): most names pass on one length check, none is lowercased.
 */
export function hideHeaders (headers: HeaderList, byLength: ReadonlyArray<readonly string[] | undefined>): void {
  const raw = headers.raw
  let w = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    const candidates = byLength[name.length]
    if (candidates !== undefined && matchesAny(name, candidates)) continue
    raw[w] = name
    raw[w + 1] = raw[i + 1]
    w += 2
  }
  if (w !== raw.length) raw.length = w
}

function matchesAny (name: string, lowered: readonly string[]): boolean {
  for (let i = 0; i < lowered.length; i++) if (isName(name, lowered[i])) return true
  return false
}
