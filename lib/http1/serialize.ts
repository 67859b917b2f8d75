/**
 * What crosses the proxy: request and response heads re-serialized for the next hop, hop-by-hop
 * headers removed, X-Forwarded-* and Via added, bodies re-framed where the two hops differ.
 * Each head is built as one string, written with one call.
 */
import { Header, classify, connectionOptions, hasToken, isHopByHop, withoutH2c, type MessageHead } from './head.js'
import type { HiddenHeaders } from '../config/resolve.js'

export const enum BodyKind {
  /** No body at all. */
  NONE,
  /** Content-Length bytes, passed as they come. */
  LENGTH,
  /** Chunked: each piece goes out as one chunk, then the last-chunk. */
  CHUNKED,
  /** Until the connection closes (responses only; the client connection closes after it). */
  UNTIL_CLOSE,
}

/** A request head checked and prepared for the upstream hop. */
export interface RequestPlan {
  /** Request line and the client's forwarded headers. */
  prefix: string
  /** Headers rp4 appends and the blank line; `Host` goes between the two when the client sent none. */
  suffix: string
  needsHost: boolean
  body: BodyKind
  /** The Content-Length value, or -1 without one. */
  contentLength: number
  expectContinue: boolean
  /** A protocol upgrade (WebSocket and the like) is asked for. */
  upgrade: boolean
  /** Why the request is refused, or '' when it is fine. */
  invalid: string
}

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

export function planRequest (head: MessageHead, ctx: ForwardContext): RequestPlan {
  const headers = head.headers
  let hosts = 0
  let host = ''
  let contentLength = false
  let chunked = false
  let expectContinue = false
  let lastXff = -1
  let lastVia = -1
  let connectionValues: string[] | null = null
  let lastCoding = ''
  let length = -1

  for (let i = 0; i < headers.length; i += 2) {
    switch (classify(headers[i])) {
      case Header.HOST: hosts++; host = headers[i + 1]; break
      case Header.CONTENT_LENGTH: contentLength = true; length = Number(headers[i + 1].trim()); break
      case Header.TRANSFER_ENCODING: chunked = true; lastCoding = headers[i + 1]; break
      case Header.EXPECT: expectContinue = headers[i + 1].trim().toLowerCase() === '100-continue'; break
      case Header.X_FORWARDED_FOR: lastXff = i; break
      case Header.VIA: lastVia = i; break
      case Header.CONNECTION: (connectionValues ??= []).push(headers[i + 1]); break
    }
  }

  let invalid = ''
  const http11 = head.versionMajor === 1 && head.versionMinor === 1
  // HTTP/0.9 has no headers to check, and HTTP/2 does not come in this syntax
  if (head.versionMajor !== 1) invalid = `HTTP/${head.versionMajor}.${head.versionMinor} request line`
  else if (hosts > 1) invalid = 'several Host headers'
  else if (hosts === 1 && !VALID_HOST.test(host)) invalid = 'Host is not a host[:port]'
  else if (hosts === 0 && http11) invalid = 'HTTP/1.1 request without Host'
  // llhttp refuses these too, but only after the head is handed over: refusing here means no
  // backend connection is even opened for them
  else if (hosts === 1 && !sameAuthority(head.url, host)) invalid = 'absolute-form target whose host differs from Host'
  // RFC 9112 6.1: the framing of an HTTP/1.0 message with Transfer-Encoding is faulty (1.0 has no
  // chunked); a 1.0 hop behind would take the chunk data for the next request
  else if (chunked && !http11) invalid = 'Transfer-Encoding in an HTTP/1.0 request'
  else if (chunked && contentLength) invalid = 'Content-Length with Transfer-Encoding'
  else if (chunked && !/(?:^|,)[ \t]*chunked[ \t]*$/i.test(lastCoding)) invalid = 'Transfer-Encoding whose last coding is not chunked'

  const named = connectionValues === null ? null : connectionOptions(connectionValues)
  // the parser has already decided that an Upgrade naming h2c alone is no upgrade
  const upgrade = head.upgrade
  const underscores = ctx.underscores
  let prefix = head.method + ' ' + head.url + ' HTTP/1.1\r\n'
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]
    const kind = classify(name)
    if (kind !== Header.OTHER) {
      if (isHopByHop(kind) || kind === Header.X_FORWARDED_PROTO || kind === Header.X_FORWARDED_HOST || kind === Header.HTTP2_SETTINGS) continue
      if (kind === Header.UPGRADE) {
        if (!upgrade) continue
        const protocols = withoutH2c(headers[i + 1])
        if (protocols !== '') prefix += name + ': ' + protocols + '\r\n'
        continue
      }
      if (i === lastXff) { prefix += name + ': ' + headers[i + 1] + ', ' + ctx.clientIp + '\r\n'; continue }
      if (i === lastVia) { prefix += name + ': ' + headers[i + 1] + ', ' + ctx.via + '\r\n'; continue }
    } else if (named !== null && named.has(name.toLowerCase())) {
      continue
    } else if (!underscores && name.includes('_')) {
      // CGI, WSGI and many frameworks read `Transfer_Encoding` as Transfer-Encoding: a second
      // framing header rp4 never saw. Dropped silently, as nginx does (underscores_in_headers off)
      continue
    }
    prefix += name + ': ' + headers[i + 1] + '\r\n'
  }

  let suffix = ''
  if (lastXff === -1) suffix += 'X-Forwarded-For: ' + ctx.clientIp + '\r\n'
  suffix += 'X-Forwarded-Proto: ' + ctx.proto + '\r\n'
  if (hosts === 1) suffix += 'X-Forwarded-Host: ' + host + '\r\n'
  if (lastVia === -1) suffix += 'Via: ' + ctx.via + '\r\n'
  if (upgrade) suffix += 'Connection: upgrade\r\n'
  suffix += '\r\n'

  return {
    prefix,
    suffix,
    needsHost: hosts === 0,
    // llhttp has already refused Content-Length beside Transfer-Encoding, and a Transfer-Encoding
    // whose last coding is not chunked, so one flag decides the framing
    body: chunked ? BodyKind.CHUNKED : contentLength && length > 0 ? BodyKind.LENGTH : BodyKind.NONE,
    contentLength: contentLength ? length : -1,
    expectContinue,
    upgrade,
    invalid,
  }
}

/** RFC 9112 3.2 / RFC 3986 authority without userinfo: reg-name or IPv4, or an IP literal, then an optional port. */
const VALID_HOST = /^[ \t]*(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+;=]*)(?::[0-9]*)?[ \t]*$/

/**
 * For an absolute-form target (`GET http://a.test/x HTTP/1.1`): its authority must be the Host
 * header's (RFC 9112 3.2.2 lets the target win; two different answers to "which host?" between
 * rp4 and a backend is what request smuggling feeds on, so rp4 refuses the disagreement).
 * Origin-form targets (`/x`) always pass.
 */
function sameAuthority (url: string, host: string): boolean {
  const c = url.charCodeAt(0)
  if (c === 47 /* / */ || c === 42 /* * */) return true
  const scheme = url.indexOf('://')
  if (scheme === -1) return true // authority-form is CONNECT's, refused elsewhere
  let end = url.length
  for (let i = scheme + 3; i < url.length; i++) {
    const ch = url[i]
    if (ch === '/' || ch === '?' || ch === '#') { end = i; break }
  }
  const authority = url.slice(scheme + 3, end)
  if (authority.includes('@')) return false // userinfo has no place in an http(s) target
  return authority.toLowerCase() === host.trim().toLowerCase()
}

/** A response head prepared for the client hop. */
export interface ResponsePlan {
  head: string
  body: BodyKind
  /** The client connection is closed after this response. */
  close: boolean
}

/**
 * @param requestMethod the method of the request this answers (HEAD responses carry no body)
 * @param clientHttp11 the client speaks HTTP/1.1 (else 1.0: no chunked, keep-alive only if asked)
 * @param keepClient the client connection may stay open after this response, as far as the
 *   request side is concerned
 * @param untilClose llhttp's verdict that the body runs until the backend closes
 */
export function planResponse (head: MessageHead, requestMethod: string, clientHttp11: boolean, keepClient: boolean,
  untilClose: boolean, via: string, hidden: HiddenHeaders | null = null): ResponsePlan {
  const headers = head.headers
  const status = head.status
  const noBody = requestMethod === 'HEAD' || status < 200 || status === 204 || status === 304
  const upgraded = status === 101
  let chunked = false
  let contentLength = false
  let lastVia = -1
  let connectionValues: string[] | null = null
  for (let i = 0; i < headers.length; i += 2) {
    switch (classify(headers[i])) {
      case Header.TRANSFER_ENCODING: chunked = hasToken(headers[i + 1], 'chunked'); break
      case Header.CONTENT_LENGTH: contentLength = true; break
      case Header.VIA: lastVia = i; break
      case Header.CONNECTION: (connectionValues ??= []).push(headers[i + 1]); break
    }
  }

  let body: BodyKind
  if (noBody) body = BodyKind.NONE
  else if (chunked && !untilClose) body = clientHttp11 ? BodyKind.CHUNKED : BodyKind.UNTIL_CLOSE
  else if (contentLength && !untilClose) body = BodyKind.LENGTH
  else body = clientHttp11 ? BodyKind.CHUNKED : BodyKind.UNTIL_CLOSE
  // an HTTP/1.0 client gets a chunked body as raw bytes until close: drop the header that says chunked
  const dropTransferEncoding = chunked && body === BodyKind.UNTIL_CLOSE
  const addChunked = body === BodyKind.CHUNKED && !chunked
  const close = !keepClient || body === BodyKind.UNTIL_CLOSE

  const named = connectionValues === null ? null : connectionOptions(connectionValues)
  let out = 'HTTP/1.1 ' + status + ' ' + head.reason + '\r\n'
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]
    const kind = classify(name)
    if (kind !== Header.OTHER) {
      if (isHopByHop(kind)) continue
      if (kind === Header.UPGRADE && !upgraded) continue
      // a HEAD or 304 response describes the body it would carry: its framing headers stay
      if (kind === Header.TRANSFER_ENCODING && (dropTransferEncoding || status < 200 || status === 204)) continue
      if (i === lastVia) { out += name + ': ' + headers[i + 1] + ', ' + via + '\r\n'; continue }
    } else if (named !== null && named.has(name.toLowerCase())) {
      continue
    } else if (hidden !== null && hidden.lengths.has(name.length) && hidden.names.has(name.toLowerCase())) {
      continue // what runs behind rp4 is nobody's business
    }
    out += name + ': ' + headers[i + 1] + '\r\n'
  }
  if (addChunked) out += 'Transfer-Encoding: chunked\r\n'
  if (lastVia === -1) out += 'Via: ' + via + '\r\n'
  if (upgraded) out += 'Connection: upgrade\r\n'
  else if (status >= 200) {
    if (close) out += 'Connection: close\r\n'
    else if (!clientHttp11) out += 'Connection: keep-alive\r\n'
  }
  out += '\r\n'
  return { head: out, body, close }
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
}

/** rp4's own response for a refused or failed request: small, plain text, nothing of the backend in it. */
export function errorResponse (status: number, close: boolean, retryAfter = 0): string {
  const reason = REASONS[status] ?? 'Error'
  const body = status + ' ' + reason + '\n'
  return 'HTTP/1.1 ' + status + ' ' + reason + '\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ' +
    body.length + '\r\n' + (retryAfter > 0 ? 'Retry-After: ' + retryAfter + '\r\n' : '') +
    (close ? 'Connection: close\r\n' : '') + '\r\n' + body
}

const CRLF = Buffer.from('\r\n')
/** The last-chunk and an empty trailer section. */
export const LAST_CHUNK = Buffer.from('0\r\n\r\n')

/** The size line of one chunk. The data and a CRLF (`CRLF`) follow it. */
export function chunkHeader (size: number): string {
  return size.toString(16) + '\r\n'
}

export { CRLF }
