/**
 * The server name (SNI) a TLS client asks for, read from its ClientHello without terminating TLS,
 * so that the connection can be routed before any certificate is chosen, or relayed untouched.
 *
 * The ClientHello may arrive over several reads and be fragmented over several handshake records
 * (RFC 8446 §5.1): bytes are given again, whole, as they accumulate, and the answer is "more"
 * until the message is complete. Input is untrusted: every length is checked against what is
 * there, nothing throws, and a message beyond `limit` bytes is refused rather than buffered.
 */

export const enum HelloStatus {
  /** Consistent so far: read more bytes and ask again. */
  MORE,
  OK,
  INVALID,
}

export interface ClientHello {
  status: HelloStatus
  /** Lowercase, without a trailing dot; null when the client sent no SNI (or status is not OK). */
  serverName: string | null
  /** Why the bytes were refused (INVALID). */
  reason: string
  /** The client offers ALPN `acme-tls/1`: a CA validating a TLS-ALPN-01 challenge (RFC 8737). */
  acme: boolean
  /**
   * The client offers TLS 1.3 (0x0304 in its supported_versions extension, RFC 8446 §4.2.1). Every
   * profile of rp4 allows TLS 1.3, so such a handshake will be one: it resumes by ticket only,
   * never by a TLS 1.2 session ID.
   */
  tls13: boolean
}

/** Largest ClientHello accepted: far above real ones (a few hundred bytes to ~2 KiB with post-quantum key shares). */
export const MAX_CLIENT_HELLO = 16 * 1024

const RECORD_HEADER = 5
const CONTENT_HANDSHAKE = 0x16
const HANDSHAKE_CLIENT_HELLO = 0x01
const EXTENSION_SERVER_NAME = 0x0000
const NAME_TYPE_HOST = 0x00
/** A TLSPlaintext fragment is at most 2^14 bytes. */
const MAX_FRAGMENT = 16_384

const EXTENSION_ALPN = 0x0010
const EXTENSION_SUPPORTED_VERSIONS = 0x002b
const TLS13 = 0x0304
const ACME_TLS_1 = Buffer.from('acme-tls/1')

const MORE: ClientHello = Object.freeze({ status: HelloStatus.MORE, serverName: null, reason: '', acme: false, tls13: false })

function invalid (reason: string): ClientHello {
  return { status: HelloStatus.INVALID, serverName: null, reason, acme: false, tls13: false }
}

/** A usable hello naming `serverName` (null: none); its ALPN and version offers are set by the caller. */
function usable (serverName: string | null): ClientHello {
  return { status: HelloStatus.OK, serverName, reason: '', acme: false, tls13: false }
}

/**
 * Parse the ClientHello at the start of `data` (everything the client sent so far).
 * @param limit refuse handshake messages larger than this many bytes
 */
export function parseClientHello (data: Buffer, limit = MAX_CLIENT_HELLO): ClientHello {
  // the handshake message, reassembled from the fragments of consecutive handshake records
  const fragments: Buffer[] = []
  let length = 0
  let expected = -1
  let off = 0
  while (off < data.length) {
    if (data[off] !== CONTENT_HANDSHAKE) return invalid('not a TLS handshake record')
    if (data.length - off < RECORD_HEADER) break
    if (data[off + 1] !== 0x03) return invalid('not a TLS record version')
    const size = data.readUInt16BE(off + 3)
    if (size === 0 || size > MAX_FRAGMENT) return invalid(`TLS record of ${size} bytes`)
    // a record still arriving is used as far as it goes: its bytes are plaintext, in order
    const fragment = data.subarray(off + RECORD_HEADER, Math.min(data.length, off + RECORD_HEADER + size))
    fragments.push(fragment)
    length += fragment.length
    off += RECORD_HEADER + size
    if (expected === -1 && length >= 4) {
      const head = fragments.length === 1 ? fragment : Buffer.concat(fragments, length)
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return invalid('the first handshake message is not a ClientHello')
      expected = 4 + head.readUIntBE(1, 3)
      if (expected - 4 > limit) return invalid(`ClientHello of ${expected - 4} bytes (limit ${limit})`)
    }
    if (expected !== -1 && length >= expected) break
  }
  if (expected === -1 || length < expected) {
    return data.length > limit + RECORD_HEADER * 8 ? invalid(`no complete ClientHello in ${data.length} bytes`) : MORE
  }
  const message = fragments.length === 1 ? fragments[0] : Buffer.concat(fragments, length)
  return parseBody(message.subarray(4, expected))
}

/** A bounds-checked cursor: a read past the end yields 0 and clears `ok` instead of throwing. */
class Cursor {
  readonly buf: Buffer
  pos: number
  readonly end: number
  ok = true

  constructor (buf: Buffer, pos = 0, end = buf.length) {
    this.buf = buf
    this.pos = pos
    this.end = end
  }

  get left (): number { return this.end - this.pos }

  u8 (): number {
    if (this.left < 1) return this.#fail()
    return this.buf[this.pos++]
  }

  u16 (): number {
    if (this.left < 2) return this.#fail()
    const value = this.buf.readUInt16BE(this.pos)
    this.pos += 2
    return value
  }

  skip (n: number): void {
    if (this.left < n) this.#fail()
    else this.pos += n
  }

  /** A sub-cursor over the next `n` bytes, which this one skips. */
  take (n: number): Cursor {
    if (this.left < n) {
      this.#fail()
      return new Cursor(this.buf, this.pos, this.pos)
    }
    const sub = new Cursor(this.buf, this.pos, this.pos + n)
    this.pos += n
    return sub
  }

  #fail (): number {
    this.ok = false
    this.pos = this.end
    return 0
  }
}

function parseBody (body: Buffer): ClientHello {
  const c = new Cursor(body)
  c.skip(2 + 32) // legacy_version, random
  const sessionId = c.u8()
  if (sessionId > 32) return invalid('session id longer than 32 bytes')
  c.skip(sessionId)
  const suites = c.u16()
  if (suites < 2 || suites % 2 !== 0) return invalid('bad cipher suite list')
  c.skip(suites)
  const compression = c.u8()
  if (compression < 1) return invalid('empty compression method list')
  c.skip(compression)
  if (!c.ok) return invalid('truncated ClientHello')
  // before extensions existed (SSL 3.0 era) a ClientHello could end here: no SNI
  if (c.left === 0) return usable(null)
  const extensions = c.take(c.u16())
  if (!c.ok || c.left !== 0) return invalid('bad extension block length')
  let result = usable(null)
  let acme = false
  let tls13 = false
  while (extensions.left > 0) {
    const type = extensions.u16()
    const ext = extensions.take(extensions.u16())
    if (!extensions.ok) return invalid('truncated extension')
    if (type === EXTENSION_SERVER_NAME) {
      result = serverName(ext)
      if (result.status !== HelloStatus.OK) return result
    } else if (type === EXTENSION_ALPN) {
      acme = offersAcme(ext)
    } else if (type === EXTENSION_SUPPORTED_VERSIONS) {
      tls13 = offersTls13(ext)
    }
  }
  result.acme = acme
  result.tls13 = tls13
  return result
}

/** Whether an ALPN extension's protocol list holds `acme-tls/1` (malformed: no). */
function offersAcme (ext: Cursor): boolean {
  const list = ext.take(ext.u16())
  while (list.ok && list.left > 0) {
    const size = list.u8()
    const start = list.pos
    list.skip(size)
    if (list.ok && size === ACME_TLS_1.length && ACME_TLS_1.equals(list.buf.subarray(start, start + size))) return true
  }
  return false
}

/** Whether a supported_versions extension's list holds TLS 1.3 (malformed: no). */
function offersTls13 (ext: Cursor): boolean {
  const size = ext.u8()
  if (!ext.ok || size !== ext.left || size % 2 !== 0) return false
  while (ext.left > 0) if (ext.u16() === TLS13) return true
  return false
}

function serverName (ext: Cursor): ClientHello {
  const list = ext.take(ext.u16())
  if (!ext.ok || ext.left !== 0) return invalid('bad server_name extension')
  while (list.left > 0) {
    const type = list.u8()
    const size = list.u16()
    const start = list.pos
    list.skip(size)
    if (!list.ok) return invalid('truncated server name')
    if (type !== NAME_TYPE_HOST) continue
    const name = list.buf.toString('latin1', start, start + size).toLowerCase().replace(/\.$/, '')
    if (name.length === 0 || name.length > 253 || !/^[a-z0-9_.-]+$/.test(name)) return invalid('server name is not a DNS name')
    return usable(name)
  }
  return usable(null)
}
