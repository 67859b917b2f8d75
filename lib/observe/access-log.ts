/**
 * The access log: one line per request (the `response` event) and per relayed TCP connection
 * (`tcpSession`), as `combined` (what nginx and Apache write, then rp4's own fields as
 * key=value, so that existing log tools still read the line) or as JSON lines.
 *
 * Lines go through sonic-boom, pino's writer: it gathers lines in memory and writes them with
 * asynchronous `fs.write` calls, so the event loop never waits for the disk. Its `maxLength`
 * bounds what may wait: when a slow disk lets more pile up, sonic-boom drops the line and says so
 * (`drop`), and the line is counted instead of written. SIGUSR1 (`reopen`) opens the file again
 * under its name, for logrotate's rename-then-signal.
 */
import { closeSync, openSync } from 'node:fs'
import sonicBoom, { type SonicBoom } from 'sonic-boom'
import type { ResponseInfo, TcpSessionInfo } from '../core/events.js'
import type { AccessLogModel } from '../model/model.js'

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

function pad (n: number, width = 2): string {
  return String(n).padStart(width, '0')
}

/** `10/Oct/2000:13:55:36 +0000`: combined's time, always in UTC (a log read across zones stays comparable). */
export function clfTime (ms: number): string {
  const d = new Date(ms)
  return `${pad(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`
}

/** `IP:PORT` or `[IPv6]:PORT` → the IP alone. */
export function ipOf (label: string): string {
  const colon = label.lastIndexOf(':')
  const host = colon === -1 ? label : label.slice(0, colon)
  return host.startsWith('[') ? host.slice(1, -1) : host
}

/**
 * A value inside combined's double quotes: `"` and `\` escaped, control bytes and everything
 * outside printable ASCII as \xHH, as nginx does, so that a client cannot forge a line.
 */
export function quoted (value: string): string {
  if (value === '') return '"-"'
  // eslint-disable-next-line no-control-regex
  return '"' + value.replace(/[\x00-\x1f"\\\x7f-\uffff]/g, c => {
    if (c === '"' || c === '\\') return '\\' + c
    const code = c.charCodeAt(0)
    return code < 0x100 ? '\\x' + code.toString(16).padStart(2, '0').toUpperCase() : '\\u' + code.toString(16).padStart(4, '0')
  }) + '"'
}

function ms (value: number): string {
  return value < 0 ? '-' : value.toFixed(1)
}

/** A token for key=value: empty as `-`. */
function token (value: string): string {
  return value === '' ? '-' : value
}

export function formatCombined (r: ResponseInfo): string {
  return `${ipOf(r.client)} - - [${clfTime(r.time)}] ${quoted(`${r.method} ${r.url} ${r.protocol}`)} ${r.status} ${r.bytesOut} ${quoted(r.referer)} ${quoted(r.userAgent)}` +
    ` client=${r.client} route=${token(r.route)} target=${token(r.target)} in=${r.bytesIn} time=${ms(r.duration)} connect=${ms(r.upstreamConnect)}` +
    ` first_byte=${ms(r.upstreamFirstByte)} retries=${r.retries} cache=${token(r.cache)} tls=${token(r.tls)} sni=${token(r.sni)}\n`
}

export function formatJson (r: ResponseInfo): string {
  return JSON.stringify({
    time: new Date(r.time).toISOString(),
    type: 'http',
    client: r.client,
    method: r.method,
    url: r.url,
    protocol: r.protocol,
    host: r.host,
    status: r.status,
    route: r.route,
    target: r.target,
    bytesIn: r.bytesIn,
    bytesOut: r.bytesOut,
    duration: round(r.duration),
    upstreamConnect: r.upstreamConnect < 0 ? null : round(r.upstreamConnect),
    upstreamFirstByte: r.upstreamFirstByte < 0 ? null : round(r.upstreamFirstByte),
    retries: r.retries,
    cache: r.cache === '' ? null : r.cache,
    tls: r.tls === '' ? null : r.tls,
    sni: r.sni === '' ? null : r.sni,
    referer: r.referer,
    userAgent: r.userAgent,
  }) + '\n'
}

/** A TCP session in combined: no request line (`-`) and status 0, so that the columns stay where tools look for them. */
export function formatTcpCombined (r: TcpSessionInfo): string {
  return `${ipOf(r.client)} - - [${clfTime(r.time)}] "TCP ${r.listener}" 0 ${r.bytesOut} "-" "-"` +
    ` client=${r.client} route=- target=${token(r.target)} in=${r.bytesIn} time=${ms(r.duration)} connect=- first_byte=- retries=0 cache=- tls=- sni=${token(r.sni)}\n`
}

export function formatTcpJson (r: TcpSessionInfo): string {
  return JSON.stringify({
    time: new Date(r.time).toISOString(),
    type: 'tcp',
    client: r.client,
    listener: r.listener,
    target: r.target,
    bytesIn: r.bytesIn,
    bytesOut: r.bytesOut,
    duration: round(r.duration),
    sni: r.sni === '' ? null : r.sni,
  }) + '\n'
}

function round (value: number): number {
  return Math.round(value * 1000) / 1000
}

export class AccessLog {
  readonly model: Readonly<AccessLogModel>
  readonly #out: SonicBoom
  readonly #http: (r: ResponseInfo) => string
  readonly #tcp: (r: TcpSessionInfo) => string
  #lines = 0
  /** Lines dropped because too much waited for a slow disk. */
  dropped = 0
  #closed = false
  /** Why the file could not be written, once it could not (the proxy reports it). */
  onError: ((err: Error) => void) | null = null

  /** Opens the file (synchronously: a file that cannot be opened is an error now, naming it). */
  constructor (model: Readonly<AccessLogModel>) {
    this.model = model
    const json = model.format === 'json'
    this.#http = json ? formatJson : formatCombined
    this.#tcp = json ? formatTcpJson : formatTcpCombined
    if (model.file !== '-') {
      // sonic-boom opens the file asynchronously; one that cannot be opened must show now, as a startup error
      closeSync(openSync(model.file, 'a'))
    }
    this.#out = model.file === '-'
      ? new sonicBoom.SonicBoom({ fd: 2, sync: false, maxLength: model.buffer })
      : new sonicBoom.SonicBoom({ dest: model.file, append: true, mkdir: false, sync: false, maxLength: model.buffer })
    this.#out.on('drop', () => { this.dropped++ })
    this.#out.on('error', (err: Error) => { this.onError?.(err) })
  }

  readonly response = (info: ResponseInfo): void => {
    this.#write(this.#http(info))
  }

  readonly tcpSession = (info: TcpSessionInfo): void => {
    this.#write(this.#tcp(info))
  }

  #write (line: string): void {
    if (this.#closed) return
    // write() returns false both when the line was dropped and when the buffer is merely over
    // its soft mark; the drop event alone tells the first
    this.#out.write(line)
    this.#lines++
  }

  /** Lines handed to the writer and not dropped. */
  get written (): number { return this.#lines - this.dropped }

  /** Open the file again under its name (logrotate moved the old one away). */
  reopen (): void {
    if (this.model.file === '-' || this.#closed) return
    this.#out.reopen()
  }

  /** Write what waits, then close the file. */
  close (): Promise<void> {
    if (this.#closed) return Promise.resolve()
    this.#closed = true
    const out = this.#out
    return new Promise(resolve => {
      if (this.model.file === '-') {
        out.flush(() => resolve())
        return
      }
      out.once('close', () => resolve())
      out.once('error', () => resolve())
      out.end()
    })
  }
}
