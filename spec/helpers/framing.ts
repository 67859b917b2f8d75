/**
 * Just enough HTTP/1.1 framing for the test origin and the raw client: split a byte stream into
 * messages (head, body by Content-Length / chunked / close / none) and keep what a test asserts
 * on: the exact bytes of each message, the de-chunked body and its SHA-256.
 *
 * Deliberately independent of lib/: a framing bug in the engine must not be hidden by the same
 * bug in the tool that checks it.
 */
import { createHash, type Hash } from 'node:crypto'

export interface Head {
  /** The three parts of the start line: method, target, version (request) or version, status, reason. */
  line: [string, string, string]
  /** Header fields in order, names as sent. */
  headers: Array<[string, string]>
  /** The head exactly as received, including the empty line. */
  text: string
}

export type Framing =
  | { kind: 'none' }
  | { kind: 'length', length: number }
  | { kind: 'chunked' }
  | { kind: 'close' }

export interface Message {
  head: Head
  framing: Framing['kind']
  /** De-chunked body (kept up to the reader's limit; `bodyLength` and `sha256` always cover all of it). */
  body: Buffer
  bodyLength: number
  sha256: string
  /** Chunk sizes as received, for chunked bodies. */
  chunks: number[]
  trailers: Array<[string, string]>
  /** The whole message as received (kept up to the reader's limit). */
  raw: Buffer
  complete: boolean
}

/** First value of a header, case-insensitively. */
export function header (message: Message | Head, name: string): string | undefined {
  const head = 'head' in message ? message.head : message
  const lower = name.toLowerCase()
  return head.headers.find(([n]) => n.toLowerCase() === lower)?.[1]
}

export function headerCount (message: Message, name: string): number {
  const lower = name.toLowerCase()
  return message.head.headers.filter(([n]) => n.toLowerCase() === lower).length
}

/** Framing of a request body: chunked wins over Content-Length, neither means no body. */
export function requestFraming (head: Head): Framing {
  const te = header(head, 'transfer-encoding')
  if (te !== undefined && /(^|,)\s*chunked\s*$/i.test(te)) return { kind: 'chunked' }
  const cl = header(head, 'content-length')
  if (cl !== undefined) return { kind: 'length', length: Number(cl) }
  return { kind: 'none' }
}

/** Framing of a response body, which depends on the request method and the status. */
export function responseFraming (head: Head, requestWasHead: boolean): Framing {
  const status = Number(head.line[1])
  if (requestWasHead || (status >= 100 && status < 200) || status === 204 || status === 304) return { kind: 'none' }
  const te = header(head, 'transfer-encoding')
  if (te !== undefined && /(^|,)\s*chunked\s*$/i.test(te)) return { kind: 'chunked' }
  const cl = header(head, 'content-length')
  if (cl !== undefined) return { kind: 'length', length: Number(cl) }
  return { kind: 'close' }
}

function parseHead (bytes: Buffer): Head {
  const text = bytes.toString('latin1')
  const lines = text.slice(0, -4).split('\r\n')
  const first = lines[0]
  const a = first.indexOf(' ')
  const b = first.indexOf(' ', a + 1)
  const line: [string, string, string] = b === -1
    ? [first.slice(0, a), first.slice(a + 1), '']
    : [first.slice(0, a), first.slice(a + 1, b), first.slice(b + 1)]
  const headers = lines.slice(1).map((l): [string, string] => {
    const colon = l.indexOf(':')
    return [l.slice(0, colon), l.slice(colon + 1).trim()]
  })
  return { line, headers, text }
}

const EMPTY = Buffer.alloc(0)
type State = 'head' | 'length' | 'close' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailers'

/**
 * Incremental reader. `decide` picks the framing once a head is parsed; `onMessage` sees every
 * completed message. After `tunnel()`, bytes go to `onTunnel` unparsed (an upgraded connection).
 */
export class MessageReader {
  readonly messages: Message[] = []
  /** The message being read, if any: after `end()`, a message the peer cut short. */
  current: Message | null = null
  onHead: ((message: Message) => void) | null = null
  onMessage: ((message: Message) => void) | null = null
  onTunnel: ((data: Buffer) => void) | null = null
  /** Bytes that could not be framed (the reader stops there). */
  error: string | null = null

  #state: State = 'head'
  #pending: Buffer = EMPTY
  #remaining = 0
  #hash: Hash | null = null
  #body: Buffer[] = []
  #raw: Buffer[] = []
  #rawLength = 0
  #tunnel = false
  readonly #decide: (head: Head) => Framing
  readonly #keep: number

  constructor (decide: (head: Head) => Framing, keep = 64 << 20) {
    this.#decide = decide
    this.#keep = keep
  }

  get tunneling (): boolean { return this.#tunnel }

  /** From now on, bytes (including any already buffered after the last message) are raw. */
  tunnel (): void {
    this.#tunnel = true
    const rest = this.#pending
    this.#pending = EMPTY
    if (rest.length > 0) this.onTunnel?.(rest)
  }

  push (chunk: Buffer): void {
    if (this.error !== null) return
    if (this.#tunnel) {
      this.onTunnel?.(chunk)
      return
    }
    const buf = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : chunk
    this.#pending = EMPTY
    let off = 0
    while (off < buf.length && this.error === null) {
      if (this.#tunnel) {
        this.onTunnel?.(buf.subarray(off))
        return
      }
      switch (this.#state) {
        case 'head': {
          const end = buf.indexOf('\r\n\r\n', off, 'latin1')
          if (end === -1) {
            this.#pending = buf.subarray(off)
            if (this.#pending.length > 1 << 20) this.error = 'head larger than 1 MB'
            return
          }
          this.#start(buf.subarray(off, end + 4))
          off = end + 4
          break
        }
        case 'length':
        case 'chunk-data': {
          const take = Math.min(this.#remaining, buf.length - off)
          this.#addBody(buf.subarray(off, off + take))
          off += take
          this.#remaining -= take
          if (this.#remaining === 0) {
            if (this.#state === 'length') this.#finish()
            else this.#state = 'chunk-crlf'
          }
          break
        }
        case 'close':
          this.#addBody(buf.subarray(off))
          off = buf.length
          break
        case 'chunk-crlf':
        case 'chunk-size':
        case 'trailers': {
          const eol = buf.indexOf('\r\n', off, 'latin1')
          if (eol === -1) {
            this.#pending = buf.subarray(off)
            return
          }
          const line = buf.subarray(off, eol).toString('latin1')
          this.#addRaw(buf.subarray(off, eol + 2))
          off = eol + 2
          this.#line(line)
          break
        }
      }
    }
  }

  /** The peer closed: a close-delimited message completes, anything else stays incomplete. */
  end (): void {
    if (this.current !== null && this.#state === 'close') this.#finish()
  }

  #line (line: string): void {
    const message = this.current!
    if (this.#state === 'chunk-crlf') {
      if (line !== '') this.error = `missing CRLF after chunk data: ${JSON.stringify(line)}`
      this.#state = 'chunk-size'
    } else if (this.#state === 'chunk-size') {
      const size = parseInt(line.split(';')[0], 16)
      if (!/^[0-9a-fA-F]+/.test(line) || Number.isNaN(size)) {
        this.error = `bad chunk size line ${JSON.stringify(line)}`
        return
      }
      message.chunks.push(size)
      if (size === 0) this.#state = 'trailers'
      else {
        this.#state = 'chunk-data'
        this.#remaining = size
      }
    } else if (line === '') {
      this.#finish()
    } else {
      const colon = line.indexOf(':')
      message.trailers.push([line.slice(0, colon), line.slice(colon + 1).trim()])
    }
  }

  #start (headBytes: Buffer): void {
    const head = parseHead(headBytes)
    const framing = this.#decide(head)
    this.current = {
      head, framing: framing.kind, body: EMPTY, bodyLength: 0, sha256: '', chunks: [], trailers: [], raw: EMPTY, complete: false,
    }
    this.#hash = createHash('sha256')
    this.#body = []
    this.#raw = []
    this.#rawLength = 0
    this.#addRaw(headBytes)
    this.onHead?.(this.current)
    switch (framing.kind) {
      case 'none': this.#finish(); break
      case 'close': this.#state = 'close'; break
      case 'chunked': this.#state = 'chunk-size'; break
      case 'length':
        if (!Number.isInteger(framing.length) || framing.length < 0) this.error = 'bad Content-Length'
        else if (framing.length === 0) this.#finish()
        else {
          this.#state = 'length'
          this.#remaining = framing.length
        }
    }
  }

  #addBody (bytes: Buffer): void {
    const message = this.current!
    this.#hash!.update(bytes)
    if (message.bodyLength + bytes.length <= this.#keep) this.#body.push(Buffer.from(bytes))
    message.bodyLength += bytes.length
    this.#addRaw(bytes)
  }

  #addRaw (bytes: Buffer): void {
    if (this.#rawLength + bytes.length <= this.#keep) this.#raw.push(Buffer.from(bytes))
    this.#rawLength += bytes.length
  }

  /** The body and raw bytes received so far of an unfinished message. */
  snapshot (): Message | null {
    if (this.current === null) return null
    return { ...this.current, body: Buffer.concat(this.#body), raw: Buffer.concat(this.#raw) }
  }

  #finish (): void {
    const message = this.current!
    message.body = Buffer.concat(this.#body)
    message.raw = Buffer.concat(this.#raw)
    message.sha256 = this.#hash!.digest('hex')
    message.complete = true
    this.current = null
    this.#state = 'head'
    this.messages.push(message)
    this.onMessage?.(message)
  }
}
