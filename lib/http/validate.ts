/**
 * The checks a request head must pass before anything of it goes further, and the facts about its
 * body that every later step needs. Where two parties could disagree about where a request ends
 * or which host it is for, rp4 refuses (request smuggling feeds on such disagreements).
 */
import { Header, classify } from './fields.js'
import type { RequestHead } from './message.js'

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

export interface RequestFacts {
  /** Why the request is refused (400), or '' when it is fine. */
  invalid: string
  body: BodyKind
  /** The Content-Length value, or -1 without one. */
  contentLength: number
  expectContinue: boolean
  /** No Host header (an HTTP/1.0 request): the upstream hop gets the target's authority. */
  needsHost: boolean
}

/** Characters of a reg-name or IPv4 address (RFC 3986 unreserved, sub-delims and `%`), by code. */
const REG_NAME = new Uint8Array(128)
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%!$&'()*+;=") REG_NAME[c.charCodeAt(0)] = 1
/** Characters inside an IP literal's brackets (IPv6, with an embedded IPv4), by code. */
const IP_LITERAL = new Uint8Array(128)
for (const c of '0123456789ABCDEFabcdef:.') IP_LITERAL[c.charCodeAt(0)] = 1

/**
 * RFC 9112 3.2 / RFC 3986 authority without userinfo, as a Host value: spaces or tabs around it,
 * then a reg-name or IPv4 address (possibly empty) or a non-empty IP literal in brackets, then an
 * optional `:` and digits. The regular expression it stands for is
 * `^[ \t]*(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+;=]*)(?::[0-9]*)?[ \t]*$`
 * (spec/http/host.ts holds them to the same answers); read character by character, it is one pass
 * without the regular expression engine on every request.
 */
export function validHost (value: string): boolean {
  let i = 0
  let end = value.length
  while (i < end && isBlank(value.charCodeAt(i))) i++
  while (end > i && isBlank(value.charCodeAt(end - 1))) end--
  if (i < end && value.charCodeAt(i) === 0x5b /* [ */) {
    const start = ++i
    while (i < end && isIn(IP_LITERAL, value.charCodeAt(i))) i++
    if (i === start || i === end || value.charCodeAt(i) !== 0x5d /* ] */) return false
    i++
  } else {
    while (i < end && isIn(REG_NAME, value.charCodeAt(i))) i++
  }
  if (i === end) return true
  if (value.charCodeAt(i) !== 0x3a /* : */) return false
  for (i++; i < end; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x30 || c > 0x39) return false
  }
  return true
}

function isBlank (c: number): boolean { return c === 0x20 || c === 0x09 }
function isIn (table: Uint8Array, c: number): boolean { return c < 128 && table[c] === 1 }

export function inspectRequest (head: RequestHead): RequestFacts {
  const headers = head.headers.raw
  let hosts = 0
  let host = ''
  let contentLength = false
  let chunked = false
  let expectContinue = false
  let lastCoding = ''
  let codings = 0
  let length = -1

  for (let i = 0; i < headers.length; i += 2) {
    switch (classify(headers[i])) {
      case Header.HOST: hosts++; host = headers[i + 1]; break
      case Header.CONTENT_LENGTH: contentLength = true; length = Number(headers[i + 1].trim()); break
      case Header.TRANSFER_ENCODING: codings++; chunked = true; lastCoding = headers[i + 1]; break
      case Header.EXPECT: expectContinue = headers[i + 1].trim().toLowerCase() === '100-continue'; break
    }
  }

  let invalid = ''
  const http11 = head.versionMajor === 1 && head.versionMinor === 1
  // HTTP/0.9 has no headers to check, and HTTP/2 does not come in this syntax
  if (head.versionMajor !== 1) invalid = `HTTP/${head.versionMajor}.${head.versionMinor} request line`
  // RFC 9112 3.2.4: the asterisk form is OPTIONS's alone; a backend may take `GET *` for anything
  else if (head.target === '*' && head.method !== 'OPTIONS') invalid = `${head.method} with the asterisk form (*)`
  else if (head.target.indexOf('#') !== -1) invalid = 'a fragment (#) in the request target'
  else if (hasEncodedNul(head.target)) invalid = 'an encoded NUL (%00) in the request target'
  else if (hosts > 1) invalid = 'several Host headers'
  else if (hosts === 1 && !validHost(host)) invalid = 'Host is not a host[:port]'
  else if (hosts === 0 && http11) invalid = 'HTTP/1.1 request without Host'
  // llhttp refuses these too, but only after the head is handed over: refusing here means no
  // backend connection is even opened for them
  else if (hosts === 1 && !sameAuthority(head.target, host)) invalid = 'absolute-form target whose host differs from Host'
  // RFC 9112 6.1: the framing of an HTTP/1.0 message with Transfer-Encoding is faulty (1.0 has no
  // chunked); a 1.0 hop behind would take the chunk data for the next request
  else if (chunked && !http11) invalid = 'Transfer-Encoding in an HTTP/1.0 request'
  else if (chunked && contentLength) invalid = 'Content-Length with Transfer-Encoding'
  else if (chunked && !/(?:^|,)[ \t]*chunked[ \t]*$/i.test(lastCoding)) invalid = 'Transfer-Encoding whose last coding is not chunked'
  // `gzip, chunked` is valid HTTP, but a backend that reads only the first of two Transfer-Encoding
  // headers, or does not know a coding, frames the body differently from rp4 (nginx answers 501)
  else if (codings > 1) invalid = 'several Transfer-Encoding headers'
  else if (chunked && lastCoding.trim().toLowerCase() !== 'chunked') invalid = 'a transfer coding other than chunked'

  return {
    invalid,
    // llhttp has already refused Content-Length beside Transfer-Encoding, and a Transfer-Encoding
    // whose last coding is not chunked, so one flag decides the framing
    body: chunked ? BodyKind.CHUNKED : contentLength && length > 0 ? BodyKind.LENGTH : BodyKind.NONE,
    contentLength: contentLength ? length : -1,
    expectContinue,
    needsHost: hosts === 0,
  }
}

/*
 * A fragment never belongs in a request target (RFC 9112 3.2: a client strips it). A backend that
 * cuts the path at `#` serves `/admin` for `/admin#x`, which no route for `/admin` saw coming
 * (HAProxy refuses it since CVE-2023-45539). A backend that decodes the path may cut it at a NUL
 * (`/admin%00.png`); nginx refuses `%00` too.
 */
function hasEncodedNul (target: string): boolean {
  for (let at = target.indexOf('%'); at !== -1; at = target.indexOf('%', at + 1)) {
    if (target.charCodeAt(at + 1) === 0x30 && target.charCodeAt(at + 2) === 0x30) return true
  }
  return false
}

/**
 * For an absolute-form target (`GET http://a.test/x HTTP/1.1`): its authority must be the Host
 * header's (RFC 9112 3.2.2 lets the target win; two different answers to "which host?" between
 * rp4 and a backend is what request smuggling feeds on, so rp4 refuses the disagreement).
 * Authorities are compared as RFC 9110 4.2.3 normalizes them: the host's case, and the scheme's
 * default port (80 for http, 443 for https) or an empty one the same as none, on either side
 * (`GET http://a.test:80/x` with `Host: a.test` is one host). Origin-form targets (`/x`) always pass.
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
  const defaultPort = url.slice(0, scheme).toLowerCase() === 'https' ? ':443' : ':80'
  return normalAuthority(authority, defaultPort) === normalAuthority(host.trim(), defaultPort)
}

/** An authority without its default or empty port, lower case. */
function normalAuthority (authority: string, defaultPort: string): string {
  const lower = authority.toLowerCase()
  if (lower.endsWith(defaultPort)) return lower.slice(0, -defaultPort.length)
  if (lower.endsWith(':')) return lower.slice(0, -1)
  return lower
}
