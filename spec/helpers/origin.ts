/**
 * A recording origin on raw `net` sockets: it keeps the exact bytes each connection received,
 * frames the requests (Content-Length, chunked, pipelined), hashes their bodies, and answers with
 * whatever bytes the test's handler returns, or misbehaves on request (delay, close, never answer).
 */
import net from 'node:net'
import type { Readable } from 'node:stream'
import type { Test } from 'tap'
import { MessageReader, header, requestFraming, type Message } from './framing.js'
import { Observable } from './wait.js'

export interface OriginRequest extends Message {
  method: string
  url: string
  version: string
  connection: OriginConnection
  /** Position among all requests this origin received, from 0. */
  index: number
}

export interface ReplySpec {
  /** Written as is (a status line, headers and as much body as the test wants). */
  bytes?: string | Buffer
  /** Streamed after `bytes`, with backpressure (large downloads). */
  stream?: Readable
  /** Wait this long before answering, ms. */
  delay?: number
  /** After writing: 'end' closes gracefully (FIN), 'destroy' drops the socket, 'reset' sends a TCP RST. */
  close?: 'end' | 'destroy' | 'reset'
  /** Never answer (the connection stays open and the next requests on it stay unanswered). */
  never?: boolean
  /** After a 101: each chunk the proxy relays on the upgraded connection. */
  tunnel?: (data: Buffer, socket: net.Socket) => void
}

export type Reply = string | Buffer | ReplySpec
export type Handler = (request: OriginRequest) => Reply | Promise<Reply>

export interface OriginOptions {
  host?: string
  /** Listen on this port (another address's origin on the same port: one DNS name, several A records); 0 by default. */
  port?: number
  /** Bytes to write as soon as a request head arrives (e.g. `100 Continue`), before its body. */
  interim?: (request: Message) => string | undefined
  /** Read at most this many bytes per second (a slow reader: uploads must back up to the client). */
  readRate?: number
  /** Bodies and raw bytes are kept up to this size (hashes always cover everything). */
  keep?: number
}

export class OriginConnection {
  readonly id: number
  readonly socket: net.Socket
  readonly requests: OriginRequest[] = []
  /** Bytes relayed after an upgrade. */
  readonly tunnel: Buffer[] = []
  closed = false
  /** The proxy closed its side (FIN): with a request still unanswered, that is an abort. */
  ended = false
  /** Requests received and not answered yet; `peakPending` is the most at any moment. */
  pending = 0
  peakPending = 0
  readonly #chunks: Buffer[] = []
  #length = 0
  readonly #keep: number

  constructor (id: number, socket: net.Socket, keep: number) {
    this.id = id
    this.socket = socket
    this.#keep = keep
  }

  record (chunk: Buffer): void {
    if (this.#length + chunk.length <= this.#keep) this.#chunks.push(chunk)
    this.#length += chunk.length
  }

  /** Everything this connection received, exactly. */
  raw (): Buffer {
    return Buffer.concat(this.#chunks)
  }

  get receivedLength (): number { return this.#length }

  /** The proxy is done with this connection: it closed it, or at least its sending side. */
  get released (): boolean { return this.closed || this.ended }
}

export class Origin extends Observable {
  readonly server: net.Server
  readonly connections: OriginConnection[] = []
  readonly requests: OriginRequest[] = []
  handler: Handler
  port = 0
  /** Connections open now, and the most ever open at once. */
  open = 0
  peakOpen = 0
  readonly #options: OriginOptions

  constructor (handler: Handler, options: OriginOptions = {}) {
    super()
    this.setMaxListeners(0)
    this.handler = handler
    this.#options = options
    this.server = net.createServer({ allowHalfOpen: true }, socket => this.#accept(socket))
  }

  async listen (): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(this.#options.port ?? 0, this.#options.host ?? '127.0.0.1', () => resolve())
    })
    this.port = (this.server.address() as net.AddressInfo).port
    return this
  }

  /** `HOST:PORT` as a proxy target. */
  get target (): string {
    const host = this.#options.host ?? '127.0.0.1'
    return (host.includes(':') ? `[${host}]` : host) + ':' + this.port
  }

  /** Stop listening and drop every connection. */
  async close (): Promise<void> {
    for (const conn of this.connections) conn.socket.destroy()
    if (this.server.listening) await new Promise<void>(resolve => this.server.close(() => resolve()))
  }

  #accept (socket: net.Socket): void {
    const conn = new OriginConnection(this.connections.length, socket, this.#options.keep ?? 64 << 20)
    this.connections.push(conn)
    this.open++
    this.peakOpen = Math.max(this.peakOpen, this.open)
    socket.setNoDelay(true)
    const reader = new MessageReader(requestFraming, this.#options.keep)
    let answering: Promise<void> = Promise.resolve()
    let upgraded: ReplySpec | null = null

    reader.onHead = message => {
      const interim = this.#options.interim?.(message)
      if (interim !== undefined) socket.write(interim)
    }
    reader.onMessage = message => {
      const request: OriginRequest = Object.assign(message, {
        method: message.head.line[0],
        url: message.head.line[1],
        version: message.head.line[2],
        connection: conn,
        index: this.requests.length,
      })
      // later bytes of an upgrade request belong to the tunnel, whatever the handler answers
      if (header(message, 'upgrade') !== undefined) reader.tunnel()
      conn.requests.push(request)
      this.requests.push(request)
      conn.pending++
      conn.peakPending = Math.max(conn.peakPending, conn.pending)
      // answers leave in request order, each after the previous one was written
      answering = answering.then(async () => {
        const reply = await this.handler(request)
        const spec: ReplySpec = typeof reply === 'string' || Buffer.isBuffer(reply) ? { bytes: reply } : reply
        if (spec.tunnel !== undefined) upgraded = spec
        await this.#answer(conn, spec)
      }).catch(() => { socket.destroy() })
      this.changed()
    }
    reader.onTunnel = data => {
      conn.tunnel.push(Buffer.from(data))
      upgraded?.tunnel?.(data, socket)
      this.changed()
    }

    const rate = this.#options.readRate
    socket.on('data', (chunk: Buffer) => {
      conn.record(chunk)
      reader.push(chunk)
      this.changed()
      if (rate !== undefined) {
        socket.pause()
        setTimeout(() => socket.resume(), Math.ceil(chunk.length / rate * 1000))
      }
    })
    socket.on('end', () => {
      conn.ended = true
      this.changed()
      if (!conn.closed && !socket.destroyed && socket.writable && conn.pending === 0) socket.end()
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      conn.closed = true
      this.open--
      this.changed()
    })
    this.changed()
  }

  async #answer (conn: OriginConnection, spec: ReplySpec): Promise<void> {
    const socket = conn.socket
    if (spec.delay !== undefined) await new Promise(resolve => setTimeout(resolve, spec.delay))
    if (spec.never === true) return new Promise(() => {})
    const bytes = spec.bytes
    if (bytes !== undefined && bytes.length > 0 && !socket.destroyed) {
      // wait until the kernel has the bytes: a reset right after must not discard them
      await new Promise<void>(resolve => socket.write(bytes, () => resolve()))
    }
    if (spec.stream !== undefined && !socket.destroyed) {
      const stream = spec.stream
      await new Promise<void>((resolve, reject) => {
        stream.on('end', resolve)
        stream.on('error', reject)
        socket.on('close', () => { stream.destroy(); resolve() })
        stream.pipe(socket, { end: false })
      })
    }
    conn.pending--
    this.changed()
    if (spec.close === 'end') socket.end()
    else if (spec.close === 'destroy') socket.destroy()
    else if (spec.close === 'reset') {
      // a RST that lands in the same read as the last bytes is reported by Node as a plain end:
      // let the peer read the bytes first so that the reset is seen as one
      setTimeout(() => { if (!socket.destroyed) socket.resetAndDestroy() }, 20)
    }
  }
}

/** An origin listening on port 0, closed when the test ends. */
export async function startOrigin (t: Test, handler: Handler, options: OriginOptions = {}): Promise<Origin> {
  const origin = await new Origin(handler, options).listen()
  t.teardown(() => origin.close())
  return origin
}

/** A complete response with a Content-Length body. */
export function ok (body: string | Buffer = 'ok', headers: string[] = []): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body
  const head = ['HTTP/1.1 200 OK', ...headers, `Content-Length: ${b.length}`, '', ''].join('\r\n')
  return Buffer.concat([Buffer.from(head, 'latin1'), b])
}
