/**
 * Holds N idle keep-alive connections open against a server, each after one complete
 * request, so that the server's memory per idle connection can be read from outside.
 *
 * Prints {"open":N,"failed":F,"seconds":S} on stdout once every connection has either
 * answered or failed, then waits; on SIGTERM prints {"stillOpen":K} (connections the server
 * has not closed meanwhile) and exits.
 *
 * Usage: node idle-clients.js --port P --count N [--path /small] [--concurrency 200]
 */
import net from 'node:net'
import { parseArgs } from 'node:util'
import { MessageFramer, FramingError } from './framing.js'

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    count: { type: 'string', default: '1000' },
    path: { type: 'string', default: '/small' },
    // connects in flight at once: a burst of thousands of SYNs would overflow the accept backlog
    concurrency: { type: 'string', default: '200' },
  },
})
if (values.port === undefined) throw new Error('--port is required')
const host = values.host
const port = Number(values.port)
const total = Number(values.count)
const concurrency = Math.max(1, Number(values.concurrency))
const request = Buffer.from(`GET ${values.path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: rp4-perf-idle\r\n\r\n`, 'latin1')

const sockets = new Set<net.Socket>()
let started = 0
let open = 0
let failed = 0
let reported = false
const startedAt = Date.now()

function openOne (): void {
  started++
  let settled = false
  const socket = net.connect({ host, port })
  const settle = (ok: boolean): void => {
    if (settled) return
    settled = true
    if (ok) open++
    else failed++
    next()
  }
  const framer = new MessageFramer('response', {
    onHead: () => {},
    onEnd: () => settle(true),
  })
  socket.on('connect', () => socket.write(request))
  socket.on('data', (chunk: Buffer) => {
    try {
      framer.push(chunk)
    } catch (err) {
      if (!(err instanceof FramingError)) throw err
      socket.destroy()
    }
  })
  socket.on('error', () => settle(false))
  socket.on('close', () => {
    sockets.delete(socket)
    settle(false)
  })
  sockets.add(socket)
}

function next (): void {
  if (started < total) {
    openOne()
    return
  }
  if (!reported && open + failed === total) {
    reported = true
    process.stdout.write(JSON.stringify({ open, failed, seconds: (Date.now() - startedAt) / 1000 }) + '\n')
  }
}

process.on('SIGTERM', () => {
  process.stdout.write(JSON.stringify({ stillOpen: sockets.size }) + '\n', () => process.exit(0))
})

for (let i = 0; i < Math.min(concurrency, total); i++) openOne()
if (total === 0) next()
