/**
 * What protocol a client speaks, from the first bytes it sent, deciding as early as the bytes
 * allow: an HTTP/1.x request line starts with a method rp4's parser knows followed by a space; a
 * TLS connection starts with a handshake record (0x16, major version 3). Anything else is some
 * other protocol, relayed as TCP.
 *
 * Only known methods count, not any token: a text protocol (Redis inline commands, SMTP from a
 * client that does not wait for the greeting) also starts with a word and a space, and must not
 * end up in the HTTP parser.
 */

export const enum Verdict {
  /** Not decided yet: every byte so far is consistent with more than one answer. */
  MORE,
  HTTP,
  TLS,
  OTHER,
}

/** Methods llhttp accepts in a request line (HTTP, WebDAV, UPnP, the HTTP/2 preface's PRI). */
const METHODS = [
  'DELETE', 'GET', 'HEAD', 'POST', 'PUT', 'CONNECT', 'OPTIONS', 'TRACE', 'COPY', 'LOCK', 'MKCOL',
  'MOVE', 'PROPFIND', 'PROPPATCH', 'SEARCH', 'UNLOCK', 'BIND', 'REBIND', 'UNBIND', 'ACL', 'REPORT',
  'MKACTIVITY', 'CHECKOUT', 'MERGE', 'M-SEARCH', 'NOTIFY', 'SUBSCRIBE', 'UNSUBSCRIBE', 'PATCH',
  'PURGE', 'MKCALENDAR', 'LINK', 'UNLINK', 'SOURCE', 'QUERY', 'PRI',
]

/** Each method with its space, as bytes: a request line's first bytes are a prefix of one of these. */
const REQUEST_STARTS: readonly Buffer[] = METHODS.map(method => Buffer.from(method + ' ', 'latin1'))

/** Longest `METHOD ` : past this many bytes without a verdict, none of them can match. */
export const LONGEST_METHOD = Math.max(...REQUEST_STARTS.map(start => start.length))

const TLS_HANDSHAKE = 0x16

/** Whether `data` starts with `start`, or is a prefix of it. */
function agrees (data: Buffer, start: Buffer): boolean {
  const n = Math.min(data.length, start.length)
  for (let i = 0; i < n; i++) {
    if (data[i] !== start[i]) return false
  }
  return true
}

function sniffHttp (data: Buffer): Verdict {
  let possible = false
  for (const start of REQUEST_STARTS) {
    if (!agrees(data, start)) continue
    if (data.length >= start.length) return Verdict.HTTP
    possible = true
  }
  return possible ? Verdict.MORE : Verdict.OTHER
}

/**
 * A TLS record header: content type 22 (handshake), then the record version, major 3 (SSL 3.0 to
 * TLS 1.3 all write 3.x there). The ClientHello itself is parsed later, once this says TLS.
 */
function sniffTls (data: Buffer): Verdict {
  if (data.length < 2) return Verdict.MORE
  return data[1] === 0x03 ? Verdict.TLS : Verdict.OTHER
}

/** Classify the bytes a client sent so far (never empty). */
export function sniff (data: Buffer): Verdict {
  if (data.length === 0) return Verdict.MORE
  if (data[0] === TLS_HANDSHAKE) return sniffTls(data)
  return sniffHttp(data)
}
