/**
 * What protocol a client speaks, from the first bytes it sent, fed as they arrive. A TLS
 * connection starts with a handshake record (0x16, major version 3). An HTTP/1.x request starts
 * with its request line, `METHOD SP target SP HTTP/1.x CRLF`, and only the whole line tells it
 * from a text protocol that also starts with an uppercase word and a space (Redis's inline
 * `SET k v`, SMTP's `HELO x`): those lines end without an HTTP version.
 *
 * The verdicts are asymmetric on purpose. Bytes that are still a prefix of a request line are
 * `HTTP_PREFIX`, never `OTHER`, however slowly they come: a client must not get past the HTTP
 * engine (its limits, timeouts, header rules) by pausing in the middle of `GET`. What keeps such
 * a client from waiting forever is the HTTP head timeout, applied by the listener. A method is
 * any uppercase token (`[A-Z][A-Z0-9_-]*`), not only the methods rp4's parser knows, and an
 * uppercase word with other printable bytes in it (`GE(T`) is a garbled method: a garbled line
 * that ends like HTTP gets rp4's 400, not a raw relay to a fallback that may well be an HTTP
 * backend too. A target longer than the request-line
 * limit is HTTP (the engine answers 414), so the bytes held while deciding stay bounded.
 * Lowercase and binary starts (memcached's `get k`, SSH's banner, a PostgreSQL startup packet,
 * RESP's `*`) are decided `OTHER` at their first byte. Empty lines before a request line (CRLF,
 * up to 32 bytes of them when the whole line is read) are HTTP's own robustness (RFC 9112 2.2):
 * `HTTP_PREFIX` once the LF came, and the line after them is judged as any first line; a CR
 * without its LF, or a bare LF, is `OTHER`.
 */

/** The undecided verdicts come first: `feed` compares against them. */
export const enum Verdict {
  /** Nothing telling yet: no byte, a TLS record's first byte alone, or a CR whose LF is to come. */
  MORE,
  /** A prefix of an HTTP request line: HTTP, unless the rest of the line says otherwise. */
  HTTP_PREFIX,
  HTTP,
  TLS,
  OTHER,
}

/** Longest method token waited for (the longest llhttp knows, MKACTIVITY, has 10 characters). */
export const LONGEST_METHOD = 32

const enum Part { START, LINE_FEED, TLS_RECORD, METHOD, TARGET, VERSION, DONE }

const TLS_HANDSHAKE = 0x16
const TLS_MAJOR = 0x03
const SPACE = 0x20
const CR = 0x0d
const LF = 0x0a
const DASH = 0x2d
const UNDERSCORE = 0x5f
const DEL = 0x7f
/** `HTTP/1.`, then one digit, then the end of the line. */
const VERSION = Buffer.from('HTTP/1.')

function isUpper (byte: number): boolean { return byte >= 0x41 && byte <= 0x5a }
function isDigit (byte: number): boolean { return byte >= 0x30 && byte <= 0x39 }

/** One connection's first bytes, fed chunk by chunk; each byte is looked at once. */
export class Sniffer {
  /** Longest request target before the line is handed to the engine as HTTP (its 414). */
  readonly #maxTarget: number
  /** Read on past a request line's first byte: only when something else than HTTP may be chosen. */
  readonly #wholeLine: boolean
  #part = Part.START
  /** Bytes of the current part seen so far. */
  #count = 0
  /** The method had printable bytes that no method has: only a line ending like HTTP is HTTP. */
  #garbled = false
  verdict = Verdict.MORE

  /** Undecided on an empty line's CR, whose LF is to come (not on a TLS record's first byte). */
  get awaitsLineFeed (): boolean { return this.#part === Part.LINE_FEED }

  /**
   * With `wholeLine` false, `HTTP_PREFIX` is final from the first byte of a method: the verdict
   * then never depends on how the client cut its writes (a whole `SET k v\r\n` and one cut after
   * `S` both go to the HTTP engine).
   */
  constructor (maxTarget: number, wholeLine = true) {
    this.#maxTarget = maxTarget
    this.#wholeLine = wholeLine
  }

  /** The verdict after `chunk`; once decided (HTTP, TLS, OTHER) it no longer changes. */
  feed (chunk: Buffer): Verdict {
    let verdict = this.verdict
    const until = this.#wholeLine ? Verdict.HTTP_PREFIX : Verdict.MORE
    for (let i = 0; i < chunk.length && verdict <= until; i++) {
      verdict = this.#step(chunk[i])
    }
    this.verdict = verdict
    return verdict
  }

  #step (byte: number): Verdict {
    switch (this.#part) {
      case Part.START:
        if (byte === TLS_HANDSHAKE && this.#count === 0) {
          this.#part = Part.TLS_RECORD
          return Verdict.MORE
        }
        // empty lines (CRLF) before a request line: RFC 9112 2.2 asks a server to ignore at least
        // one (the engine's parser does); a few, so that the bytes held while deciding stay
        // bounded. Undecided until the LF: a CR alone is no empty line, and the parser, which
        // would skip it, must not be given one
        if (byte === CR) {
          this.#part = Part.LINE_FEED
          return ++this.#count > LONGEST_METHOD ? this.#done(Verdict.OTHER) : Verdict.MORE
        }
        if (!isUpper(byte)) return this.#done(Verdict.OTHER)
        this.#part = Part.METHOD
        this.#count = 1
        return Verdict.HTTP_PREFIX
      case Part.LINE_FEED:
        if (byte !== LF) return this.#done(Verdict.OTHER)
        this.#part = Part.START
        return ++this.#count > LONGEST_METHOD ? this.#done(Verdict.OTHER) : Verdict.HTTP_PREFIX
      case Part.TLS_RECORD:
        // the record version: SSL 3.0 to TLS 1.3 all write 3.x there
        return this.#done(byte === TLS_MAJOR ? Verdict.TLS : Verdict.OTHER)
      case Part.METHOD:
        if (byte === SPACE) {
          this.#part = Part.TARGET
          this.#count = 0
          return Verdict.HTTP_PREFIX
        }
        if (!isUpper(byte) && !isDigit(byte) && byte !== DASH && byte !== UNDERSCORE) {
          if (byte <= SPACE || byte >= DEL) return this.#done(Verdict.OTHER)
          this.#garbled = true
        }
        return ++this.#count > LONGEST_METHOD ? this.#done(Verdict.OTHER) : Verdict.HTTP_PREFIX
      case Part.TARGET:
        if (byte === SPACE) {
          if (this.#count === 0) return this.#done(Verdict.OTHER)
          this.#part = Part.VERSION
          this.#count = 0
          return Verdict.HTTP_PREFIX
        }
        // CR or LF here: a line that ended without a version (SMTP's HELO x, Redis's inline
        // commands); other control bytes: not a request target
        if (byte < SPACE || byte === DEL) return this.#done(Verdict.OTHER)
        // after a garbled method, only an origin-form, asterisk or absolute target keeps it HTTP
        // (an SSH banner's comment does not)
        if (this.#count === 0 && this.#garbled && byte !== 0x2f /* / */ && byte !== 0x2a /* * */ && byte !== 0x68 /* h */ && byte !== 0x48 /* H */) {
          return this.#done(Verdict.OTHER)
        }
        return ++this.#count > this.#maxTarget ? this.#done(Verdict.HTTP) : Verdict.HTTP_PREFIX
      case Part.VERSION:
        if (this.#count < VERSION.length) {
          return byte === VERSION[this.#count++] ? Verdict.HTTP_PREFIX : this.#done(Verdict.OTHER)
        }
        if (this.#count === VERSION.length) {
          this.#count++
          return isDigit(byte) ? Verdict.HTTP_PREFIX : this.#done(Verdict.OTHER)
        }
        return this.#done(byte === CR || byte === LF ? Verdict.HTTP : Verdict.OTHER)
      default:
        return this.verdict
    }
  }

  #done (verdict: Verdict): Verdict {
    this.#part = Part.DONE
    this.verdict = verdict
    return verdict
  }
}

/** Classify the bytes a client sent so far, in one piece (specs, tools). */
export function sniff (data: Buffer, maxTarget = 8192): Verdict {
  return new Sniffer(maxTarget).feed(data)
}
