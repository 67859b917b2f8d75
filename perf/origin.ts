/**
 * The benchmark origin: HTTP/1.1 on raw sockets, as cheap per request as Node allows, so that
 * the "direct" row is a ceiling and the proxied rows measure the proxy.
 *
 *   GET  /small   ~100-byte body
 *   GET  /1m      1 MiB body (one preallocated buffer, written without copying)
 *   POST /upload  body read and discarded (Content-Length or chunked), small answer
 *   GET  /json100k      100 KiB of JSON (the compression scenarios)
 *   GET  /cached/small  /small with Cache-Control: max-age=3600 (the cache scenarios)
 *   GET  /cached/1m     /1m with Cache-Control: max-age=3600
 *
 * Keep-alive and pipelining: every complete request in a read is answered in order, corked
 * into one write. Usage: node origin.js [--port N] [--host 127.0.0.1] [--delay MS] [--status CODE];
 * prints "origin listening on HOST:PORT" on stderr once it accepts connections. `--delay` holds
 * every answer that long (a slow backend, for the balancing scenario); `--status` answers every
 * request with that status and a small body (a failing one).
 */
import net from 'node:net'
import { parseArgs } from 'node:util'
import { MessageFramer, FramingError, type Head } from './framing.js'

const SMALL_BODY = Buffer.from('rp4 benchmark origin: this is the small response body used for the request rate scenarios.....\n', 'latin1')
const BIG_BODY = Buffer.alloc(1024 * 1024, 'x')
const UPLOAD_BODY = Buffer.from('upload received\n', 'latin1')
const NOT_FOUND_BODY = Buffer.from('not found\n', 'latin1')

interface Canned {
  keepAlive: Buffer[]
  close: Buffer[]
}

/** Head and body as separate buffers: the 1 MiB body is shared, never copied per response. */
function canned (status: string, body: Buffer, headers = 'Content-Type: text/plain\r\n'): Canned {
  const head = (extra: string): Buffer => Buffer.from(
    `HTTP/1.1 ${status}\r\n${headers}Content-Length: ${body.length}\r\n${extra}\r\n`, 'latin1')
  // small answers go out as one buffer: one write per response instead of two
  if (body.length <= 4096) {
    return {
      keepAlive: [Buffer.concat([head(''), body])],
      close: [Buffer.concat([head('Connection: close\r\n'), body])],
    }
  }
  return { keepAlive: [head(''), body], close: [head('Connection: close\r\n'), body] }
}

/** Records like an API's, so that compression has the ratio it has on real JSON. */
const JSON_BODY = Buffer.from(JSON.stringify(Array.from({ length: 1200 }, (_, i) => ({ id: i, name: `user ${i}`, email: `user${i}@example.com`, active: i % 3 === 0, score: (i * 7919) % 1000 }))).slice(0, 100 * 1024), 'latin1')
const CACHEABLE = 'Content-Type: text/plain\r\nCache-Control: max-age=3600\r\n'

const RESPONSES = {
  small: canned('200 OK', SMALL_BODY),
  big: canned('200 OK', BIG_BODY),
  json: canned('200 OK', JSON_BODY, 'Content-Type: application/json\r\n'),
  cachedSmall: canned('200 OK', SMALL_BODY, CACHEABLE),
  cachedBig: canned('200 OK', BIG_BODY, CACHEABLE),
  upload: canned('200 OK', UPLOAD_BODY),
  notFound: canned('404 Not Found', NOT_FOUND_BODY),
  badRequest: canned('400 Bad Request', NOT_FOUND_BODY),
}

function pick (head: Head): Canned {
  const space = head.startLine.indexOf(' ')
  const method = head.startLine.slice(0, space)
  const target = head.startLine.slice(space + 1, head.startLine.lastIndexOf(' '))
  // absolute-form targets ("http://host/small") may come from a proxy; the path is what counts
  const full = target.startsWith('/') ? target : target.replace(/^[a-z]+:\/\/[^/]*/i, '')
  const query = full.indexOf('?')
  const path = query === -1 ? full : full.slice(0, query)
  if (method === 'GET') {
    if (path === '/small') return RESPONSES.small
    if (path === '/1m') return RESPONSES.big
    if (path === '/json100k') return RESPONSES.json
    if (path === '/cached/small') return RESPONSES.cachedSmall
    if (path === '/cached/1m') return RESPONSES.cachedBig
  } else if (method === 'POST' || method === 'PUT') {
    if (path === '/upload') return RESPONSES.upload
  }
  return RESPONSES.notFound
}

/** Set from the command line in main(): a slow or failing origin for the balancing scenario. */
let delayMs = 0
let forced: Canned | null = null

function serve (socket: net.Socket): void {
  socket.setNoDelay(true)
  let current: Head | null = null
  let closeAfter = false
  // answers to every request completed by one read, written together once the read is parsed
  const pending: Buffer[] = []

  const framer = new MessageFramer('request', {
    onHead: head => { current = head },
    // answer only once the body is fully read: an upload's answer means "all bytes arrived"
    onEnd: () => {
      const head = current
      current = null
      if (head === null || closeAfter) return
      const response = forced ?? pick(head)
      for (const buffer of head.close ? response.close : response.keepAlive) pending.push(buffer)
      if (head.close) closeAfter = true
    },
  })

  const flush = (): void => {
    if (pending.length === 0) return
    let flowing: boolean
    if (pending.length === 1) {
      flowing = socket.write(pending[0])
    } else {
      // cork only when there are several: it costs more than it saves for a single write
      socket.cork()
      for (const buffer of pending) socket.write(buffer)
      socket.uncork()
      flowing = socket.writableLength < socket.writableHighWaterMark
    }
    pending.length = 0
    if (closeAfter) socket.end()
    // a client that stops reading must not make the origin queue 1 MiB answers without bound
    else if (!flowing) socket.pause()
  }

  socket.on('drain', () => socket.resume())
  socket.on('data', (chunk: Buffer) => {
    try {
      framer.push(chunk)
    } catch (err) {
      if (!(err instanceof FramingError)) throw err
      pending.push(RESPONSES.badRequest.close[0])
      closeAfter = true
    }
    if (delayMs > 0) setTimeout(flush, delayMs)
    else flush()
  })
  socket.on('error', () => { /* peers reset connections at the end of every run */ })
}

function main (): void {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      delay: { type: 'string', default: '0' },
      status: { type: 'string' },
    },
  })
  delayMs = Number(values.delay)
  if (values.status !== undefined) forced = canned(`${values.status} Forced`, NOT_FOUND_BODY)
  const server = net.createServer({ noDelay: true }, serve)
  server.maxConnections = 100_000
  server.on('error', err => {
    process.stderr.write(`origin: ${err.message}\n`)
    process.exit(1)
  })
  server.listen({ port: Number(values.port), host: values.host, backlog: 4096 }, () => {
    const address = server.address() as net.AddressInfo
    process.stderr.write(`origin listening on ${address.address}:${address.port}\n`)
  })
  const stop = (): void => {
    server.close()
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main()
