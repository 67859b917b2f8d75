/**
 * HTTP/1.x message parser: llhttp events gathered into one head per message, then body views and
 * the end of the message, handed to a `MessageSink`. Works whatever way the bytes are split
 * across chunks: spans cut by a chunk boundary are joined here.
 */
import { clock } from '../core/clock.js'
import { latin1 } from '../core/bytes.js'
import { CB_ERROR, CB_OK, Errno, Llhttp, ParserType, type ParserCallbacks } from './llhttp.js'
import { upgradesOnlyToH2c } from '../http/fields.js'
import { type MessageHead } from './head.js'

export interface MessageSink {
  /** The head is complete. Returns a HeadersResult, CB_PAUSE or CB_ERROR. */
  onHead (head: MessageHead): number
  /** A piece of the (de-chunked) body: a view of the socket chunk, valid while the chunk is. */
  onBody (body: Buffer): number
  onMessageComplete (): number
}

const enum Span { NONE, FIELD, VALUE }

/** Why the parser stopped with an error that llhttp did not find itself. */
export const enum LimitError { NONE, HEAD_TOO_LARGE, URL_TOO_LONG, TOO_MANY_HEADERS }

/** Bytes of a chunk converted to text at once for the spans of a head (see `#spanText`). */
const TEXT_WINDOW = 2048

/** The most of a refused request's target that its report keeps: the target may be the very thing refused (414). */
export const PARTIAL_URL_MAX = 256

export class HttpParser implements ParserCallbacks {
  readonly #llhttp: Llhttp
  readonly #sink: MessageSink
  readonly #maxHeaderSize: number
  readonly #maxUrlSize: number
  /** Most header fields, times two (the flat name/value array's length). */
  readonly #maxHeaderFields: number
  readonly #type: ParserType

  #inHead = false
  #span = Span.NONE
  #size = 0
  #url = ''
  /** The request's method, once llhttp has parsed it (it knows it when the target begins); '' before. */
  #method = ''
  /** When the current request's first byte was parsed (clock ms). */
  #startedAt = 0
  /** The head handed to the sink, one object for every message: valid during `onHead` only. */
  readonly #head: MessageHead = { method: '', url: '', status: 0, reason: '', versionMajor: 1, versionMinor: 1, headers: EMPTY_HEADERS, keepAlive: false, upgrade: false }
  #reason = ''
  #headers: string[] = []
  /** The message being parsed asked for an h2c upgrade only: llhttp's upgrade pause is lifted. */
  #h2cOnly = false
  /** Where in the chunk given to `execute` the last llhttp run started (after lifted upgrade pauses). */
  #base = 0
  /** Set when a callback refused the message for a reason of ours. */
  limitError = LimitError.NONE

  constructor (type: ParserType, sink: MessageSink, maxHeaderSize: number, maxUrlSize = maxHeaderSize, maxHeaders = 1000) {
    this.#type = type
    this.#llhttp = new Llhttp(type, this)
    this.#sink = sink
    this.#maxHeaderSize = maxHeaderSize
    this.#maxUrlSize = maxUrlSize
    this.#maxHeaderFields = maxHeaders * 2
  }

  execute (chunk: Buffer): number {
    const llhttp = this.#llhttp
    this.#base = 0
    let ret = llhttp.execute(chunk)
    // llhttp stops after any request with `Connection: upgrade` and an Upgrade header; one that
    // asked for h2c alone was served as a plain request, and the connection goes on in HTTP/1.1
    while (ret === Errno.PAUSED_UPGRADE && this.#h2cOnly) {
      this.#h2cOnly = false
      this.#base += llhttp.errorOffset()
      llhttp.resumeAfterUpgrade()
      ret = llhttp.execute(chunk.subarray(this.#base))
    }
    // the chunk is the socket's: not kept past its parse
    this.#textChunk = null
    this.#text = ''
    return ret
  }

  /**
   * The chunk's bytes `start..end` as a string. A head's spans (target, names, values) lie close
   * together: one latin1 conversion of a window of the chunk serves them all, each span being a
   * substring of it, instead of a conversion per span (each a call into Node's C++).
   */
  #spanText (chunk: Buffer, start: number, end: number): string {
    if (chunk !== this.#textChunk || start < this.#textStart || end > this.#textEnd) {
      const windowEnd = Math.min(chunk.length, Math.max(end, start + TEXT_WINDOW))
      this.#text = latin1(chunk, start, windowEnd)
      this.#textChunk = chunk
      this.#textStart = start
      this.#textEnd = windowEnd
    }
    return this.#text.slice(start - this.#textStart, end - this.#textStart)
  }

  /** The chunk being parsed, and the window of it converted to `#text` (bytes `#textStart..#textEnd`). */
  #textChunk: Buffer | null = null
  #text = ''
  #textStart = 0
  #textEnd = 0

  finish (): number { return this.#llhttp.finish() }
  resume (): void { this.#llhttp.resume() }
  /** Where in the chunk given to the last `execute` parsing stopped. */
  errorOffset (): number { return this.#base + this.#llhttp.errorOffset() }
  get needsEof (): boolean { return this.#llhttp.needsEof }
  destroy (): void { this.#llhttp.destroy() }
  /** True between the start of a message and the end of its head: bytes of a request are pending. */
  get inHead (): boolean { return this.#inHead }
  /** When the request whose head is being received began (clock ms); 0 outside a head. */
  get headStartedAt (): number { return this.#inHead ? this.#startedAt : 0 }

  /**
   * The request whose head is being received, as far as it was parsed, for the report of a
   * request refused before its head completed: `-` for what did not arrive (or outside a head),
   * the target cut to PARTIAL_URL_MAX characters with `...` marking the cut.
   */
  partialHead (): MessageHead {
    const inHead = this.#inHead
    const method = inHead && this.#method !== '' ? this.#method : '-'
    let url = inHead && this.#url !== '' ? this.#url : '-'
    if (url.length > PARTIAL_URL_MAX) url = url.slice(0, PARTIAL_URL_MAX) + '...'
    return { method, url, status: 0, reason: '', versionMajor: 1, versionMinor: 1, headers: EMPTY_HEADERS, keepAlive: false, upgrade: false }
  }

  /** A one-line description of the last parse error, for logs and events. */
  describeError (errno: number): string {
    if (errno === Errno.USER || this.limitError !== LimitError.NONE) {
      if (this.limitError === LimitError.HEAD_TOO_LARGE) return 'head larger than ' + this.#maxHeaderSize + ' bytes'
      if (this.limitError === LimitError.URL_TOO_LONG) return 'request target longer than ' + this.#maxUrlSize + ' bytes'
      if (this.limitError === LimitError.TOO_MANY_HEADERS) return 'more than ' + this.#maxHeaderFields / 2 + ' header fields'
    }
    return Llhttp.errorName(errno) + ': ' + this.#llhttp.errorReason()
  }

  onMessageBegin (): number {
    this.#inHead = true
    this.#span = Span.NONE
    this.#size = 0
    this.#url = ''
    this.#method = ''
    this.#reason = ''
    this.#headers = []
    if (this.#type === ParserType.REQUEST) this.#startedAt = clock.turn()
    return CB_OK
  }

  onUrl (chunk: Buffer, start: number, end: number): number {
    this.#size += end - start
    if (this.#method === '') this.#method = this.#llhttp.method
    if (this.#url.length + end - start > this.#maxUrlSize) {
      // its beginning is kept for the refusal's report: one character more than it shows, so that the cut is marked
      this.#url += chunk.toString('latin1', start, start + Math.min(end - start, PARTIAL_URL_MAX + 1))
      return this.#refuse(LimitError.URL_TOO_LONG)
    }
    this.#url += this.#spanText(chunk, start, end)
    return CB_OK
  }

  onStatus (chunk: Buffer, start: number, end: number): number {
    this.#size += end - start
    if (this.#size > this.#maxHeaderSize) return this.#refuse(LimitError.HEAD_TOO_LARGE)
    this.#reason += this.#spanText(chunk, start, end)
    return CB_OK
  }

  onHeaderField (chunk: Buffer, start: number, end: number): number {
    if (!this.#inHead) return CB_OK // trailer fields: not forwarded
    this.#size += end - start + 4 // ": " and CRLF count toward the limit too
    if (this.#size > this.#maxHeaderSize) return this.#refuse(LimitError.HEAD_TOO_LARGE)
    const headers = this.#headers
    if (this.#span === Span.FIELD) {
      headers[headers.length - 2] += this.#spanText(chunk, start, end)
    } else {
      if (headers.length >= this.#maxHeaderFields) return this.#refuse(LimitError.TOO_MANY_HEADERS)
      headers.push(this.#spanText(chunk, start, end), '')
      this.#span = Span.FIELD
    }
    return CB_OK
  }

  onHeaderValue (chunk: Buffer, start: number, end: number): number {
    if (!this.#inHead) return CB_OK
    this.#size += end - start
    if (this.#size > this.#maxHeaderSize) return this.#refuse(LimitError.HEAD_TOO_LARGE)
    this.#headers[this.#headers.length - 1] += this.#spanText(chunk, start, end)
    this.#span = Span.VALUE
    return CB_OK
  }

  onHeadersComplete (statusCode: number, upgrade: boolean, keepAlive: boolean): number {
    this.#inHead = false
    const llhttp = this.#llhttp
    const method = this.#type === ParserType.REQUEST ? (this.#method !== '' ? this.#method : llhttp.method) : ''
    if (upgrade && method !== '' && method !== 'CONNECT' && upgradesOnlyToH2c(this.#headers)) {
      upgrade = false
      this.#h2cOnly = true
    }
    const head = this.#head
    head.method = method
    head.url = this.#url
    head.status = statusCode
    head.reason = this.#reason
    head.versionMajor = llhttp.httpMajor
    head.versionMinor = llhttp.httpMinor
    head.headers = this.#headers
    head.keepAlive = keepAlive
    head.upgrade = upgrade
    this.#headers = EMPTY_HEADERS
    const result = this.#sink.onHead(head)
    head.headers = EMPTY_HEADERS
    return result
  }

  onBody (body: Buffer): number { return this.#sink.onBody(body) }

  onMessageComplete (): number {
    this.#inHead = false
    return this.#sink.onMessageComplete()
  }

  #refuse (reason: LimitError): number {
    this.limitError = reason
    return CB_ERROR
  }
}

const EMPTY_HEADERS: string[] = []
