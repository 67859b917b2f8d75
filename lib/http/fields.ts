/**
 * Header fields by meaning, for any HTTP version: the ones the engine acts on, which of them are
 * hop-by-hop, and the token lists inside Connection and Upgrade values.
 */
import { isName, type HeaderList } from './headers.js'

/** The headers the engine acts on; everything else is `OTHER` and passes through untouched. */
export const enum Header {
  OTHER,
  HOST,
  CONNECTION,
  KEEP_ALIVE,
  PROXY_CONNECTION,
  TE,
  TRAILER,
  UPGRADE,
  CONTENT_LENGTH,
  TRANSFER_ENCODING,
  X_FORWARDED_FOR,
  X_FORWARDED_PROTO,
  X_FORWARDED_HOST,
  VIA,
  EXPECT,
  HTTP2_SETTINGS,
}

/**
 * Classify a header name without lowercasing it: only names whose length matches a header of
 * interest are compared, character by character (most headers of a request are other lengths).
 */
export function classify (name: string): Header {
  switch (name.length) {
    case 2: return isName(name, 'te') ? Header.TE : Header.OTHER
    case 3: return isName(name, 'via') ? Header.VIA : Header.OTHER
    case 4: return isName(name, 'host') ? Header.HOST : Header.OTHER
    case 6: return isName(name, 'expect') ? Header.EXPECT : Header.OTHER
    case 7: return isName(name, 'upgrade') ? Header.UPGRADE : isName(name, 'trailer') ? Header.TRAILER : Header.OTHER
    case 10: return isName(name, 'connection') ? Header.CONNECTION : isName(name, 'keep-alive') ? Header.KEEP_ALIVE : Header.OTHER
    case 14: return isName(name, 'content-length') ? Header.CONTENT_LENGTH : isName(name, 'http2-settings') ? Header.HTTP2_SETTINGS : Header.OTHER
    case 15: return isName(name, 'x-forwarded-for') ? Header.X_FORWARDED_FOR : Header.OTHER
    case 16: return isName(name, 'proxy-connection') ? Header.PROXY_CONNECTION : isName(name, 'x-forwarded-host') ? Header.X_FORWARDED_HOST : Header.OTHER
    case 17: return isName(name, 'transfer-encoding') ? Header.TRANSFER_ENCODING : isName(name, 'x-forwarded-proto') ? Header.X_FORWARDED_PROTO : Header.OTHER
    default: return Header.OTHER
  }
}

/** Header kinds that never cross a proxy (RFC 9110 7.6.1), whatever the message. */
export function isHopByHop (kind: Header): boolean {
  return kind === Header.CONNECTION || kind === Header.KEEP_ALIVE || kind === Header.PROXY_CONNECTION ||
    kind === Header.TE || kind === Header.TRAILER
}

/**
 * The tokens of Connection header values beyond the ones with a meaning of their own
 * (close, keep-alive, upgrade): other headers the sender declared hop-by-hop. Lowercased.
 */
export function connectionOptions (values: string[]): Set<string> | null {
  let named: Set<string> | null = null
  for (const value of values) {
    // the usual values name nothing else: no split, no lowercased copy
    if (isName(value, 'close') || isName(value, 'keep-alive') || isName(value, 'upgrade')) continue
    for (const raw of value.split(',')) {
      const token = raw.trim().toLowerCase()
      if (token === '' || token === 'close' || token === 'keep-alive' || token === 'upgrade') continue
      named ??= new Set()
      named.add(token)
    }
  }
  return named
}

/** True when a comma-separated header value holds `token` (case-insensitive). */
export function hasToken (value: string, token: string): boolean {
  const lower = value.toLowerCase()
  let from = 0
  for (;;) {
    const at = lower.indexOf(token, from)
    if (at === -1) return false
    const end = at + token.length
    const before = at === 0 ? ',' : lower[at - 1]
    const after = end === lower.length ? ',' : lower[end]
    if ((before === ',' || before === ' ' || before === '\t') && (after === ',' || after === ' ' || after === '\t' || after === ';')) return true
    from = end
  }
}

/**
 * An Upgrade value without its `h2c` protocols (`h2c`, `h2c/VERSION`, any case): the value itself
 * when it names none, '' when it names nothing else. rp4 never relays an h2c upgrade: behind a
 * proxy, an HTTP/2 connection to the backend escapes every rule the proxy applies per request.
 */
export function withoutH2c (value: string): string {
  if (!value.toLowerCase().includes('h2c')) return value
  let kept = ''
  for (const raw of value.split(',')) {
    const protocol = raw.trim()
    if (protocol === '') continue
    const slash = protocol.indexOf('/')
    if ((slash === -1 ? protocol : protocol.slice(0, slash)).toLowerCase() === 'h2c') continue
    kept += (kept === '' ? '' : ', ') + protocol
  }
  return kept
}

/**
 * True when a request's Upgrade headers name h2c and no other protocol: not an upgrade as far as
 * rp4 is concerned, whatever llhttp saw.
 */
export function upgradesOnlyToH2c (headers: string[]): boolean {
  let h2c = false
  for (let i = 0; i < headers.length; i += 2) {
    if (classify(headers[i]) !== Header.UPGRADE) continue
    const value = headers[i + 1]
    const kept = withoutH2c(value)
    if (kept !== '') return false
    if (value.trim() !== '') h2c = true
  }
  return h2c
}

/**
 * The value of cookie `name` in a request's Cookie headers (RFC 6265 §5.4: `a=1; b=2`, possibly
 * several Cookie fields), the first one when repeated; null when absent. Names are case-sensitive.
 */
export function cookieValue (headers: HeaderList, name: string): string | null {
  for (let at = headers.indexOf('cookie'); at !== -1; at = headers.indexOf('cookie', at + 1)) {
    const value = headers.valueAt(at)
    let start = 0
    while (start < value.length) {
      let end = value.indexOf(';', start)
      if (end === -1) end = value.length
      const eq = value.indexOf('=', start)
      if (eq !== -1 && eq < end && value.slice(start, eq).trim() === name) {
        let v = value.slice(eq + 1, end).trim()
        if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1)
        return v
      }
      start = end + 1
    }
  }
  return null
}
