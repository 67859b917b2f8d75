/**
 * What protocol a client speaks, from the first bytes it sent, deciding as early as the bytes
 * allow: an HTTP/1.x request line starts with a method followed by a space; a TLS connection
 * starts with a handshake record (0x16, major version 3). Anything else is some other protocol,
 * relayed as TCP.
 *
 * A method is taken as any uppercase token (`[A-Z][A-Z0-9_-]*`), not only the methods rp4's parser
 * knows, or as an uppercase word with other printable bytes when a request target follows it: a
 * client that tries HTTP with a bad method or a garbled line must get rp4's 400, not have its
 * bytes relayed raw to the backend. Lowercase and binary starts (memcached's `get k`, SSH's
 * banner, a PostgreSQL startup packet, RESP's `*`) are decided "other" at their first telling byte.
 */

export const enum Verdict {
  /** Not decided yet: every byte so far is consistent with more than one answer. */
  MORE,
  HTTP,
  TLS,
  OTHER,
}

/** Longest method token waited for (the longest llhttp knows, MKACTIVITY, has 10 characters). */
export const LONGEST_METHOD = 32

const SPACE = 0x20
const DASH = 0x2d
const UNDERSCORE = 0x5f

function isUpper (byte: number): boolean { return byte >= 0x41 && byte <= 0x5a }
function isDigit (byte: number): boolean { return byte >= 0x30 && byte <= 0x39 }

function sniffHttp (data: Buffer): Verdict {
  if (!isUpper(data[0])) return Verdict.OTHER
  // an uppercase start with other printable bytes (`GE(T`) is a garbled method if a request
  // target follows, to be refused with 400; relayed raw, it would reach an HTTP backend unchecked
  let garbled = false
  const n = Math.min(data.length, LONGEST_METHOD + 1)
  for (let i = 1; i < n; i++) {
    const byte = data[i]
    if (byte === SPACE) return garbled ? sniffTarget(data, i + 1) : Verdict.HTTP
    if (byte < 0x21 || byte > 0x7e) return Verdict.OTHER
    if (!isUpper(byte) && !isDigit(byte) && byte !== DASH && byte !== UNDERSCORE) garbled = true
  }
  return data.length > LONGEST_METHOD ? Verdict.OTHER : Verdict.MORE
}

/** After a garbled method and its space: an origin-form or asterisk target, or an absolute URL, is HTTP (an SSH banner's comment is not). */
function sniffTarget (data: Buffer, at: number): Verdict {
  if (at >= data.length) return Verdict.MORE
  if (data[at] === 0x2f /* / */ || data[at] === 0x2a /* * */) return Verdict.HTTP
  const seen = data.toString('latin1', at, Math.min(data.length, at + 8)).toLowerCase()
  if (seen.startsWith('http://') || seen.startsWith('https://')) return Verdict.HTTP
  return 'http://'.startsWith(seen) || 'https://'.startsWith(seen) ? Verdict.MORE : Verdict.OTHER
}

/**
 * A TLS record header: content type 22 (handshake), then the record version, major 3 (SSL 3.0 to
 * TLS 1.3 all write 3.x there). The ClientHello itself is parsed later, once this says TLS.
 */
function sniffTls (data: Buffer): Verdict {
  if (data.length < 2) return Verdict.MORE
  return data[1] === 0x03 ? Verdict.TLS : Verdict.OTHER
}

const TLS_HANDSHAKE = 0x16

/** Classify the bytes a client sent so far (never empty). */
export function sniff (data: Buffer): Verdict {
  if (data.length === 0) return Verdict.MORE
  if (data[0] === TLS_HANDSHAKE) return sniffTls(data)
  return sniffHttp(data)
}
