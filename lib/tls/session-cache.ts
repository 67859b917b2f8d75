/**
 * The server-side session cache (resumption by session ID, RFC 5246 §7.4.1.2), as Mozilla's
 * profile configures one beside tickets (nginx `ssl_session_cache shared:MozSSL:10m;
 * ssl_session_timeout 1d`): a TLS 1.2 client that does not take tickets (older Java, embedded
 * stacks, `openssl s_client -no_ticket`) resumes with the session ID it was given.
 *
 * What it does not do: TLS 1.3. OpenSSL resumes TLS 1.3 by tickets (PSK) only, and would report
 * every TLS 1.3 ticket it issues as a "new session" with an ID nobody will ever present (a 1.3
 * client's `legacy_session_id` is random bytes). A handshake whose ClientHello offers TLS 1.3 (so
 * will be one: every profile allows it) is therefore not given the cache at all
 * (listener/listener.ts `toTls`); should a 1.3 session reach `store` anyway, it is not stored. The
 * cache holds TLS 1.2 sessions only, and TLS 1.3 resumption works the same with it on or off (the
 * ticket keys).
 *
 * Bounded in bytes (LRU, lru-cache): a client making handshake after handshake only pushes out
 * the oldest sessions, it cannot grow the cache. Each entry also expires after the timeout.
 *
 * What it costs: for a TLS 1.2 handshake with the cache, Node parses the ClientHello once more in
 * C++ and calls into JavaScript twice (the lookup of the ID the client offers, the store of the
 * new session) instead of never; `tls.sessionCache: 0` turns it off, and the perf harness
 * compares both (perf/tls-handshakes.ts --session-cache).
 */
import { LRUCache } from 'lru-cache'

/** What an entry is counted as besides its bytes: the key string, the Buffer object, the LRU's slots. */
const ENTRY_OVERHEAD = 160
const TLS1_3 = 0x0304

export class SessionCache {
  readonly #entries: LRUCache<string, Buffer>
  /** Lookups answered with a session, and lookups that found none. */
  hits = 0
  misses = 0
  /** TLS 1.2 sessions offered to the cache (a later one may have pushed it out, one larger than the whole cache is refused). */
  stored = 0

  /**
   * @param maxBytes the bound on what the sessions and their keys take
   * @param timeout ms a stored session can be resumed for
   */
  constructor (maxBytes: number, timeout: number) {
    this.#entries = new LRUCache<string, Buffer>({
      maxSize: maxBytes,
      sizeCalculation: (session, key) => session.length + key.length + ENTRY_OVERHEAD,
      ttl: timeout,
      // an expired session is dropped when looked up or pushed out, never by a timer per entry
      ttlAutopurge: false,
      updateAgeOnGet: false,
    })
  }

  get count (): number { return this.#entries.size }
  get bytes (): number { return this.#entries.calculatedSize }

  /** A session OpenSSL made (`newSession`): stored under its ID unless it is TLS 1.3's or has no ID. */
  store (id: Buffer, session: Buffer): void {
    if (id.length === 0 || sessionVersion(session) === TLS1_3) return
    this.#entries.set(id.toString('hex'), session)
    this.stored++
  }

  /** The session a client offers to resume (`resumeSession`), or null. */
  find (id: Buffer): Buffer | null {
    const session = this.#entries.get(id.toString('hex'))
    if (session === undefined) {
      this.misses++
      return null
    }
    this.hits++
    return session
  }

  clear (): void {
    this.#entries.clear()
  }
}

/**
 * The protocol version of a serialized session (OpenSSL's SSL_SESSION_ASN1: a SEQUENCE whose
 * first fields are `version INTEGER (1)` and `ssl_version INTEGER`), or -1 when it is not that shape.
 */
export function sessionVersion (der: Buffer): number {
  if (der.length < 2 || der[0] !== 0x30) return -1
  let at = 2
  const len = der[1]
  // DER length: short form, or 0x81/0x82/0x83 followed by that many bytes
  if (len > 0x80) at += len - 0x80
  // INTEGER 1, then INTEGER of two bytes
  if (der.length < at + 7 || der[at] !== 0x02 || der[at + 1] !== 0x01 || der[at + 2] !== 0x01) return -1
  if (der[at + 3] !== 0x02 || der[at + 4] !== 0x02) return -1
  return der.readUInt16BE(at + 5)
}
