/**
 * Mixed traffic that checks every byte: keep-alive connections, some of them pipelining several
 * requests, uploads and downloads from nothing to several MiB (Content-Length and chunked both
 * ways), and an origin that answers some requests late so that responses come back out of order
 * across upstream connections. Every response is checked: in request order, status 200, the
 * SHA-256 of the upload as the origin saw it, and the SHA-256 of the download.
 *
 * Bounded in count and time: the run ends when every request is answered, when no response
 * arrives for `stallMs` (a stall: reported with what each connection was waiting for), or at
 * `timeoutMs`. Deterministic for a seed: sizes, modes and delays come from one PRNG.
 *
 * Used by the spec that guards against lost or stuck responses, and by the harness
 * (`node dist/perf/run.js --torture`) against rp4, nginx and HAProxy alike.
 *
 *   node dist/perf/torture.js origin [--port N]          an origin; prints "torture origin on HOST:PORT"
 *   node dist/perf/torture.js client --port P [options]  one run; prints a TortureResult as JSON
 */
import { createHash, type Hash } from 'node:crypto'
import net from 'node:net'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { MessageFramer, type Head } from './framing.js'
import { prng } from './random.js'

export interface TortureOptions {
  port: number
  host?: string
  /** Keep-alive connections in all. */
  connections: number
  /** How many of them pipeline (each 2 to maxDepth requests in flight); the others send one at a time. */
  pipelined: number
  maxDepth: number
  /** How many connections read slowly (a pause after every read), so that the proxy's writes to them back up. */
  slowReaders: number
  /** Requests in all, shared by the connections. */
  requests: number
  /** Largest upload and download, bytes. */
  maxBody: number
  seed: number
  /** A run with no response for this long is a stall, ms. */
  stallMs: number
  /** The whole run, ms. */
  timeoutMs: number
}

export const TORTURE_DEFAULTS: Omit<TortureOptions, 'port'> = {
  connections: 64,
  pipelined: 16,
  maxDepth: 8,
  slowReaders: 8,
  requests: 2000,
  maxBody: 4 << 20,
  seed: 1,
  stallMs: 15_000,
  timeoutMs: 120_000,
}

export interface TortureResult {
  requests: number
  completed: number
  /** The first few mismatches (order, status, hashes) and connection failures. */
  failures: string[]
  failureCount: number
  /** No response for stallMs, or the run's time ran out: what each connection still waited for. */
  stalled: string | null
  durationMs: number
  /** Request and response body bytes. */
  bytesUp: number
  bytesDown: number
}

const WINDOW = 64 * 1024

/** Bytes every body is a slice of: random content, the same in the client and the origin whatever the run's seed. */
function block (maxBody: number): Buffer {
  const random = prng(0x5eed)
  const words = new Uint32Array(Math.ceil((maxBody + WINDOW) / 4))
  for (let i = 0; i < words.length; i++) words[i] = (random() * 4294967296) >>> 0
  return Buffer.from(words.buffer, 0, maxBody + WINDOW)
}

/** Mostly small bodies, some medium, a few large: the shape of real traffic with its tail. */
function size (random: () => number, max: number): number {
  const r = random()
  if (r < 0.15) return 0
  if (r < 0.65) return Math.floor(random() * 4096)
  if (r < 0.92) return Math.floor(random() * Math.min(max, 256 * 1024))
  return Math.floor(random() * max)
}

interface Plan {
  id: number
  method: 'GET' | 'POST'
  upload: number
  uploadChunked: boolean
  download: number
  downloadChunked: boolean
  /** The origin answers this late, ms. */
  delay: number
  offset: number
}

function plan (id: number, random: () => number, max: number): Plan {
  const post = random() < 0.75
  return {
    id,
    method: post ? 'POST' : 'GET',
    upload: post ? size(random, max) : 0,
    uploadChunked: random() < 0.5,
    download: size(random, max),
    downloadChunked: random() < 0.5,
    delay: random() < 0.3 ? 1 + Math.floor(random() * 30) : 0,
    offset: Math.floor(random() * WINDOW),
  }
}

function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/** A body in chunks of varied sizes, as a list of buffers (views of `body`). */
function chunkedPieces (body: Buffer, random: () => number): Buffer[] {
  const pieces: Buffer[] = []
  let off = 0
  while (off < body.length) {
    const n = Math.min(body.length - off, 1 + Math.floor(random() * 100_000))
    pieces.push(Buffer.from(n.toString(16) + '\r\n', 'latin1'), body.subarray(off, off + n), CRLF)
    off += n
  }
  pieces.push(LAST_CHUNK)
  return pieces
}

const CRLF = Buffer.from('\r\n')
const LAST_CHUNK = Buffer.from('0\r\n\r\n')

function field (head: Head, name: string): string | undefined {
  const marker = '\r\n' + name + ':'
  const at = head.fields.indexOf(marker)
  if (at === -1) return undefined
  const start = at + marker.length
  const end = head.fields.indexOf('\r\n', start)
  return head.fields.slice(start, end === -1 ? undefined : end).trim()
}

// ---- origin ----

export interface TortureOrigin {
  server: net.Server
  port: number
  close (): Promise<void>
}

/**
 * Answers `x-id`, `x-reply: SIZE`, `x-reply-chunked`, `x-delay` with SIZE bytes of the block from
 * `x-offset`, and the SHA-256 of the body it received in `x-upload-sha256`; in request order per
 * connection, with backpressure.
 */
export async function startTortureOrigin (maxBody = TORTURE_DEFAULTS.maxBody, host = '127.0.0.1', port = 0): Promise<TortureOrigin> {
  const data = block(maxBody)
  const sockets = new Set<net.Socket>()
  const server = net.createServer(socket => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.setNoDelay(true)
    let hash: Hash | null = null
    let head: Head | null = null
    let answering = Promise.resolve()
    const framer = new MessageFramer('request', {
      onHead: h => { head = h; hash = createHash('sha256') },
      onBody: chunk => { hash!.update(chunk) },
      onEnd: () => {
        const h = head!
        const uploadSha = hash!.digest('hex')
        answering = answering.then(() => answer(socket, data, h, uploadSha)).catch(() => { socket.destroy() })
      },
    })
    socket.on('data', chunk => {
      try {
        framer.push(chunk)
      } catch {
        socket.destroy()
      }
    })
    socket.on('end', () => { void answering.then(() => socket.end()) })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  return {
    server,
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise(resolve => {
      for (const socket of sockets) socket.destroy()
      server.close(() => resolve())
    }),
  }
}

async function answer (socket: net.Socket, data: Buffer, head: Head, uploadSha: string): Promise<void> {
  const delay = Number(field(head, 'x-delay') ?? 0)
  if (delay > 0) await new Promise(resolve => setTimeout(resolve, delay))
  if (socket.destroyed) return
  const size = Number(field(head, 'x-reply') ?? 0)
  const offset = Number(field(head, 'x-offset') ?? 0)
  const chunked = field(head, 'x-reply-chunked') === '1'
  const id = field(head, 'x-id') ?? '-'
  const body = data.subarray(offset, offset + size)
  const framing = chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${size}`
  let ok = socket.write(`HTTP/1.1 200 OK\r\nX-Id: ${id}\r\nX-Upload-Sha256: ${uploadSha}\r\n${framing}\r\n\r\n`)
  if (chunked) {
    const random = prng(Number(id) * 31 + 7)
    for (const piece of chunkedPieces(body, random)) ok = socket.write(piece)
  } else if (size > 0) {
    ok = socket.write(body)
  }
  if (!ok && !socket.destroyed) {
    await new Promise<void>(resolve => {
      const done = (): void => { socket.removeListener('drain', done); socket.removeListener('close', done); resolve() }
      socket.on('drain', done)
      socket.on('close', done)
    })
  }
}

// ---- client ----

interface Expected {
  plan: Plan
  uploadSha: string
  downloadSha: string
}

class Run {
  readonly options: TortureOptions
  readonly data: Buffer
  readonly random: () => number
  next = 0
  completed = 0
  failureCount = 0
  readonly failures: string[] = []
  bytesUp = 0
  bytesDown = 0
  lastProgress = Date.now()
  readonly conns: Conn[] = []
  done!: () => void

  constructor (options: TortureOptions) {
    this.options = options
    this.data = block(options.maxBody)
    this.random = prng(options.seed)
  }

  take (): Expected | null {
    if (this.next >= this.options.requests) return null
    const p = plan(this.next++, this.random, this.options.maxBody)
    return {
      plan: p,
      uploadSha: sha256(this.data.subarray(p.offset, p.offset + p.upload)),
      downloadSha: sha256(this.data.subarray(p.offset, p.offset + p.download)),
    }
  }

  fail (message: string): void {
    this.failureCount++
    if (this.failures.length < 20) this.failures.push(message)
    this.lastProgress = Date.now()
    if (this.completed + this.failureCount >= this.options.requests) this.done()
  }

  progress (): void {
    this.completed++
    this.lastProgress = Date.now()
    if (this.completed + this.failureCount >= this.options.requests) this.done()
  }
}

class Conn {
  readonly run: Run
  readonly index: number
  readonly depth: number
  readonly socket: net.Socket
  readonly framer: MessageFramer
  readonly inflight: Expected[] = []
  #hash: Hash | null = null
  #head: Head | null = null
  #writing = false
  #dead = false

  constructor (run: Run, index: number, depth: number, slow: boolean) {
    this.run = run
    this.index = index
    this.depth = depth
    const { host, port } = run.options
    this.socket = net.connect({ host: host ?? '127.0.0.1', port, noDelay: true })
    this.framer = new MessageFramer('response', {
      onHead: head => this.#onHead(head),
      onBody: chunk => { this.run.bytesDown += chunk.length; this.#hash?.update(chunk) },
      onEnd: () => this.#onEnd(),
    })
    this.socket.on('connect', () => { void this.pump() })
    this.socket.on('data', chunk => {
      try {
        this.framer.push(chunk)
      } catch (err) {
        this.#die(`framing: ${(err as Error).message}`)
      }
      if (slow) {
        this.socket.pause()
        setTimeout(() => this.socket.resume(), 2)
      }
    })
    this.socket.on('error', err => this.#die(`socket error ${(err as NodeJS.ErrnoException).code ?? err.message}`))
    this.socket.on('close', () => this.#die('closed by the proxy'))
  }

  /** Keep `depth` requests in flight, writing each with backpressure. */
  async pump (): Promise<void> {
    if (this.#writing || this.#dead) return
    this.#writing = true
    try {
      while (!this.#dead && this.inflight.length < this.depth) {
        const expected = this.run.take()
        if (expected === null) break
        this.inflight.push(expected)
        const ok = this.#write(expected.plan)
        if (!ok) {
          await new Promise<void>(resolve => {
            const done = (): void => { this.socket.removeListener('drain', done); this.socket.removeListener('close', done); resolve() }
            this.socket.on('drain', done)
            this.socket.on('close', done)
          })
        }
      }
    } finally {
      this.#writing = false
    }
  }

  #write (p: Plan): boolean {
    const lines = [
      `${p.method} /torture/${p.id} HTTP/1.1`,
      'Host: torture',
      `X-Id: ${p.id}`,
      `X-Reply: ${p.download}`,
      `X-Offset: ${p.offset}`,
    ]
    if (p.downloadChunked) lines.push('X-Reply-Chunked: 1')
    if (p.delay > 0) lines.push(`X-Delay: ${p.delay}`)
    const body = this.run.data.subarray(p.offset, p.offset + p.upload)
    if (p.method === 'POST') lines.push(p.uploadChunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${p.upload}`)
    this.run.bytesUp += body.length
    const socket = this.socket
    let ok = socket.write(lines.join('\r\n') + '\r\n\r\n')
    if (p.method === 'POST') {
      if (p.uploadChunked) {
        for (const piece of chunkedPieces(body, prng(p.id * 17 + 3))) ok = socket.write(piece)
      } else if (body.length > 0) {
        ok = socket.write(body)
      }
    }
    return ok
  }

  #onHead (head: Head): void {
    const expected = this.inflight[0]
    if (expected === undefined) return this.#die(`a response nobody asked for: ${head.startLine}`)
    this.#head = head
    this.#hash = createHash('sha256')
  }

  #onEnd (): void {
    const head = this.#head!
    const expected = this.inflight.shift()!
    const id = expected.plan.id
    const sha = this.#hash!.digest('hex')
    this.#hash = null
    const problems: string[] = []
    if (head.status !== 200) problems.push(`status ${head.status}`)
    if (field(head, 'x-id') !== String(id)) problems.push(`answer of request ${field(head, 'x-id') ?? '?'} (out of order)`)
    else {
      if (field(head, 'x-upload-sha256') !== expected.uploadSha) problems.push('upload SHA-256 differs')
      if (sha !== expected.downloadSha) problems.push('download SHA-256 differs')
    }
    if (problems.length > 0) this.run.fail(`connection ${this.index}, request ${id}: ${problems.join(', ')}`)
    else this.run.progress()
    void this.pump()
  }

  #die (reason: string): void {
    if (this.#dead) return
    this.#dead = true
    this.socket.destroy()
    for (const expected of this.inflight.splice(0)) this.run.fail(`connection ${this.index}, request ${expected.plan.id}: ${reason}`)
  }

  /** What this connection waits for, for a stall report. */
  describe (): string | null {
    if (this.inflight.length === 0) return null
    const p = this.inflight[0].plan
    return `connection ${this.index} (depth ${this.depth}): ${this.inflight.length} in flight, waiting for request ${p.id} ` +
      `(${p.method}, up ${p.upload}${p.uploadChunked ? ' chunked' : ''}, down ${p.download}${p.downloadChunked ? ' chunked' : ''}` +
      `${p.delay > 0 ? `, delay ${p.delay}` : ''})${this.framer.inMessage ? ', mid-response' : ''}`
  }

  close (): void {
    this.#dead = true
    this.socket.destroy()
  }
}

/** One bounded run against `options.port`. */
export async function runTorture (input: Partial<TortureOptions> & { port: number }): Promise<TortureResult> {
  const options: TortureOptions = { ...TORTURE_DEFAULTS, ...input }
  const run = new Run(options)
  const started = Date.now()
  let stalled: string | null = null
  await new Promise<void>(resolve => {
    run.done = resolve
    const random = prng(options.seed ^ 0xc0ffee)
    for (let i = 0; i < options.connections; i++) {
      const depth = i < options.pipelined ? 2 + Math.floor(random() * (options.maxDepth - 1)) : 1
      // the slow readers are taken from both kinds, pipelining and not
      const firstSlow = options.pipelined - Math.floor(options.slowReaders / 2)
      const slow = i >= firstSlow && i < firstSlow + options.slowReaders
      run.conns.push(new Conn(run, i, depth, slow))
    }
    const watch = setInterval(() => {
      const now = Date.now()
      if (now - run.lastProgress < options.stallMs && now - started < options.timeoutMs) return
      const waiting = run.conns.map(c => c.describe()).filter((line): line is string => line !== null)
      stalled = `${now - started < options.timeoutMs ? `no response for ${options.stallMs} ms` : `run longer than ${options.timeoutMs} ms`}` +
        ` after ${run.completed} of ${options.requests}; ${waiting.length} connections waiting:\n  ${waiting.slice(0, 16).join('\n  ')}`
      resolve()
    }, Math.min(500, options.stallMs))
    const finish = run.done
    run.done = () => { clearInterval(watch); finish() }
  })
  for (const conn of run.conns) conn.close()
  return {
    requests: options.requests,
    completed: run.completed,
    failures: run.failures,
    failureCount: run.failureCount,
    stalled,
    durationMs: Date.now() - started,
    bytesUp: run.bytesUp,
    bytesDown: run.bytesDown,
  }
}

async function main (): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      connections: { type: 'string' },
      pipelined: { type: 'string' },
      requests: { type: 'string' },
      'max-body': { type: 'string' },
      seed: { type: 'string' },
    },
  })
  const number = (text: string | undefined, fallback: number): number => text === undefined ? fallback : Number(text)
  const maxBody = number(values['max-body'], TORTURE_DEFAULTS.maxBody)
  const seed = number(values.seed, TORTURE_DEFAULTS.seed)
  if (positionals[0] === 'origin') {
    const origin = await startTortureOrigin(maxBody, values.host, Number(values.port))
    process.stderr.write(`torture origin on ${values.host}:${origin.port}\n`)
    const stop = (): void => { void origin.close().then(() => process.exit(0)) }
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
    return
  }
  if (positionals[0] !== 'client') throw new Error('usage: torture.js origin|client --port P [...]')
  const result = await runTorture({
    host: values.host,
    port: Number(values.port),
    connections: number(values.connections, TORTURE_DEFAULTS.connections),
    pipelined: number(values.pipelined, TORTURE_DEFAULTS.pipelined),
    requests: number(values.requests, TORTURE_DEFAULTS.requests),
    maxBody,
    seed,
  })
  process.stdout.write(JSON.stringify(result) + '\n')
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    process.stderr.write(`torture: ${(err as Error).message}\n`)
    process.exit(1)
  })
}
