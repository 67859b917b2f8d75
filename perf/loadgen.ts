/**
 * Closed-loop HTTP/1.1 load generator on raw sockets.
 *
 * Each of N connections keeps `pipeline` requests in flight and sends the next one as soon
 * as a response completes, for a fixed duration; with --new-conn each request gets its own
 * connection instead. Every latency goes into an HDR histogram (µs). The result, including
 * this process's own CPU time so a reader can tell whether the generator was the bottleneck,
 * is printed as one JSON object on stdout (see LoadResult).
 *
 * Usage: node loadgen.js --port P [--host H] [--connections N] [--pipeline D]
 *          [--duration S] [--path /small] [--body-size BYTES] [--new-conn]
 */
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import * as hdr from 'hdr-histogram-js'
import { MessageFramer, FramingError } from './framing.js'

export interface LoadResult {
  /** Responses with a 1xx–3xx status completed inside the window. */
  requests: number
  durationS: number
  rps: number
  /** Response bytes received (heads included) plus request body bytes, per second, 10^6 bytes. */
  mbps: number
  latencyUs: { p50: number, p99: number, p999: number, max: number, mean: number }
  errors: { connect: number, closed: number, status: number, framing: number, total: number }
  /** New connections opened beyond the initial ones (server closes, or --new-conn). */
  reconnects: number
  /** This process's CPU time over the window and its share of one core; totalMs includes start-up. */
  cpu: { userMs: number, systemMs: number, coreShare: number, totalMs: number }
}

interface Options {
  host: string
  port: number
  connections: number
  pipeline: number
  durationMs: number
  path: string
  bodySize: number
  newConn: boolean
  /** Sent as Accept-Encoding (the compression scenarios). */
  acceptEncoding: string | null
}

function readOptions (): Options {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      connections: { type: 'string', default: '1' },
      pipeline: { type: 'string', default: '1' },
      duration: { type: 'string', default: '5' },
      path: { type: 'string', default: '/small' },
      'body-size': { type: 'string', default: '0' },
      'new-conn': { type: 'boolean', default: false },
      'accept-encoding': { type: 'string' },
    },
  })
  if (values.port === undefined) throw new Error('--port is required')
  return {
    host: values.host,
    port: Number(values.port),
    connections: Math.max(1, Number(values.connections)),
    pipeline: Math.max(1, Number(values.pipeline)),
    durationMs: Number(values.duration) * 1000,
    path: values.path,
    bodySize: Number(values['body-size']),
    newConn: values['new-conn'],
    acceptEncoding: values['accept-encoding'] ?? null,
  }
}

const opts = readOptions()
const histogram = hdr.build({
  bitBucketSize: 32,
  lowestDiscernibleValue: 1,
  highestTrackableValue: 60_000_000,
  numberOfSignificantValueDigits: 3,
  useWebAssembly: false,
})

const counters = { ok: 0, bytesIn: 0, connect: 0, closed: 0, status: 0, framing: 0, reconnects: 0 }
let measuring = true

const method = opts.bodySize > 0 ? 'POST' : 'GET'
const requestHead = Buffer.from(
  `${method} ${opts.path} HTTP/1.1\r\nHost: ${opts.host}:${opts.port}\r\nUser-Agent: rp4-perf\r\n` +
  (opts.bodySize > 0 ? `Content-Length: ${opts.bodySize}\r\nContent-Type: application/octet-stream\r\n` : '') +
  (opts.acceptEncoding !== null ? `Accept-Encoding: ${opts.acceptEncoding}\r\n` : '') +
  (opts.newConn ? 'Connection: close\r\n' : '') + '\r\n', 'latin1')
const requestBody = opts.bodySize > 0 ? Buffer.alloc(opts.bodySize, 'u') : null
// k GET requests glued together, for k = 1..pipeline: responses that complete in one read are
// replaced with a single write instead of one syscall each
const batches: Buffer[] = [Buffer.alloc(0)]
for (let k = 1; k <= opts.pipeline; k++) batches.push(Buffer.concat(Array<Buffer>(k).fill(requestHead)))

const readBuffer = Buffer.allocUnsafe(64 * 1024)

/** One client connection slot: reconnects whenever its socket ends, until the window closes. */
function runSlot (): void {
  const sentAt: number[] = []
  let completed = 0
  let closeSeen = false
  const socket = net.connect({
    host: opts.host,
    port: opts.port,
    noDelay: true,
    // reads land in one shared buffer and skip the stream machinery: a per-read Buffer and a
    // 'data' event cost about as much as parsing the response
    onread: { buffer: readBuffer, callback: (size: number) => { onData(readBuffer.subarray(0, size)); return true } },
  })
  let status = 0
  let connected = false
  // a new connection per request: its latency includes the connect
  const connectStartedAt = performance.now()

  const send = (count: number): void => {
    if (count === 0 || !measuring) return
    const now = opts.newConn ? connectStartedAt : performance.now()
    for (let i = 0; i < count; i++) sentAt.push(now)
    if (requestBody === null) {
      socket.write(batches[count])
      return
    }
    socket.cork()
    for (let i = 0; i < count; i++) {
      socket.write(requestHead)
      socket.write(requestBody)
    }
    socket.uncork()
  }

  const framer = new MessageFramer('response', {
    onHead: head => {
      status = head.status
      if (head.close) closeSeen = true
    },
    onEnd: () => {
      const started = sentAt.shift()
      if (started === undefined || !measuring) return
      if (status >= 400) {
        counters.status++
      } else {
        counters.ok++
        const micros = Math.round((performance.now() - started) * 1000)
        histogram.recordValue(Math.min(Math.max(micros, 1), 60_000_000))
      }
      completed++
    },
  })

  socket.on('connect', () => {
    connected = true
    send(opts.pipeline)
  })
  const onData = (chunk: Buffer): void => {
    counters.bytesIn += chunk.length
    completed = 0
    try {
      framer.push(chunk)
    } catch (err) {
      if (!(err instanceof FramingError)) throw err
      if (measuring) counters.framing++
      socket.destroy()
      return
    }
    if (opts.newConn) {
      if (completed > 0) socket.destroy()
    } else if (!closeSeen) {
      send(completed)
    }
  }
  socket.on('error', () => {
    if (!connected && measuring) counters.connect++
  })
  socket.on('close', () => {
    framer.close()
    if (!measuring) return
    // requests pipelined behind a "Connection: close" answer are not lost, just never sent
    const lost = sentAt.length > 0 && (opts.newConn || !closeSeen)
    if (lost && connected) counters.closed++
    counters.reconnects++
    // a refused connect must not become a busy loop of reconnects
    if (connected) runSlot()
    else setTimeout(runSlot, 20)
  })
}

function finish (startedAt: number, cpuBefore: NodeJS.CpuUsage): void {
  measuring = false
  const elapsedMs = performance.now() - startedAt
  const cpu = process.cpuUsage(cpuBefore)
  const total = process.cpuUsage()
  const seconds = elapsedMs / 1000
  const bodyBytes = counters.ok * opts.bodySize
  const errors = {
    connect: counters.connect,
    closed: counters.closed,
    status: counters.status,
    framing: counters.framing,
    total: counters.connect + counters.closed + counters.status + counters.framing,
  }
  const result: LoadResult = {
    requests: counters.ok,
    durationS: round(seconds, 3),
    rps: round(counters.ok / seconds, 1),
    mbps: round((counters.bytesIn + bodyBytes) / seconds / 1e6, 2),
    latencyUs: {
      p50: histogram.getValueAtPercentile(50),
      p99: histogram.getValueAtPercentile(99),
      p999: histogram.getValueAtPercentile(99.9),
      max: histogram.maxValue,
      mean: round(histogram.mean, 1),
    },
    errors,
    reconnects: counters.reconnects,
    cpu: {
      userMs: round(cpu.user / 1000, 1),
      systemMs: round(cpu.system / 1000, 1),
      coreShare: round((cpu.user + cpu.system) / 1000 / elapsedMs, 3),
      totalMs: round((total.user + total.system) / 1000, 1),
    },
  }
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0))
}

function round (value: number, digits: number): number {
  const factor = 10 ** digits
  return Math.round(value * factor) / factor
}

function main (): void {
  const startedAt = performance.now()
  const cpuBefore = process.cpuUsage()
  for (let i = 0; i < opts.connections; i++) runSlot()
  setTimeout(() => finish(startedAt, cpuBefore), opts.durationMs)
  // the runner kills a generator that overstays; this is the generator's own bound
  setTimeout(() => process.exit(3), opts.durationMs + 10_000).unref()
}

main()
