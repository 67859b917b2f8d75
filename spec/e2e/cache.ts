/**
 * RFC 9111 conformance, part 2: the cache through the proxy, one case per test, each citing its
 * section (part 1, the arithmetic: spec/http/cache-control.ts). Also request coalescing,
 * stale-while-revalidate and stale-if-error (RFC 5861), Cache-Status (RFC 9211), purges, and the
 * cache under compression.
 */
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { gunzipSync } from 'node:zlib'
import { PassThrough, Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { exchange, RawClient } from '../helpers/client.js'
import { header, type Message } from '../helpers/framing.js'
import { ok, startOrigin, type Origin, type OriginRequest, type Reply } from '../helpers/origin.js'
import { startProxy, type StartedProxy } from '../helpers/proxy.js'
import type { Filter } from '../../lib/index.js'
import { deferred, poll, within } from '../helpers/wait.js'

function get (target: string, ...extra: string[]): string {
  return [`GET ${target} HTTP/1.1`, 'Host: h', ...extra].map(x => x + '\r\n').join('') + '\r\n'
}

async function one (port: number, request: string): Promise<Message> {
  return (await exchange(port, request, { responses: 1, ms: 20_000 })).responses[0]
}

async function setup (t: Test, handler: (req: OriginRequest) => Reply | Promise<Reply>, cache: object = {}): Promise<{ origin: Origin, proxy: StartedProxy, count: (url: string) => number }> {
  const origin = await startOrigin(t, handler)
  const proxy = await startProxy(t, { targets: [origin.target], cache: { size: '4m', ...cache } })
  return { origin, proxy, count: url => origin.requests.filter(r => r.url === url).length }
}

const cc = (value: string, body = 'body', ...more: string[]): Buffer => ok(body, ['Content-Type: text/plain', `Cache-Control: ${value}`, ...more])

t.test('§4 a fresh response is served from the cache: Age, Cache-Status; the backend asked once', async t => {
  const { proxy, count } = await setup(t, () => cc('max-age=60', 'cached', 'ETag: "1"'))
  const first = await one(proxy.port, get('/a'))
  t.equal(header(first, 'cache-status'), 'rp4; fwd=uri-miss; fwd-status=200; stored', 'RFC 9211 §2: the miss, forwarded and stored')
  const second = await one(proxy.port, get('/a'))
  t.equal(second.body.toString(), 'cached')
  t.match(header(second, 'cache-status'), /^rp4; hit; ttl=\d+$/, 'RFC 9211 §2.1: hit, with ttl')
  t.match(header(second, 'age'), /^\d+$/, '§5.1: Age sent')
  t.equal(header(second, 'content-length'), '6')
  t.equal(count('/a'), 1)
  const head = await one(proxy.port, 'HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n')
  t.equal(head.bodyLength, 0, '§4: HEAD answered from the GET entry')
  t.equal(header(head, 'content-length'), '6')
  t.equal(count('/a'), 1)
  t.equal((await one(proxy.port, get('/a?x=1'))).head.line[1], '200')
  t.equal(count('/a?x=1'), 1, '§2: the query is part of the key')
})

t.test('§3 what is not stored: no-store, private, request no-store, Authorization, Set-Cookie, POST', async t => {
  const { proxy, count } = await setup(t, req => req.url === '/no-store' ? cc('no-store')
    : req.url === '/private' ? cc('private, max-age=60')
      : req.url === '/cookie' ? cc('max-age=60', 'c', 'Set-Cookie: s=1')
        : cc('max-age=60'))
  for (const url of ['/no-store', '/private', '/cookie']) {
    await one(proxy.port, get(url))
    const again = await one(proxy.port, get(url))
    t.equal(count(url), 2, `${url}: asked twice`)
    t.match(header(again, 'cache-status'), /fwd=uri-miss/, `${url}: a miss`)
  }
  await one(proxy.port, get('/req', 'Cache-Control: no-store'))
  await one(proxy.port, get('/req'))
  t.equal(count('/req'), 2, '§5.2.1.5: a request with no-store is not stored')
  await one(proxy.port, get('/auth', 'Authorization: Basic eDp5'))
  await one(proxy.port, get('/auth', 'Authorization: Basic eDp5'))
  t.equal(count('/auth'), 2, '§3.5: Authorization goes to the backend')
  await one(proxy.port, 'POST /post HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n')
  await one(proxy.port, 'POST /post HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n')
  t.equal(count('/post'), 2, '§3: POST is not stored')
})

t.test('§4.1 Vary: one entry per variant', async t => {
  const { proxy, count } = await setup(t, req => cc('max-age=60', `lang ${header(req, 'accept-language') ?? '-'}`, 'Vary: Accept-Language'))
  t.equal((await one(proxy.port, get('/v', 'Accept-Language: fr'))).body.toString(), 'lang fr')
  t.equal((await one(proxy.port, get('/v', 'Accept-Language: de'))).body.toString(), 'lang de')
  t.equal((await one(proxy.port, get('/v', 'Accept-Language: fr'))).body.toString(), 'lang fr', 'fr from the cache')
  t.equal((await one(proxy.port, get('/v', 'Accept-Language:  fr '))).body.toString(), 'lang fr', '§4.1: whitespace normalized')
  t.equal((await one(proxy.port, get('/v'))).body.toString(), 'lang -', 'absent is a variant too')
  t.equal(count('/v'), 3)
})

t.test('§4.3 a stale entry is revalidated; a 304 updates it (§4.3.4); the client gets the stored body', async t => {
  let version = 0
  const { proxy, origin } = await setup(t, req => {
    if (header(req, 'if-none-match') === '"e1"') return `HTTP/1.1 304 Not Modified\r\nETag: "e1"\r\nCache-Control: max-age=60\r\nX-Version: ${++version}\r\n\r\n`
    return cc('max-age=0', 'stored body', 'ETag: "e1"', 'Last-Modified: Wed, 01 May 2024 12:00:00 GMT', 'X-Version: 0')
  })
  await one(proxy.port, get('/r'))
  const revalidated = await one(proxy.port, get('/r', 'If-None-Match: "client"'))
  const sent = origin.requests[1]
  t.equal(header(sent, 'if-none-match'), '"e1"', "§4.3.1: the entry's validator, not the client's")
  t.equal(header(sent, 'if-modified-since'), 'Wed, 01 May 2024 12:00:00 GMT')
  t.equal(revalidated.head.line[1], '200')
  t.equal(revalidated.body.toString(), 'stored body')
  t.equal(header(revalidated, 'x-version'), '1', '§4.3.4: headers updated from the 304')
  t.equal(header(revalidated, 'cache-status'), 'rp4; fwd=stale; fwd-status=304', 'RFC 9211: revalidated')
  const fresh = await one(proxy.port, get('/r'))
  t.match(header(fresh, 'cache-status'), /^rp4; hit/, 'fresh again for max-age=60 from the 304')
  t.equal(origin.requests.length, 2)
})

t.test("§4.3.2 the client's own conditionals answered from the cache", async t => {
  const { proxy, count } = await setup(t, () => cc('max-age=60', 'x', 'ETag: "c1"', 'Last-Modified: Wed, 01 May 2024 12:00:00 GMT'))
  await one(proxy.port, get('/c'))
  const nm = await one(proxy.port, get('/c', 'If-None-Match: "c1"'))
  t.equal(nm.head.line[1], '304')
  t.equal(header(nm, 'etag'), '"c1"')
  t.equal((await one(proxy.port, get('/c', 'If-Modified-Since: Wed, 01 May 2024 12:00:00 GMT'))).head.line[1], '304')
  t.equal((await one(proxy.port, get('/c', 'If-None-Match: "other"'))).head.line[1], '200')
  t.equal(count('/c'), 1)
})

t.test('§5.2.1.4 request no-cache and max-age=0 revalidate; §5.2.2.4 response no-cache too', async t => {
  const { proxy, count } = await setup(t, req => req.url === '/nc' ? cc('no-cache') : cc('max-age=60'))
  await one(proxy.port, get('/a'))
  await one(proxy.port, get('/a', 'Cache-Control: no-cache'))
  t.equal(count('/a'), 2, 'request no-cache')
  await one(proxy.port, get('/a', 'Cache-Control: max-age=0'))
  t.equal(count('/a'), 3, 'request max-age=0')
  await one(proxy.port, get('/a', 'Pragma: no-cache'))
  t.equal(count('/a'), 4, '§5.4 Pragma: no-cache')
  await one(proxy.port, get('/nc'))
  await one(proxy.port, get('/nc'))
  t.equal(count('/nc'), 2, 'response no-cache: validated each time')
})

t.test('§4.2.1 expiry: Expires in the past and max-age=0 are stale at once', async t => {
  const { proxy, count } = await setup(t, req => req.url === '/exp' ? ok('e', ['Expires: Thu, 01 Jan 1970 00:00:00 GMT', 'Content-Type: text/plain']) : cc('max-age=0'))
  for (const url of ['/exp', '/zero']) {
    await one(proxy.port, get(url))
    await one(proxy.port, get(url))
    t.equal(count(url), 2, url)
  }
})

t.test('Range from a cached full response (RFC 9110 §14)', async t => {
  const { proxy, count } = await setup(t, () => cc('max-age=60', '0123456789', 'ETag: "r1"'))
  await one(proxy.port, get('/range'))
  const part = await one(proxy.port, get('/range', 'Range: bytes=2-5'))
  t.equal(part.head.line[1], '206')
  t.equal(part.body.toString(), '2345')
  t.equal(header(part, 'content-range'), 'bytes 2-5/10')
  const multi = await one(proxy.port, get('/range', 'Range: bytes=0-0,9-9'))
  t.match(header(multi, 'content-type'), /^multipart\/byteranges; boundary=/)
  t.match(multi.body.toString(), /Content-Range: bytes 0-0\/10\r\n\r\n0\r\n[^]*Content-Range: bytes 9-9\/10\r\n\r\n9\r\n/)
  t.equal((await one(proxy.port, get('/range', 'Range: bytes=50-'))).head.line[1], '416')
  t.equal((await one(proxy.port, get('/range', 'Range: bytes=0-1', 'If-Range: "old"'))).body.toString(), '0123456789', 'If-Range that does not match: the whole body')
  t.equal(count('/range'), 1)
})

t.test('coalescing: concurrent misses make one backend request, streamed to all as it arrives', async t => {
  const release = deferred<void>()
  const { proxy, count } = await setup(t, () => ({
    bytes: 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n',
    stream: Readable.from((async function * () { await release.promise; yield Buffer.from('7\r\n second\r\n0\r\n\r\n') })(), { objectMode: false }),
  }))
  const readers = await Promise.all([0, 1, 2, 3, 4].map(async () => {
    const res = await fetch(`http://127.0.0.1:${proxy.port}/co`)
    return { res, reader: res.body!.getReader() }
  }))
  for (const { reader } of readers) {
    const { value } = await within(reader.read(), 5000, 'the first piece before the response ends')
    t.equal(Buffer.from(value!).toString(), 'first')
  }
  t.equal(count('/co'), 1, 'one backend request')
  release.resolve()
  for (const { reader } of readers) {
    let rest = ''
    for (;;) {
      const { value, done } = await within(reader.read(), 5000, 'the rest')
      if (done) break
      rest += Buffer.from(value).toString()
    }
    t.equal(rest, ' second')
  }
  const statuses = readers.map(r => r.res.headers.get('cache-status'))
  t.equal(statuses.filter(s => s?.includes('coalesced') === true).length, 4, 'four waited on the first')
})

t.test('coalescing: the client whose request fills the entry leaving does not cut the others short; the entry is stored', async t => {
  const release = deferred<void>()
  const rest = 'x'.repeat(100_000)
  const { proxy, origin, count } = await setup(t, req => req.url === '/alone'
    ? { bytes: 'HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 100005\r\n\r\nfirst', stream: new Readable({ read () {} }) }
    : {
        bytes: 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=60\r\nContent-Length: 100005\r\n\r\nfirst',
        stream: Readable.from((async function * () { await release.promise; yield Buffer.from(rest) })(), { objectMode: false }),
      })
  const first = await RawClient.connect(proxy.port)
  await first.write(get('/leave'))
  await first.until(() => first.text().endsWith('first'), 5000, 'the head and first piece at the first client')
  const others = await Promise.all([0, 1].map(async () => await RawClient.connect(proxy.port)))
  for (const other of others) await other.write(get('/leave'))
  // streamed from the entry as it fills: chunked, its length not known yet
  for (const other of others) await other.until(() => other.text().endsWith('\r\n5\r\nfirst\r\n'), 5000, 'the first piece at a coalesced client')
  first.reset()
  await proxy.events.until(() => proxy.events.clientErrors.length === 1, 5000, 'rp4 seeing the first client go')
  release.resolve()
  for (const other of others) await other.waitResponses(1, 10_000)
  t.same(others.map(o => o.responses[0]?.body.toString() === 'first' + rest), [true, true], 'both coalesced clients: the whole body')
  t.same(others.map(o => o.text().endsWith('\r\n0\r\n\r\n')), [true, true], 'each ended by its last chunk')
  t.equal(count('/leave'), 1, 'one backend request')
  await proxy.events.until(() => proxy.events.responses.length === 3, 5000, 'three response events, the first once the fill ended')
  const hit = await one(proxy.port, get('/leave'))
  t.match(header(hit, 'cache-status'), /^rp4; hit/, 'stored')
  t.equal(hit.body.toString(), 'first' + rest)
  t.equal(count('/leave'), 1, 'still one backend request')
  for (const other of others) other.destroy()

  // nobody else reading: the backend request is dropped with its client, as without a cache
  const alone = await RawClient.connect(proxy.port)
  await alone.write(get('/alone'))
  await alone.until(() => alone.text().endsWith('first'), 5000, 'the first piece')
  const conn = origin.connections.find(c => c.requests.some(r => r.url === '/alone'))
  alone.reset()
  await origin.until(() => conn?.released === true, 5000, 'the backend connection closed')
  t.pass('the backend connection closed when its only client left')
  const again = await RawClient.connect(proxy.port)
  await again.write(get('/alone'))
  await poll(() => count('/alone') === 2, 'nothing stored, nothing waited on: the next request goes to the backend')
  t.notMatch(again.text(), /cache-status: rp4; hit/i)
  again.reset()
})

t.test('coalescing: a Range request that misses goes to the backend alone; the full requests that come meanwhile wait on one of their own', async t => {
  const rangeHeld = deferred<void>()
  const fullHeld = deferred<void>()
  const body = '0123456789'.repeat(100)
  const ranged = (req: OriginRequest): boolean => header(req, 'range') !== undefined
  const { proxy, origin } = await setup(t, async req => {
    if (ranged(req)) {
      await rangeHeld.promise
      return 'HTTP/1.1 206 Partial Content\r\nCache-Control: max-age=60\r\nContent-Range: bytes 0-4/1000\r\nContent-Length: 5\r\n\r\n01234'
    }
    await fullHeld.promise
    return cc('max-age=60', body)
  })
  const full = (): number => origin.requests.filter(r => r.url === '/media' && !ranged(r)).length
  const a = await RawClient.connect(proxy.port)
  await a.write(get('/media', 'Range: bytes=0-4'))
  await origin.until(() => origin.requests.length === 1, 5000, 'the Range request at the backend')
  const [b, c] = await Promise.all([RawClient.connect(proxy.port), RawClient.connect(proxy.port)])
  await b.write(get('/media'))
  // the first full request fetches for the others while the Range one is still unanswered
  await origin.until(() => full() === 1, 5000, 'a full request at the backend, the Range one still held')
  await c.write(get('/media'))
  await proxy.events.until(() => proxy.events.requests.length === 3, 5000, 'the third request taken in')
  rangeHeld.resolve()
  fullHeld.resolve()
  const [ra, rb, rc] = [await a.response(0), await b.response(0), await c.response(0)]
  t.equal(ra.head.line[1], '206', 'the Range request: the backend\'s 206')
  t.equal(ra.body.toString(), '01234')
  t.same([rb.body.toString(), rc.body.toString()], [body, body], 'the full ones: the whole body')
  t.equal(header(rb, 'cache-status'), 'rp4; fwd=uri-miss; fwd-status=200; stored')
  t.equal(header(rc, 'cache-status'), 'rp4; hit; detail=coalesced', 'the third waited on the second')
  t.equal(full(), 1, 'one full request at the backend')
  const hit = await one(proxy.port, get('/media', 'Range: bytes=10-19'))
  t.same([hit.head.line[1], hit.body.toString(), header(hit, 'content-range')], ['206', '0123456789', 'bytes 10-19/1000'], 'a later Range request: answered from the stored response')
  t.equal(origin.requests.length, 2)
  for (const client of [a, b, c]) client.destroy()
})

t.test('a miss for Range: bytes=0- (a media player\'s first request) fetches the whole response, stores it, and answers the 206 asked for; later ranges are hits', async t => {
  const body = '0123456789'.repeat(100)
  const fullHeld = deferred<void>()
  const { proxy, origin, count } = await setup(t, async req => {
    if (req.url === '/held') await fullHeld.promise
    if (req.url === '/chunked') return 'HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n'
    if (req.url === '/private') return cc('private, max-age=60', body)
    return cc('max-age=60', body, 'ETag: "v1"', 'Last-Modified: Wed, 01 May 2024 12:00:00 GMT')
  })
  const first = await one(proxy.port, get('/video', 'Range: bytes=0-'))
  t.equal(header(origin.requests[0]!, 'range'), undefined, 'the backend is asked for the whole response (RFC 9111 §3.4: a cache may store a complete response for a range request)')
  t.same([first.head.line[1], header(first, 'content-range'), header(first, 'content-length')], ['206', 'bytes 0-999/1000', '1000'], 'the client gets the 206 it asked for')
  t.equal(first.body.toString(), body, 'with every byte')
  t.equal(header(first, 'cache-status'), 'rp4; fwd=uri-miss; fwd-status=200; stored')
  const part = await one(proxy.port, get('/video', 'Range: bytes=990-'))
  t.same([part.head.line[1], part.body.toString(), header(part, 'content-range')], ['206', '0123456789', 'bytes 990-999/1000'], 'a later range: a hit')
  t.match(header(part, 'cache-status'), /^rp4; hit/)
  const whole = await one(proxy.port, get('/video'))
  t.same([whole.head.line[1], whole.body.toString()], ['200', body], 'a plain request: the stored 200')
  t.equal(count('/video'), 1, 'one request at the backend for all three')

  // If-Range: a validator of the response gives the 206, another one the whole 200
  const matching = await one(proxy.port, get('/a', 'Range: bytes=0-', 'If-Range: "v1"'))
  t.same([matching.head.line[1], header(origin.requests.at(-1)!, 'if-range')], ['206', undefined], 'If-Range that holds: 206, and not sent upstream')
  const stale = await one(proxy.port, get('/b', 'Range: bytes=0-', 'If-Range: "v0"'))
  t.same([stale.head.line[1], stale.body.toString()], ['200', body], 'If-Range that does not hold: the whole response as a 200')
  const dated = await one(proxy.port, get('/c', 'Range: bytes=0-', 'If-Range: Wed, 01 May 2024 12:00:00 GMT'))
  t.equal(dated.head.line[1], '206', 'If-Range with the Last-Modified date: 206')

  // no length to state, or not stored: the client still gets an answer for bytes=0-
  const chunked = await one(proxy.port, get('/chunked', 'Range: bytes=0-'))
  t.same([chunked.head.line[1], chunked.body.toString()], ['200', 'abcde'], 'no Content-Length: the 200 (a server may ignore Range)')
  const notStored = await one(proxy.port, get('/private', 'Range: bytes=0-'))
  t.same([notStored.head.line[1], header(notStored, 'content-range'), notStored.body.length], ['206', 'bytes 0-999/1000', 1000], 'not storable: the whole response as the 206 all the same')
  t.equal(header(origin.requests.at(-1)!, 'range'), undefined)

  // other ranges still go to the backend as they are, and alone
  await one(proxy.port, get('/other', 'Range: bytes=5-9'))
  t.equal(header(origin.requests.at(-1)!, 'range'), 'bytes=5-9', 'bytes=5-9 on a miss: the backend gets the Range')

  // full requests that miss while bytes=0- fetches wait on it
  const a = await RawClient.connect(proxy.port)
  await a.write(get('/held', 'Range: bytes=0-'))
  await origin.until(() => count('/held') === 1, 5000, 'the bytes=0- request at the backend')
  const b = await RawClient.connect(proxy.port)
  await b.write(get('/held'))
  await proxy.events.until(() => proxy.events.requests.filter(r => r.url === '/held').length === 2, 5000, 'the full request taken in')
  fullHeld.resolve()
  const [ra, rb] = [await a.response(0), await b.response(0)]
  t.same([ra.head.line[1], rb.head.line[1]], ['206', '200'])
  t.same([ra.body.toString(), rb.body.toString()], [body, body])
  t.equal(header(rb, 'cache-status'), 'rp4; hit; detail=coalesced', 'the full request waited on the bytes=0- one')
  t.equal(count('/held'), 1)
  a.destroy()
  b.destroy()
})

t.test('ranges of a response still arriving: served against its declared length, each byte as it comes', async t => {
  const body = Buffer.from(Array.from({ length: 1000 }, (_, i) => String.fromCharCode(0x41 + (i % 26))).join(''), 'latin1')
  const rest = new PassThrough()
  const { proxy, count } = await setup(t, () => ({ bytes: `HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: ${body.length}\r\n\r\n`, stream: rest }))
  rest.write(body.subarray(0, 400))
  const a = await RawClient.connect(proxy.port)
  t.teardown(() => a.destroy())
  await a.write(get('/film', 'Range: bytes=0-'))
  await a.until(() => a.raw().length >= 400, 5000, 'the first 400 bytes at the client that fetches')
  // already there: answered at once
  const present = await one(proxy.port, get('/film', 'Range: bytes=100-109'))
  t.same([present.head.line[1], header(present, 'content-range'), present.body.toString('latin1')], ['206', 'bytes 100-109/1000', body.subarray(100, 110).toString('latin1')], 'a range already received: at once')
  t.equal(header(present, 'cache-status'), 'rp4; hit; detail=coalesced')
  // not there yet: waits for its bytes
  const b = await RawClient.connect(proxy.port)
  t.teardown(() => b.destroy())
  await b.write(get('/film', 'Range: bytes=600-699'))
  const suffix = await RawClient.connect(proxy.port)
  t.teardown(() => suffix.destroy())
  await suffix.write(get('/film', 'Range: bytes=-5'))
  const unsatisfiable = await one(proxy.port, get('/film', 'Range: bytes=1000-'))
  t.same([unsatisfiable.head.line[1], header(unsatisfiable, 'content-range')], ['416', 'bytes */1000'], 'past the declared length: 416')
  t.equal(b.responses.length, 0, 'bytes 600-699 not answered before they came')
  rest.end(body.subarray(400))
  const [rb, rs, ra] = [await b.response(0), await suffix.response(0), await a.response(0)]
  t.same([rb.head.line[1], header(rb, 'content-range'), rb.body.toString('latin1')], ['206', 'bytes 600-699/1000', body.subarray(600, 700).toString('latin1')], 'bytes 600-699, once they came')
  t.same([header(rs, 'content-range'), rs.body.toString('latin1')], ['bytes 995-999/1000', body.subarray(995).toString('latin1')], 'the last 5 bytes')
  t.equal(ra.body.toString('latin1'), body.toString('latin1'), 'the client that fetched: every byte')
  t.equal(count('/film'), 1, 'one request at the backend')
})

t.test('hostile Range requests on a miss: only one plain bytes=0- fetches the whole response; the rest go to the backend as sent', async t => {
  const body = '0123456789'.repeat(100)
  const cut = new PassThrough()
  let cuts = 0
  const { proxy, origin, count } = await setup(t, req => req.url === '/cut' && cuts++ === 0
    ? { bytes: 'HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 1000\r\n\r\n', stream: cut, close: 'destroy' }
    : cc('max-age=60', body, 'ETag: "v1"'))
  const cases: Array<[string, string[]]> = [
    ['/two-headers', ['Range: bytes=0-', 'Range: bytes=0-']],
    ['/multi', ['Range: bytes=0-,5-']],
    ['/first-byte', ['Range: bytes=0-0']],
    ['/other-unit', ['Range: items=0-']],
    ['/no-dash', ['Range: bytes=0']],
  ]
  for (const [url, fields] of cases) {
    await one(proxy.port, get(url, ...fields))
    t.same(origin.requests.at(-1)!.head.headers.filter(([n]) => n.toLowerCase() === 'range').map(([, v]) => v), fields.map(f => f.slice('Range: '.length)),
      `${fields.join(' + ')}: the backend gets the Range as sent, and nothing is fetched for others`)
  }
  const garbled = await one(proxy.port, get('/garbled', 'Range: bytes=0-', 'If-Range: "'))
  t.same([garbled.head.line[1], garbled.body.toString()], ['200', body], 'an If-Range that names nothing: the whole 200')
  // split at every byte: the same answer
  const bytewise = await RawClient.connect(proxy.port)
  t.teardown(() => bytewise.destroy())
  await bytewise.writeBytewise(get('/bytewise', 'Range: bytes=0-'))
  const split = await bytewise.response(0)
  t.same([split.head.line[1], header(split, 'content-range'), split.body.length], ['206', 'bytes 0-999/1000', 1000], 'sent a byte at a time: the 206')
  // a backend that declares 1000 bytes and stops at 400: the range past them fails, nothing is stored
  cut.write(body.slice(0, 400))
  const filler = await RawClient.connect(proxy.port)
  t.teardown(() => filler.destroy())
  await filler.write(get('/cut', 'Range: bytes=0-'))
  await filler.until(() => filler.raw().length >= 400, 5000, 'the first 400 bytes')
  const waiting = await RawClient.connect(proxy.port)
  t.teardown(() => waiting.destroy())
  await waiting.write(get('/cut', 'Range: bytes=600-699'))
  await proxy.events.until(() => proxy.events.requests.filter(r => r.url === '/cut').length === 2, 5000, 'the range request taken in')
  // the backend's connection drops after 400 of its 1000 bytes
  cut.end()
  await waiting.waitClose(5000)
  t.equal(waiting.responses.length, 0, 'the waiting range: no complete response, the connection closed (the truncation shows)')
  await filler.waitClose(5000)
  const again = await one(proxy.port, get('/cut', 'Range: bytes=0-'))
  t.equal(count('/cut'), 2, 'not stored: the next request goes to the backend')
  t.same([again.head.line[1], header(again, 'cache-status')], ['206', 'rp4; fwd=uri-miss; fwd-status=200; stored'], 'a miss, fetched whole again')
})

t.test('RFC 5861 stale-while-revalidate: stale served at once, refreshed in the background', async t => {
  let n = 0
  const { proxy, count } = await setup(t, () => cc('max-age=0, stale-while-revalidate=60', `v${n++}`))
  t.equal((await one(proxy.port, get('/swr'))).body.toString(), 'v0')
  const stale = await one(proxy.port, get('/swr'))
  t.equal(stale.body.toString(), 'v0', 'the stale copy')
  t.match(header(stale, 'cache-status'), /stale-while-revalidate/)
  await poll(() => count('/swr') === 2, 'the background revalidation')
  await poll(() => proxy.events.responses.length >= 3, 'it completed')
  t.equal((await one(proxy.port, get('/swr'))).body.toString(), 'v1', 'the refreshed copy')
})

t.test('RFC 5861 stale-if-error: a 5xx or a dead backend answered with the stale copy; must-revalidate forbids it', async t => {
  let fail = false
  const origin = await startOrigin(t, req => fail ? (req.url === '/mr' ? 'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n' : 'HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\noops')
    : req.url === '/mr' ? cc('max-age=0, must-revalidate', 'strict') : cc('max-age=0, stale-if-error=300', 'good'))
  const proxy = await startProxy(t, { targets: [origin.target], cache: { size: '1m' } })
  await one(proxy.port, get('/sie'))
  await one(proxy.port, get('/mr'))
  fail = true
  const res = await one(proxy.port, get('/sie'))
  t.equal(res.head.line[1], '200')
  t.equal(res.body.toString(), 'good')
  t.match(header(res, 'cache-status'), /fwd-status=500; detail=stale-if-error/)
  t.equal((await one(proxy.port, get('/mr'))).head.line[1], '503', '§4.2.4 must-revalidate: the error passes')
  await origin.close()
  const dead = await one(proxy.port, get('/sie'))
  t.equal(dead.body.toString(), 'good', 'the backend unreachable (rp4 502): stale served')
  t.match(header(dead, 'cache-status'), /fwd-status=502/)
})

t.test("stale-if-error as the route's default", async t => {
  let fail = false
  const { proxy } = await setup(t, () => fail ? 'HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n' : cc('max-age=0', 'kept'), { staleIfError: '1m' })
  await one(proxy.port, get('/d'))
  fail = true
  t.equal((await one(proxy.port, get('/d'))).body.toString(), 'kept')
})

t.test('§4.4 unsafe methods invalidate the URI, Location and Content-Location', async t => {
  const { proxy, count } = await setup(t, req => req.method === 'POST'
    ? ok('done', ['Location: /loc', 'Content-Location: http://h/cl'])
    : cc('max-age=60'))
  for (const url of ['/u', '/loc', '/cl', '/other']) await one(proxy.port, get(url))
  await one(proxy.port, 'POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n')
  for (const url of ['/u', '/loc', '/cl', '/other']) await one(proxy.port, get(url))
  t.equal(count('/u'), 3, 'the request URI: GET, the POST, GET again')
  t.equal(count('/loc'), 2, 'Location')
  t.equal(count('/cl'), 2, 'Content-Location')
  t.equal(count('/other'), 1, 'others kept')
})

t.test('purge by URL and by prefix (library API)', async t => {
  const { proxy, count } = await setup(t, () => cc('max-age=60'))
  for (const url of ['/p/1', '/p/2', '/q']) await one(proxy.port, get(url))
  t.equal(proxy.proxy.purge('http://h/p/1'), 1)
  t.equal(proxy.proxy.purgePrefix('http://h/p/'), 1)
  for (const url of ['/p/1', '/p/2', '/q']) await one(proxy.port, get(url))
  t.same([count('/p/1'), count('/p/2'), count('/q')], [2, 2, 1])
})

t.test('cache and compression: stored once uncompressed, each hit compressed per client', async t => {
  const body = JSON.stringify(Array.from({ length: 500 }, (_, i) => ({ i })))
  const origin = await startOrigin(t, () => ok(body, ['Content-Type: application/json', 'Cache-Control: max-age=60']))
  const proxy = await startProxy(t, { targets: [origin.target], cache: true, compress: true })
  const gz = await one(proxy.port, get('/j', 'Accept-Encoding: gzip'))
  t.equal(gunzipSync(gz.body).toString(), body)
  const plain = await one(proxy.port, get('/j'))
  t.equal(plain.body.toString(), body, 'a hit, identity for this client')
  t.match(header(plain, 'cache-status'), /hit/)
  const gz2 = await one(proxy.port, get('/j', 'Accept-Encoding: gzip'))
  t.equal(header(gz2, 'content-encoding'), 'gzip')
  t.equal(gunzipSync(gz2.body).toString(), body, 'a hit, gzip for this one')
  t.equal(origin.requests.length, 1)
})

t.test('the memory store is bounded: least recently used entries go', async t => {
  const big = 'x'.repeat(40 * 1024)
  const { proxy, count } = await setup(t, () => cc('max-age=60', big), { size: '100k' })
  for (const url of ['/1', '/2', '/3', '/4']) await one(proxy.port, get(url))
  await one(proxy.port, get('/1'))
  t.equal(count('/1'), 2, 'the oldest was dropped')
  await one(proxy.port, get('/4'))
  t.equal(count('/4'), 1, 'the newest kept')
})

/**
 * A disk store in a temporary directory holding one entry for each of `urls` (`origin URL` as the
 * body), written by a proxy that has closed since: the files are the spec's to damage.
 */
async function diskStore (t: Test, urls: string[]): Promise<{ dir: string, origin: Origin, files: () => string[] }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-cache-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const origin = await startOrigin(t, req => cc('max-age=3600', `origin ${req.url}`))
  const first = await startProxy(t, { targets: [origin.target], cache: { size: '1m', dir } })
  for (const url of urls) await one(first.port, get(url))
  const files = (): string[] => readdirSync(dir).filter(f => f.endsWith('.entry'))
  await poll(() => files().length === urls.length, `${urls.length} entries written`)
  await first.proxy.close()
  return { dir, origin, files }
}

t.test('disk store: entries survive a restart; a corrupt, short or half-written file is dropped, never served', async t => {
  const { dir, origin, files } = await diskStore(t, ['/keep', '/corrupt', '/short'])
  // damage two of them the way a crash or a bad disk would, and leave a torn temporary file
  const byUrl = new Map(files().map(f => [/"primary":"http:\/\/h(\/\w+)"/.exec(readFileSync(path.join(dir, f), 'latin1'))?.[1], f]))
  const corrupt = path.join(dir, byUrl.get('/corrupt')!)
  const bytes = readFileSync(corrupt)
  bytes[bytes.length - 1] ^= 0xff
  writeFileSync(corrupt, bytes)
  const short = path.join(dir, byUrl.get('/short')!)
  writeFileSync(short, readFileSync(short).subarray(0, -3))
  writeFileSync(path.join(dir, 'deadbeef.entry.123.tmp'), 'half')
  const before = origin.requests.length
  const second = await startProxy(t, { targets: [origin.target], cache: { size: '1m', dir } })
  await poll(() => !second.proxy.stats().caches[0].loading, 'the directory read back')
  t.same(second.proxy.stats().caches[0], { route: 'default', entries: 1, bytes: second.proxy.stats().caches[0].bytes, loading: false, loaded: 1, dropped: 3 })
  t.same(files().length, 1, 'the damaged files deleted')
  t.notOk(readdirSync(dir).some(f => f.endsWith('.tmp')), 'the torn temporary file deleted')
  const kept = await one(second.port, get('/keep'))
  t.equal(kept.body.toString(), 'origin /keep')
  t.match(header(kept, 'cache-status'), /^rp4; hit/, 'served from the disk store after the restart')
  t.equal(origin.requests.length, before, 'the backend not asked')
  const redone = await one(second.port, get('/corrupt'))
  t.equal(redone.body.toString(), 'origin /corrupt', 'the corrupt entry was not served')
  t.match(header(redone, 'cache-status'), /uri-miss/)
  t.match(header(await one(second.port, get('/short')), 'cache-status'), /uri-miss/, 'nor the short one')
  await second.proxy.close()
})

t.test('disk store: an entry file rewritten with a CR or LF in a field is dropped, whatever its checksum says', async t => {
  const { dir, origin, files } = await diskStore(t, ['/name', '/value', '/reason'])
  // the checksum covers the body: a head rewritten with a consistent length line still reads back
  for (const file of files()) {
    // the layout: a magic line, the JSON description's length on a line, the description, a newline, the body
    const bytes = readFileSync(path.join(dir, file))
    const magicEnd = bytes.indexOf(10) + 1
    const lengthEnd = bytes.indexOf(10, magicEnd)
    const magic = bytes.subarray(0, magicEnd).toString('latin1')
    const jsonLength = Number(bytes.subarray(magicEnd, lengthEnd).toString('latin1'))
    const firstLine = lengthEnd
    const json = JSON.parse(bytes.subarray(firstLine + 1, firstLine + 1 + jsonLength).toString())
    if (json.primary.endsWith('/name')) json.headers.push('X-Evil\r\nInjected', 'yes')
    else if (json.primary.endsWith('/value')) json.headers.push('X-Evil', 'a\r\nInjected: yes')
    else json.reason = 'OK\r\nInjected: yes'
    const text = Buffer.from(JSON.stringify(json))
    writeFileSync(path.join(dir, file), Buffer.concat([Buffer.from(magic + text.length + '\n', 'latin1'), text, bytes.subarray(firstLine + 1 + jsonLength)]))
  }
  const second = await startProxy(t, { targets: [origin.target], cache: { size: '1m', dir } })
  await poll(() => !second.proxy.stats().caches[0].loading, 'the directory read back')
  t.same(second.proxy.stats().caches[0].dropped, 3, 'all three dropped')
  for (const url of ['/name', '/value', '/reason']) {
    const res = await one(second.port, get(url))
    t.equal(res.body.toString(), `origin ${url}`, `${url}: from the backend`)
    t.notOk(res.head.text.includes('Injected'), `${url}: nothing injected`)
  }
  await second.proxy.close()
})

t.test('a response over maxEntrySize passes uncached, known length or not', async t => {
  const big = 'y'.repeat(300 * 1024)
  const { proxy, count } = await setup(t, req => req.url === '/sized'
    ? cc('max-age=60', big)
    : `HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n${(big.length).toString(16)}\r\n${big}\r\n0\r\n\r\n`, { maxEntrySize: '100k' })
  for (const url of ['/sized', '/chunked']) {
    const a = await one(proxy.port, get(url))
    t.equal(a.bodyLength, big.length, `${url}: whole`)
    await one(proxy.port, get(url))
    t.equal(count(url), 2, `${url}: not stored`)
  }
  t.equal(proxy.proxy.stats().caches[0].entries, 0)
})

t.test('a large entry received in many pieces: every hit gets it whole and exact, also while a coalesced reader still walks the pieces', async t => {
  // 12 MiB: more than loopback's socket buffers hold, so that a paused client keeps its reader mid-way
  const body = Buffer.alloc(12 << 20)
  for (let i = 0; i < body.length; i++) body[i] = (i * 7 + (i >> 11)) & 0xff
  const want = createHash('sha256').update(body).digest('hex')
  const release = deferred<void>()
  const { proxy, count } = await setup(t, () => ({
    bytes: `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nCache-Control: max-age=60\r\nETag: "big"\r\nContent-Length: ${body.length}\r\n\r\n`,
    stream: Readable.from((async function * () {
      yield body.subarray(0, 1000)
      await release.promise
      // uneven pieces, as a backend's reads come
      for (let at = 1000; at < body.length;) {
        const end = Math.min(body.length, at + 40_000 + (at % 7919))
        yield body.subarray(at, end)
        at = end
      }
    })(), { objectMode: false }),
  }), { size: '64m', maxEntrySize: '32m' })
  const filler = await RawClient.connect(proxy.port)
  t.teardown(() => filler.destroy())
  await filler.write(get('/big'))
  await poll(() => filler.reader.messages.length > 0 || filler.raw().includes('\r\n\r\n'), 'the head of the first response')
  // a second request joins the entry being filled, and then stops reading
  const slow = await RawClient.connect(proxy.port)
  t.teardown(() => slow.destroy())
  await slow.write(get('/big'))
  await poll(() => slow.raw().includes('\r\n\r\n'), 'the head of the coalesced response')
  slow.socket.pause()
  release.resolve()
  const first = await filler.response(0, 20_000)
  t.equal(first.sha256, want, 'the first response, from the backend: every byte')
  // the entry is complete; the paused reader is still in it
  for (let i = 0; i < 3; i++) {
    const hit = await one(proxy.port, get('/big'))
    t.equal(hit.sha256, want, `hit ${i}: every byte`)
    t.equal(header(hit, 'content-length'), String(body.length))
    t.match(header(hit, 'cache-status'), /^rp4; hit/)
  }
  const part = await one(proxy.port, get('/big', 'Range: bytes=1000000-1000099'))
  t.equal(part.head.line[1], '206')
  t.ok(part.body.equals(body.subarray(1_000_000, 1_000_100)), 'a range across the pieces')
  slow.socket.resume()
  const late = await slow.response(0, 20_000)
  t.equal(late.sha256, want, 'the paused coalesced reader: every byte, whatever the hits did meanwhile')
  t.match(header(late, 'cache-status'), /coalesced/)
  t.equal(count('/big'), 1, 'one backend request in all')
})

t.test('a response filter on cache hits: what it changes is sent on every hit, and a hit it leaves alone gets the stored head', async t => {
  const origin = await startOrigin(t, () => cc('max-age=600', 'stored body', 'ETag: "e1"', 'X-Origin: o'))
  const filter: Filter = {
    name: 'edit',
    onResponse (s, head) {
      if (s.request.headers.get('x-edit') === 'value') head.headers.set('x-origin', 'changed')
      if (s.request.headers.get('x-edit') === 'drop') head.headers.delete('etag')
    },
  }
  const proxy = await startProxy(t, { targets: [origin.target], cache: { size: '1m' }, filters: [filter] } as never)
  await one(proxy.port, get('/e'))
  const kinds = ['', 'value', '', 'drop', '', 'value']
  const res = await exchange(proxy.port, kinds.map(kind => kind === '' ? get('/e') : get('/e', `X-Edit: ${kind}`)).join(''), { responses: kinds.length })
  t.equal(res.responses.length, kinds.length)
  for (let i = 0; i < kinds.length; i++) {
    const r = res.responses[i]
    t.equal(r.body.toString(), 'stored body')
    t.match(header(r, 'cache-status'), /^rp4; hit/)
    t.equal(header(r, 'x-origin'), kinds[i] === 'value' ? 'changed' : 'o', `hit ${i}: X-Origin`)
    t.equal(header(r, 'etag'), kinds[i] === 'drop' ? undefined : '"e1"', `hit ${i}: ETag`)
  }
  t.equal(origin.requests.length, 1)
})
