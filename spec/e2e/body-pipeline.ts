/**
 * The session's body extensions through the library's filter API: a local answer whose body is a
 * stream (pulled with backpressure, framed by the Content-Length given or chunked), body
 * transforms that are asynchronous and keep backpressure both ways, the end-of-body hook, and
 * what happens when a transform fails.
 */
import { createHash } from 'node:crypto'
import net from 'node:net'
import { Readable, Transform } from 'node:stream'
import t from 'tap'
import { exchange } from '../helpers/client.js'
import { header } from '../helpers/framing.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import { deferred, poll, within } from '../helpers/wait.js'
import type { Filter } from '../../lib/index.js'
import { undated } from '../helpers/dates.js'

const MB = 1 << 20

/** `total` bytes in 64 KiB pieces, counting what was produced (what rp4 pulled). */
class Counted extends Readable {
  produced = 0
  readonly hash = createHash('sha256')
  constructor (readonly total: number) { super({ highWaterMark: 64 * 1024 }) }
  override _read (): void {
    if (this.produced >= this.total) { this.push(null); return }
    const size = Math.min(64 * 1024, this.total - this.produced)
    const piece = Buffer.alloc(size, this.produced / 65536 & 0xff)
    this.produced += size
    this.hash.update(piece)
    this.push(piece)
  }
}

/** Upper-cases ASCII, one setImmediate later per chunk (asynchronous), and appends `tail` when flushed. */
function upper (tail: string): Transform {
  return new Transform({
    transform (chunk: Buffer, _enc, done) { setImmediate(() => done(null, Buffer.from(chunk.toString('latin1').toUpperCase(), 'latin1'))) },
    flush (done) { done(null, Buffer.from(tail)) },
  })
}

t.test('respond with a stream: chunked without a length, exact with one; HEAD leaves it unread', async t => {
  const streams: Readable[] = []
  const filter: Filter = {
    name: 'local',
    onRequest (s) {
      const body = Readable.from([Buffer.from('hello '), Buffer.from('world')], { objectMode: false })
      streams.push(body)
      if (s.request.path === '/sized') return s.respond(200, { 'Content-Type': 'text/plain', 'Content-Length': '11' }, body)
      return s.respond(200, { 'Content-Type': 'text/plain' }, body)
    },
  }
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], filters: [filter] } as never)
  const a = (await exchange(port, 'GET /chunked HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })).responses[0]
  t.equal(a.framing, 'chunked')
  t.equal(a.body.toString(), 'hello world')
  const b = await exchange(port, 'GET /sized HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(undated(b.text), 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world', 'exact bytes: the length given frames it')
  const c = await exchange(port, 'HEAD /sized HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(header(c.responses[0], 'content-length'), '11', 'HEAD keeps the length it describes')
  t.equal(c.responses[0].bodyLength, 0)
  await poll(() => streams[2].destroyed, 'the HEAD stream destroyed')
  t.equal(origin.requests.length, 0, 'nothing went upstream')
})

t.test('a streamed local body is pulled only as fast as the client reads', async t => {
  const source = new Counted(256 * MB)
  const filter: Filter = { name: 'big', onRequest: s => s.respond(200, { 'Content-Length': String(source.total) }, source) }
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], filters: [filter] } as never)
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  await within(new Promise(resolve => socket.once('connect', resolve)), 5000, 'connect')
  socket.pause()
  socket.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n')
  // wait until the source stops being pulled: the same count over several polls
  let last = -1
  let same = 0
  await poll(() => {
    if (source.produced === last && source.produced > 0) same++
    else { same = 0; last = source.produced }
    return same >= 20
  }, 'the source to stop being pulled', 20_000)
  t.ok(source.produced < 48 * MB, `${(source.produced / MB).toFixed(1)} MB pulled of 256 MB while the client reads nothing`)
  let received = 0
  const headEnd = deferred<void>()
  let sawHead = false
  const hash = createHash('sha256')
  let pending = Buffer.alloc(0)
  socket.on('data', (data: Buffer) => {
    if (!sawHead) {
      pending = Buffer.concat([pending, data])
      const end = pending.indexOf('\r\n\r\n')
      if (end === -1) return
      sawHead = true
      data = pending.subarray(end + 4)
    }
    received += data.length
    hash.update(data)
    if (received >= source.total) headEnd.resolve()
  })
  socket.resume()
  await within(headEnd.promise, 60_000, 'the whole body')
  t.equal(received, source.total)
  t.equal(hash.digest('hex'), source.hash.digest('hex'), 'the same bytes')
})

t.test('transformBody: asynchronous transforms in order, their flush at the end; onResponseEnd appends', async t => {
  const filters: Filter[] = [
    { name: 'upper', onResponse: s => s.transformBody(upper('[end]')) },
    { name: 'tail', onResponseEnd: () => Buffer.from('-last') },
    { name: 'drop-length', onResponse: (_s, head) => { head.headers.delete('Content-Length') } },
  ]
  const origin = await startOrigin(t, req => req.url === '/local' ? ok() : ok('abc-def'))
  const { port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0', timeouts: { detect: '30s' } }],
    routes: [
      { match: { path: '/local' }, respond: { body: 'local body' }, filters: ['drop-length', 'tail', 'upper'] },
      { proxy: 'o', filters: ['drop-length', 'tail', 'upper'] },
    ],
    upstreams: { o: { targets: [origin.target] } },
    filters,
  } as never)
  const a = (await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })).responses[0]
  // response hooks run in reverse order: upper's transform sees the end hook's piece too
  t.equal(a.body.toString(), 'ABC-DEF-LAST[end]')
  t.equal(a.framing, 'chunked')
  const b = (await exchange(port, 'GET /local HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })).responses[0]
  t.equal(b.body.toString(), 'LOCAL BODY-LAST[end]', 'a local Buffer answer passes the transforms too')
  const c = await exchange(port, 'HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 2 })
  t.equal(c.responses[0].bodyLength, 0, 'HEAD: no body, the transform dropped')
  t.equal(c.responses[1].body.toString(), 'ABC-DEF-LAST[end]', 'the connection goes on')
})

t.test('a transform slower than the backend pauses the backend (the transform keeps backpressure)', async t => {
  let transformed = 0
  const slow: Filter = {
    name: 'slow',
    onResponse (s, head) {
      head.headers.delete('Content-Length')
      s.transformBody(new Transform({
        highWaterMark: 64 * 1024,
        transform (chunk: Buffer, _e, done) { transformed += chunk.length; done(null, chunk) },
      }))
    },
  }
  const source = new Counted(256 * MB)
  const origin = await startOrigin(t, () => ({ bytes: `HTTP/1.1 200 OK\r\nContent-Length: ${source.total}\r\n\r\n`, stream: source }))
  const { port } = await startProxy(t, { targets: [origin.target], filters: [slow] } as never)
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  await within(new Promise(resolve => socket.once('connect', resolve)), 5000, 'connect')
  socket.pause()
  socket.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n')
  let last = -1
  let same = 0
  await poll(() => {
    if (source.produced === last && source.produced > 0) same++
    else { same = 0; last = source.produced }
    return same >= 20
  }, 'the origin to stop being read', 20_000)
  t.ok(source.produced < 64 * MB, `the origin produced ${(source.produced / MB).toFixed(1)} MB of 256 MB while the client reads nothing`)
  t.ok(transformed < 48 * MB, `${(transformed / MB).toFixed(1)} MB went through the transform`)
})

t.test('a transform that fails: the response is cut short, the failure is rp4\'s own', async t => {
  const broken: Filter = {
    name: 'broken',
    onResponse (s, head) {
      head.headers.delete('Content-Length')
      s.transformBody(new Transform({ transform (_c, _e, done) { done(new Error('boom')) } }))
    },
  }
  const origin = await startOrigin(t, () => ok('some body'))
  const { port, events } = await startProxy(t, { targets: [origin.target], filters: [broken] } as never)
  const res = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n')
  t.ok(res.closed, 'the connection is closed')
  t.equal(res.responses.filter(r => r.complete).length, 0, 'no complete response: the truncation shows')
  await poll(() => events.proxyErrors.length > 0, 'the proxy error')
  t.equal(events.proxyErrors[0].code, 'transform_error')
})
