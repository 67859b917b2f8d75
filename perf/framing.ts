/**
 * Incremental HTTP/1.1 message framing for the benchmark's own origin and load generator.
 *
 * It finds where each message ends (head up to CRLFCRLF, then a Content-Length or chunked
 * body) and nothing more: the harness must stay cheap per byte so that the proxy, not the
 * measuring tools, is what saturates. Bodies are skipped, never copied; only a head that is
 * split across reads is buffered.
 */

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1')
const MAX_HEAD = 64 * 1024
const MAX_LINE = 4096

/** What the origin and the load generator need from a head; the rest is ignored. */
export interface Head {
  /** The request line or the status line, without CRLF. */
  startLine: string
  /** Response status code, or 0 for a request. */
  status: number
  /** Body length from Content-Length; -1 when absent. */
  contentLength: number
  chunked: boolean
  /** `Connection: close` was sent, or an HTTP/1.0 message without keep-alive. */
  close: boolean
  /** Bytes of the head on the wire, CRLFCRLF included. */
  headBytes: number
  /** The header lines after the start line, lowercased (CRLF before each), for the few tools that read more. */
  fields: string
}

export interface FramerEvents {
  onHead: (head: Head) => void
  onEnd: () => void
  /** Body bytes (de-chunked), for the tools that check them; the benchmark's own origin and loadgen leave it out. */
  onBody?: (data: Buffer) => void
}

export class FramingError extends Error {}

const enum State { Head, Body, UntilClose, ChunkSize, ChunkData, ChunkDataEnd, Trailers }

export class MessageFramer {
  private state = State.Head
  /** A head or chunk-size/trailer line that did not fit in one read. */
  private partial: Buffer | null = null
  private remaining = 0

  constructor (private readonly kind: 'request' | 'response', private readonly events: FramerEvents) {}

  /** True between a head and the end of its body. */
  get inMessage (): boolean {
    return this.state !== State.Head || this.partial !== null
  }

  push (chunk: Buffer): void {
    let data = chunk
    let pos = 0
    if (this.partial !== null) {
      data = Buffer.concat([this.partial, chunk])
      this.partial = null
    }
    while (pos < data.length) {
      switch (this.state) {
        case State.Head: {
          const end = data.indexOf(CRLFCRLF, pos)
          if (end === -1) return this.keep(data, pos, MAX_HEAD, 'head')
          const head = this.parseHead(data.toString('latin1', pos, end), end + 4 - pos)
          pos = end + 4
          this.events.onHead(head)
          this.startBody(head)
          break
        }
        case State.Body: {
          const take = Math.min(this.remaining, data.length - pos)
          this.events.onBody?.(data.subarray(pos, pos + take))
          pos += take
          this.remaining -= take
          if (this.remaining === 0) this.finish()
          break
        }
        case State.UntilClose:
          return
        case State.ChunkSize:
        case State.Trailers: {
          const eol = data.indexOf(10, pos) // LF; the CR before it is dropped below
          if (eol === -1) return this.keep(data, pos, MAX_LINE, 'chunk line')
          const line = data.toString('latin1', pos, eol).replace(/\r$/, '')
          pos = eol + 1
          if (this.state === State.Trailers) {
            if (line === '') this.finish()
          } else {
            const size = parseInt(line, 16) // chunk extensions after ';' are ignored by parseInt
            if (Number.isNaN(size) || size < 0) throw new FramingError(`bad chunk size line "${line.slice(0, 40)}"`)
            if (size === 0) this.state = State.Trailers
            else {
              this.remaining = size
              this.state = State.ChunkData
            }
          }
          break
        }
        case State.ChunkData: {
          const take = Math.min(this.remaining, data.length - pos)
          this.events.onBody?.(data.subarray(pos, pos + take))
          pos += take
          this.remaining -= take
          if (this.remaining === 0) {
            this.remaining = 2
            this.state = State.ChunkDataEnd
          }
          break
        }
        case State.ChunkDataEnd: {
          const take = Math.min(this.remaining, data.length - pos)
          pos += take
          this.remaining -= take
          if (this.remaining === 0) this.state = State.ChunkSize
          break
        }
      }
    }
  }

  /** The peer closed: a response framed by the close itself ends here. Returns whether it did. */
  close (): boolean {
    if (this.state === State.UntilClose) {
      this.finish()
      return true
    }
    return false
  }

  private keep (data: Buffer, pos: number, limit: number, what: string): void {
    if (data.length - pos > limit) throw new FramingError(`${what} longer than ${limit} bytes`)
    // copy: the caller's buffer may be a slice of a larger pooled allocation
    this.partial = Buffer.from(data.subarray(pos))
  }

  private startBody (head: Head): void {
    if (head.chunked) {
      this.state = State.ChunkSize
    } else if (head.contentLength > 0) {
      this.remaining = head.contentLength
      this.state = State.Body
    } else if (this.kind === 'response' && head.contentLength === -1 && !noBody(head.status)) {
      this.state = State.UntilClose
    } else {
      this.finish()
    }
  }

  private finish (): void {
    this.state = State.Head
    this.events.onEnd()
  }

  private parseHead (text: string, headBytes: number): Head {
    const lineEnd = text.indexOf('\r\n')
    const startLine = lineEnd === -1 ? text : text.slice(0, lineEnd)
    let status = 0
    let http10: boolean
    if (this.kind === 'response') {
      const match = /^HTTP\/1\.([01]) (\d{3})/.exec(startLine)
      if (match === null) throw new FramingError(`bad status line "${startLine.slice(0, 60)}"`)
      http10 = match[1] === '0'
      status = Number(match[2])
    } else {
      http10 = startLine.endsWith('HTTP/1.0')
      if (!/ HTTP\/1\.[01]$/.test(startLine)) throw new FramingError(`bad request line "${startLine.slice(0, 60)}"`)
    }
    const lower = lineEnd === -1 ? '' : text.slice(lineEnd).toLowerCase()
    const contentLength = headerValue(lower, '\r\ncontent-length:')
    const transfer = headerValue(lower, '\r\ntransfer-encoding:')
    const connection = headerValue(lower, '\r\nconnection:')
    const length = contentLength === null ? -1 : Number(contentLength)
    if (contentLength !== null && !(Number.isSafeInteger(length) && length >= 0)) {
      throw new FramingError(`bad Content-Length "${contentLength}"`)
    }
    const close = connection === null ? http10 : connection.includes('close') || (http10 && !connection.includes('keep-alive'))
    return {
      startLine,
      status,
      contentLength: length,
      chunked: transfer !== null && transfer.includes('chunked'),
      close,
      headBytes,
      fields: lower,
    }
  }
}

/** The trimmed value of the first header named by `marker` ("\r\nname:"), lower-cased. */
function headerValue (lower: string, marker: string): string | null {
  const at = lower.indexOf(marker)
  if (at === -1) return null
  const start = at + marker.length
  const end = lower.indexOf('\r\n', start)
  return lower.slice(start, end === -1 ? undefined : end).trim()
}

function noBody (status: number): boolean {
  return status === 204 || status === 304 || (status >= 100 && status < 200)
}
