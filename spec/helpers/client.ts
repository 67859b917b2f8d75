/**
 * A raw HTTP client: it writes exactly the bytes a test gives it (whole, one byte at a time, or cut
 * at chosen offsets) and frames what comes back (Content-Length, chunked, close-delimited, no-body
 * statuses, 1xx interim responses, a 101 followed by raw bytes).
 *
 * It learns which responses answer a HEAD by framing its own outgoing bytes, so a test never has to
 * say which request was which.
 */
import net from 'node:net'
import { MessageReader, requestFraming, responseFraming, type Message } from './framing.js'
import { Observable, tick } from './wait.js'

export interface ConnectOptions {
  host?: string
  /** The client's own address (127.0.0.2 and so on: another client as far as rp4 can tell). */
  localAddress?: string
  /** Read at most this many bytes per second (a slow client: downloads must back up to the origin). */
  readRate?: number
  /** Bodies and raw bytes are kept up to this size (hashes always cover everything). */
  keep?: number
}

export class RawClient extends Observable {
  readonly socket: net.Socket
  readonly reader: MessageReader
  /** The peer sent FIN, and the socket is fully closed. */
  ended = false
  closed = false
  /** 'ECONNRESET' and the like, when the connection ended with an error. */
  error: string | null = null
  readonly #raw: Buffer[] = []
  #rawLength = 0
  readonly #keep: number
  readonly #methods: string[] = []
  readonly #tunnel: Buffer[] = []
  /** Frames this client's own requests, to know which responses answer a HEAD. */
  readonly #outgoing: MessageReader

  private constructor (socket: net.Socket, options: ConnectOptions) {
    super()
    this.setMaxListeners(0)
    this.socket = socket
    this.#keep = options.keep ?? 64 << 20
    const outgoing = new MessageReader(requestFraming, 0)
    outgoing.onHead = m => this.#methods.push(m.head.line[0])
    this.#outgoing = outgoing
    let finals = 0
    this.reader = new MessageReader(head => {
      const status = Number(head.line[1])
      const interim = status >= 100 && status < 200 && status !== 101
      const method = interim ? undefined : this.#methods[finals++]
      return responseFraming(head, method === 'HEAD')
    }, this.#keep)
    this.reader.onMessage = message => {
      if (message.head.line[1] === '101') this.reader.tunnel()
      this.changed()
    }
    this.reader.onTunnel = data => {
      this.#tunnel.push(Buffer.from(data))
      this.changed()
    }
    socket.on('data', (chunk: Buffer) => {
      if (this.#rawLength + chunk.length <= this.#keep) this.#raw.push(chunk)
      this.#rawLength += chunk.length
      this.reader.push(chunk)
      this.changed()
      if (options.readRate !== undefined) {
        socket.pause()
        setTimeout(() => socket.resume(), Math.ceil(chunk.length / options.readRate * 1000))
      }
    })
    socket.on('end', () => {
      this.ended = true
      this.reader.end()
      this.changed()
    })
    socket.on('error', (err: NodeJS.ErrnoException) => { this.error = err.code ?? err.message })
    socket.on('close', () => {
      this.closed = true
      this.reader.end()
      this.changed()
    })
  }

  static connect (port: number, options: ConnectOptions = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: options.host ?? '127.0.0.1', localAddress: options.localAddress })
      socket.setNoDelay(true)
      socket.once('error', reject)
      socket.once('connect', () => {
        socket.removeListener('error', reject)
        resolve(new RawClient(socket, options))
      })
    })
  }

  /** Final responses (1xx other than 101 left out), in order. */
  get responses (): Message[] {
    return this.reader.messages.filter(m => !isInterim(m))
  }

  /** 1xx responses other than 101, in order. */
  get interim (): Message[] {
    return this.reader.messages.filter(isInterim)
  }

  /** Everything received, exactly. */
  raw (): Buffer {
    return Buffer.concat(this.#raw)
  }

  text (): string {
    return this.raw().toString('latin1')
  }

  /** Bytes received after a 101. */
  tunnel (): Buffer {
    return Buffer.concat(this.#tunnel)
  }

  /** Write and wait until the bytes were handed to the kernel. */
  write (data: string | Buffer): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data
    if (!this.reader.tunneling) this.#outgoing.push(bytes)
    return new Promise(resolve => {
      if (this.socket.destroyed) resolve()
      else this.socket.write(bytes, () => resolve())
    })
  }

  /** One write per byte, with a turn of the event loop between writes. */
  async writeBytewise (data: string | Buffer): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data
    for (let i = 0; i < bytes.length && !this.socket.destroyed; i++) {
      await this.write(bytes.subarray(i, i + 1))
      await tick()
    }
  }

  /** Write in pieces cut at `offsets` (ascending), with a turn of the event loop between pieces. */
  async writeSplit (data: string | Buffer, offsets: number[]): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data
    let from = 0
    for (const cut of [...offsets, bytes.length]) {
      if (cut > from) {
        await this.write(bytes.subarray(from, cut))
        await tick()
      }
      from = cut
    }
  }

  /** Wait for `n` final responses, or for the connection to close first (then fewer come back). */
  async waitResponses (n: number, ms = 5000): Promise<Message[]> {
    await this.until(() => this.responses.length >= n || this.closed, ms, `${n} response(s)`)
    return this.responses
  }

  /** Wait for the `index`-th final response; rejects when the connection closes without it. */
  async response (index = 0, ms = 5000): Promise<Message> {
    const all = await this.waitResponses(index + 1, ms)
    if (all.length <= index) {
      throw new Error(`connection closed after ${all.length} response(s); received ${JSON.stringify(this.text().slice(0, 500))}`)
    }
    return all[index]
  }

  waitClose (ms = 5000): Promise<void> {
    return this.until(() => this.closed, ms, 'the connection to close')
  }

  end (): void {
    this.socket.end()
  }

  destroy (): void {
    this.socket.destroy()
  }

  /** Abort with a TCP RST: unlike a FIN, never mistaken for a half-close. */
  reset (): void {
    if (!this.socket.destroyed) this.socket.resetAndDestroy()
  }
}

function isInterim (m: Message): boolean {
  const status = Number(m.head.line[1])
  return status >= 100 && status < 200 && status !== 101
}

export interface ExchangeOptions extends ConnectOptions {
  /** Wait for this many final responses; without it, wait for the proxy to close the connection. */
  responses?: number
  /** 'byte': one byte per write; an array: cut at these offsets. */
  split?: 'byte' | number[]
  ms?: number
}

export interface ExchangeResult {
  responses: Message[]
  raw: Buffer
  text: string
  /** The connection was closed by the proxy (or reset) by the time the result was taken. */
  closed: boolean
  client: RawClient
}

/** Connect, send `data`, collect the answers; the connection is destroyed afterwards. */
export async function exchange (port: number, data: string | Buffer, options: ExchangeOptions = {}): Promise<ExchangeResult> {
  const client = await RawClient.connect(port, options)
  try {
    if (options.split === 'byte') await client.writeBytewise(data)
    else if (Array.isArray(options.split)) await client.writeSplit(data, options.split)
    else await client.write(data)
    if (options.responses !== undefined) await client.waitResponses(options.responses, options.ms)
    else await client.waitClose(options.ms)
    return { responses: client.responses, raw: client.raw(), text: client.text(), closed: client.closed, client }
  } finally {
    client.destroy()
  }
}
