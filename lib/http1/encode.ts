/**
 * Heads to HTTP/1.1 bytes, at the last moment: each head as one latin1 string written with one
 * call, and the body framing of each hop (a body is re-framed where the two hops differ: chunked
 * to an HTTP/1.0 client becomes raw bytes until close, a close-delimited body to an HTTP/1.1
 * client becomes chunked).
 */
import { latin1 } from '../core/bytes.js'
import { Header, classify, hasToken } from '../http/fields.js'
import { BodyKind } from '../http/validate.js'
import type { RequestHead, ResponseHead } from '../http/message.js'

/** Request line and headers, then `Connection: upgrade` for an upgrade, and the blank line. */
export function encodeRequestHead (head: RequestHead): string {
  const raw = head.headers.raw
  let out = head.method + ' ' + head.target + ' HTTP/1.1\r\n'
  for (let i = 0; i < raw.length; i += 2) out += raw[i] + ': ' + raw[i + 1] + '\r\n'
  if (head.upgrade) out += 'Connection: upgrade\r\n'
  return out + '\r\n'
}

/** How a response's body crosses to the client. */
export interface ResponseFraming {
  body: BodyKind
  /** The client connection closes after this response. */
  close: boolean
  /** The Transfer-Encoding header goes (chunked becomes raw bytes until close, or a 1xx/204 that carried one). */
  dropTransferEncoding: boolean
  /** `Transfer-Encoding: chunked` is added (the backend's body had no length, the client speaks 1.1). */
  addChunked: boolean
  /** The body's length when it is framed by Content-Length (`body` is LENGTH), else -1. */
  length: number
  /**
   * Content-Length goes: a filter set one that is no length (not digits, or several that differ),
   * or a 1xx or 204 carried one (RFC 9110 §8.6: never sent with them; a client that took it for a
   * body length would read the next response as this one's body).
   */
  dropContentLength: boolean
  /** How many entries of the head's `raw` are its field block's, unchanged (HeaderList.block): written in the block's kept form. */
  covered: number
}

/** A Content-Length value: digits only (no sign, no hex; blanks around allowed), at most 15 of them; else -1. */
function parseLength (value: string): number {
  let start = 0
  let end = value.length
  while (start < end && isBlank(value.charCodeAt(start))) start++
  while (end > start && isBlank(value.charCodeAt(end - 1))) end--
  if (end === start || end - start > 15) return -1
  let n = 0
  for (let i = start; i < end; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x30 || c > 0x39) return -1
    n = n * 10 + (c - 0x30)
  }
  return n
}

function isBlank (c: number): boolean { return c === 0x20 || c === 0x09 }

/**
 * @param requestMethod the method of the request this answers (HEAD responses carry no body)
 * @param clientHttp11 the client speaks HTTP/1.1 (else 1.0: no chunked, keep-alive only if asked)
 * @param keepClient the client connection may stay open after this response, as far as the request side is concerned
 * @param untilClose the backend's body runs until it closes its connection
 * @returns the framing, in an object that the next call reuses: read it at once
 */
export function frameResponse (head: ResponseHead, requestMethod: string, clientHttp11: boolean, keepClient: boolean, untilClose: boolean): ResponseFraming {
  const raw = head.headers.raw
  const status = head.status
  let chunked = false
  let transferEncoding = false
  let contentLength = false
  let length = -1
  let badLength = false
  const block = head.headers.block
  const covered = block !== null && block.covers(raw) ? block.fields.length : 0
  // a block without framing fields need not be read for them
  for (let i = block !== null && !block.framing ? covered : 0; i < raw.length; i += 2) {
    switch (classify(raw[i])) {
      case Header.TRANSFER_ENCODING: transferEncoding = true; chunked = hasToken(raw[i + 1], 'chunked'); break
      case Header.CONTENT_LENGTH: {
        // a backend's was checked by llhttp; one a filter set is checked here
        const value = parseLength(raw[i + 1])
        if (value === -1 || (contentLength && value !== length)) badLength = true
        contentLength = true
        length = value
        break
      }
    }
  }
  if (badLength) contentLength = false
  const noBody = requestMethod === 'HEAD' || status < 200 || status === 204 || status === 304
  let body: BodyKind
  if (noBody) body = BodyKind.NONE
  else if (chunked && !untilClose) body = clientHttp11 ? BodyKind.CHUNKED : BodyKind.UNTIL_CLOSE
  else if (contentLength && !untilClose) body = BodyKind.LENGTH
  else body = clientHttp11 ? BodyKind.CHUNKED : BodyKind.UNTIL_CLOSE
  const framing = FRAMING
  framing.body = body
  framing.close = !keepClient || body === BodyKind.UNTIL_CLOSE
  // a HEAD or 304 response describes the body it would carry: its framing headers stay
  framing.dropTransferEncoding = transferEncoding && ((chunked && body === BodyKind.UNTIL_CLOSE) || status < 200 || status === 204)
  framing.addChunked = body === BodyKind.CHUNKED && !chunked
  framing.length = body === BodyKind.LENGTH ? length : -1
  framing.dropContentLength = badLength || (contentLength && (status < 200 || status === 204))
  framing.covered = covered
  return framing
}

/** frameResponse's answer, one object for every call: read it before the next call (one per response head). */
const FRAMING: ResponseFraming = { body: BodyKind.NONE, close: false, dropTransferEncoding: false, addChunked: false, length: -1, dropContentLength: false, covered: 0 }

/** Field lines: `name: value` and CRLF each. */
function fieldLines (raw: readonly string[], from: number): string {
  let out = ''
  for (let i = from; i < raw.length; i += 2) out += raw[i] + ': ' + raw[i + 1] + '\r\n'
  return out
}

/**
 * `text` as one sequential string. Built by `+`, it is a tree of pieces that every head it goes
 * into would walk again when that head is written; kept, it is copied as one piece.
 */
function flat (text: string): string {
  const bytes = Buffer.from(text, 'latin1')
  return latin1(bytes, 0, bytes.length)
}

/** The status line last made for each status, with its reason: most responses reuse one. */
const statusLines: Array<{ reason: string, line: string } | undefined> = []

function statusLine (status: number, reason: string): string {
  const known = statusLines[status]
  if (known !== undefined && known.reason === reason) return known.line
  const line = 'HTTP/1.1 ' + status + ' ' + reason + '\r\n'
  // statuses are three digits (llhttp's and `respond`'s checks): the table stays small
  if (status >= 100 && status <= 999) statusLines[status] = { reason, line }
  return line
}

/** Status line, headers, the framing and Connection headers of this hop, the blank line. */
export function encodeResponseHead (head: ResponseHead, framing: ResponseFraming, clientHttp11: boolean): string {
  const raw = head.headers.raw
  const status = head.status
  let out = statusLine(status, head.reason)
  if (framing.dropTransferEncoding || framing.dropContentLength) {
    for (let i = 0; i < raw.length; i += 2) {
      if (framing.dropTransferEncoding && raw[i].length === 17 && classify(raw[i]) === Header.TRANSFER_ENCODING) continue
      if (framing.dropContentLength && raw[i].length === 14 && classify(raw[i]) === Header.CONTENT_LENGTH) continue
      out += raw[i] + ': ' + raw[i + 1] + '\r\n'
    }
  } else if (framing.covered > 0) {
    return blockHead(head, framing, clientHttp11)
  } else {
    out += fieldLines(raw, 0)
  }
  return out + ending(status, framing, clientHttp11)
}

/** The framing and Connection lines of this hop, and the blank line: by chunked added, then none, close, keep-alive. */
const ENDINGS: readonly (readonly string[])[] = [
  ['\r\n', 'Connection: close\r\n\r\n', 'Connection: keep-alive\r\n\r\n'],
  ['Transfer-Encoding: chunked\r\n\r\n', 'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n', 'Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n'],
]

function ending (status: number, framing: ResponseFraming, clientHttp11: boolean): string {
  const chunked = framing.addChunked
  if (status === 101) return chunked ? 'Transfer-Encoding: chunked\r\nConnection: upgrade\r\n\r\n' : 'Connection: upgrade\r\n\r\n'
  const connection = status < 200 ? 0 : framing.close ? 1 : clientHttp11 ? 0 : 2
  return ENDINGS[chunked ? 1 : 0][connection]
}

/**
 * What the encoder keeps on a field block (FieldBlock.encoded): its field lines, and the last
 * whole head made with them, with what it was made of. A file or a stored response answered
 * again and again has the same status, the same fields after the block (its Content-Length) and
 * the same ending: the head is then the very string made last time.
 */
interface KeptForm {
  readonly lines: string
  status: number
  reason: string
  tail: string[]
  ending: string
  head: string
  /** `head` was made one string (on its first reuse: a head made once is not worth the copy). */
  flat: boolean
  /** The body last sent after `head` (keptWhole), and the two joined once it came again. */
  body: Buffer | null
  wire: Buffer | null
}

function blockHead (head: ResponseHead, framing: ResponseFraming, clientHttp11: boolean): string {
  const block = head.headers.block!
  const raw = head.headers.raw
  const from = framing.covered
  const status = head.status
  const end = ending(status, framing, clientHttp11)
  let kept = block.encoded as KeptForm | null
  if (kept === null) {
    kept = { lines: flat(fieldLines(block.fields, 0)), status: 0, reason: '', tail: [], ending: '', head: '', flat: false, body: null, wire: null }
    block.encoded = kept
  } else if (kept.status === status && kept.reason === head.reason && kept.ending === end && sameTail(kept.tail, raw, from)) {
    if (!kept.flat) {
      kept.head = flat(kept.head)
      kept.flat = true
    }
    return kept.head
  }
  const text = statusLine(status, head.reason) + kept.lines + fieldLines(raw, from) + end
  kept.status = status
  kept.reason = head.reason
  kept.tail = raw.slice(from)
  kept.ending = end
  kept.head = text
  kept.flat = false
  kept.body = null
  kept.wire = null
  return text
}

/**
 * Bodies up to this size may be kept joined to their head (keptWhole); a larger one is written as
 * it is, without a copy. What keeps blocks counts the copy in its memory bound (`keptWholeCost`).
 */
export const KEPT_WHOLE_LIMIT = 16 * 1024

/** The memory a block's kept whole response may take beside a body of `length` bytes: the copy and its head. */
export function keptWholeCost (length: number, fieldBytes: number): number {
  return length <= KEPT_WHOLE_LIMIT ? length + fieldBytes + 256 : 0
}

/**
 * `head` and `body` as one buffer, for a body its caller never changes (ResponseSink.whole): kept
 * with the head's block once the same head came with the same body Buffer twice in a row, and
 * that very buffer again for as long as they do. Otherwise the head's text (encodeResponseHead's),
 * for the caller to write with the body as usual.
 */
export function keptWhole (head: ResponseHead, framing: ResponseFraming, clientHttp11: boolean, body: Buffer): Buffer | string {
  if (body.length > KEPT_WHOLE_LIMIT || framing.covered === 0 || framing.dropTransferEncoding || framing.dropContentLength ||
    framing.body !== BodyKind.LENGTH || framing.length !== body.length) return encodeResponseHead(head, framing, clientHttp11)
  const text = blockHead(head, framing, clientHttp11)
  const kept = head.headers.block!.encoded as KeptForm
  // a head made just now (this response's own, or the first of a run) is not joined yet
  if (!kept.flat || text !== kept.head) return text
  if (kept.body !== body) {
    kept.body = body
    kept.wire = null
    return text
  }
  if (kept.wire === null) {
    const wire = Buffer.allocUnsafeSlow(text.length + body.length)
    body.copy(wire, wire.write(text, 0, 'latin1'))
    kept.wire = wire
  }
  return kept.wire
}

function sameTail (tail: readonly string[], raw: readonly string[], from: number): boolean {
  if (raw.length - from !== tail.length) return false
  for (let i = 0; i < tail.length; i++) if (tail[i] !== raw[from + i]) return false
  return true
}

export const CRLF = Buffer.from('\r\n')
/** The last-chunk and an empty trailer section. */
export const LAST_CHUNK = Buffer.from('0\r\n\r\n')

/** The size line of one chunk. The data and a CRLF follow it. */
export function chunkHeader (size: number): string {
  return size.toString(16) + '\r\n'
}
