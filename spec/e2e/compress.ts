/**
 * Response compression end to end: negotiation, the headers it changes (Content-Encoding, Vary,
 * Content-Length, ETag), every case it must leave alone, streamed responses flushed as they come,
 * and clients that decode it (curl --compressed, fetch, a page and its assets).
 */
import { execFile } from 'node:child_process'
import { Readable } from 'node:stream'
import { brotliDecompressSync, createGunzip, gunzipSync } from 'node:zlib'
import t from 'tap'
import { exchange } from '../helpers/client.js'
import { header } from '../helpers/framing.js'
import { ok, startOrigin, type OriginRequest, type Reply } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import { deferred, within } from '../helpers/wait.js'

const JSON_BODY = JSON.stringify(Array.from({ length: 2000 }, (_, i) => ({ id: i, name: `item ${i}`, tags: ['a', 'b'] })))

function get (path: string, ...extra: string[]): string {
  return [`GET ${path} HTTP/1.1`, 'Host: h', ...extra].map(x => x + '\r\n').join('') + '\r\n'
}

function origin (req: OriginRequest): Reply {
  const json = ['Content-Type: application/json', 'ETag: "v1"']
  switch (req.url) {
    case '/json': return ok(JSON_BODY, json)
    case '/small': return ok('{"a":1}', ['Content-Type: application/json'])
    case '/png': return ok(Buffer.alloc(4096, 1), ['Content-Type: image/png'])
    case '/encoded': return ok(Buffer.from('already'), ['Content-Type: text/plain', 'Content-Encoding: gzip'])
    case '/no-transform': return ok(JSON_BODY, [...json, 'Cache-Control: public, no-transform'])
    case '/vary': return ok(JSON_BODY, [...json, 'Vary: Origin'])
    case '/no-content': return 'HTTP/1.1 204 No Content\r\n\r\n'
    case '/not-modified': return 'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Type: application/json\r\n\r\n'
    case '/partial': return `HTTP/1.1 206 Partial Content\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1999/5000\r\nContent-Length: 2000\r\n\r\n${'x'.repeat(2000)}`
    case '/chunked': return `HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n${(2000).toString(16)}\r\n${'<p>'.repeat(666)}<p\r\n0\r\n\r\n`
    case '/untyped': return ok('x'.repeat(3000))
    default: return ok('?', ['Content-Type: text/plain'])
  }
}

t.test('gzip and brotli: headers changed, body decodes to the original', async t => {
  const o = await startOrigin(t, origin)
  const { port } = await startProxy(t, { targets: [o.target], compress: true })
  const gz = (await exchange(port, get('/json', 'Accept-Encoding: gzip'), { responses: 1 })).responses[0]
  t.equal(header(gz, 'content-encoding'), 'gzip')
  t.equal(header(gz, 'content-length'), undefined, 'Content-Length dropped')
  t.equal(gz.framing, 'chunked')
  t.equal(header(gz, 'vary'), 'Accept-Encoding')
  t.equal(header(gz, 'etag'), 'W/"v1"', 'the ETag made weak')
  t.equal(gunzipSync(gz.body).toString(), JSON_BODY)
  t.ok(gz.bodyLength < JSON_BODY.length / 4, `compressed ${JSON_BODY.length} → ${gz.bodyLength}`)

  const br = (await exchange(port, get('/json', 'Accept-Encoding: gzip, deflate, br'), { responses: 1 })).responses[0]
  t.equal(header(br, 'content-encoding'), 'br', 'brotli preferred on equal weights')
  t.equal(brotliDecompressSync(br.body).toString(), JSON_BODY)

  const q = (await exchange(port, get('/json', 'Accept-Encoding: br;q=0, gzip;q=0.5'), { responses: 1 })).responses[0]
  t.equal(header(q, 'content-encoding'), 'gzip', 'br;q=0 refuses brotli')

  const chunked = (await exchange(port, get('/chunked', 'Accept-Encoding: gzip'), { responses: 1 })).responses[0]
  t.equal(header(chunked, 'content-encoding'), 'gzip', 'a chunked response is compressed too')
  t.equal(gunzipSync(chunked.body).toString(), '<p>'.repeat(666) + '<p')

  const vary = (await exchange(port, get('/vary', 'Accept-Encoding: gzip'), { responses: 1 })).responses[0]
  t.equal(header(vary, 'vary'), 'Origin, Accept-Encoding', 'Vary kept and extended')

  const none = (await exchange(port, get('/json', 'Accept-Encoding: identity'), { responses: 1 })).responses[0]
  t.equal(header(none, 'content-encoding'), undefined)
  t.equal(header(none, 'content-length'), String(JSON_BODY.length), 'identity: the length stays')
  t.equal(header(none, 'vary'), 'Accept-Encoding', 'Vary all the same: the answer depended on Accept-Encoding')
  t.equal(header(none, 'etag'), '"v1"', 'the ETag stays strong')
  t.equal(none.body.toString(), JSON_BODY)
  const absent = (await exchange(port, get('/json'), { responses: 1 })).responses[0]
  t.equal(header(absent, 'content-encoding'), undefined, 'no Accept-Encoding: identity')
})

t.test('left alone: small, other types, encoded, no-transform, HEAD, 204, 206, 304, Range', async t => {
  const o = await startOrigin(t, origin)
  const { port } = await startProxy(t, { targets: [o.target], compress: true })
  const ae = 'Accept-Encoding: gzip, br'
  const untouched = async (request: string, label: string, vary: boolean): Promise<void> => {
    const res = (await exchange(port, request, { responses: 1 })).responses[0]
    t.equal(header(res, 'content-encoding') ?? null, request.includes('/encoded') ? 'gzip' : null, `${label}: not compressed`)
    t.equal(header(res, 'vary') === 'Accept-Encoding', vary, `${label}: Vary ${vary ? 'added' : 'not added'}`)
  }
  await untouched(get('/small', ae), 'under the minimum size', false)
  await untouched(get('/png', ae), 'image/png', false)
  await untouched(get('/untyped', ae), 'no Content-Type', false)
  await untouched(get('/encoded', ae), 'already encoded', false)
  await untouched(get('/no-transform', ae), 'Cache-Control: no-transform', false)
  await untouched(`HEAD /json HTTP/1.1\r\nHost: h\r\n${ae}\r\n\r\n`, 'HEAD', true)
  await untouched(get('/no-content', ae), '204', false)
  await untouched(get('/partial', ae), '206', false)
  await untouched(get('/not-modified', ae), '304', false)
  await untouched(get('/json', ae, 'Range: bytes=0-99'), 'a request with Range', true)
  const head = (await exchange(port, `HEAD /json HTTP/1.1\r\nHost: h\r\n${ae}\r\n\r\n`, { responses: 1 })).responses[0]
  t.equal(header(head, 'content-length'), String(JSON_BODY.length), 'HEAD keeps the length')
  const small = (await exchange(port, get('/small', ae), { responses: 1 })).responses[0]
  t.equal(small.body.toString(), '{"a":1}')
})

t.test('settings: types, minimum size, encodings, levels', async t => {
  const o = await startOrigin(t, origin)
  const { port } = await startProxy(t, { targets: [o.target], compress: { types: ['image/png'], minSize: 0, encodings: ['gzip'], gzipLevel: 1 } })
  const png = (await exchange(port, get('/png', 'Accept-Encoding: br, gzip'), { responses: 1 })).responses[0]
  t.equal(header(png, 'content-encoding'), 'gzip', 'only gzip offered')
  t.same(gunzipSync(png.body), Buffer.alloc(4096, 1))
  const json = (await exchange(port, get('/json', 'Accept-Encoding: gzip'), { responses: 1 })).responses[0]
  t.equal(header(json, 'content-encoding'), undefined, 'JSON is not in this list')
})

t.test('a streamed response is flushed as it is produced (server-sent events)', async t => {
  const next = deferred<void>()
  const o = await startOrigin(t, () => ({
    bytes: 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n' + chunk('data: one\n\n'),
    stream: Readable.from((async function * () {
      await next.promise
      yield Buffer.from(chunk('data: two\n\n') + '0\r\n\r\n')
    })(), { objectMode: false }),
  }))
  const { port } = await startProxy(t, { targets: [o.target], compress: true })
  for (const coding of ['gzip', 'br']) {
    const res = await fetch(`http://127.0.0.1:${port}/events`, { headers: { 'Accept-Encoding': coding } })
    t.equal(res.headers.get('content-encoding'), coding)
    const reader = res.body!.getReader()
    let text = ''
    while (!text.includes('one')) {
      const { value, done } = await within(reader.read(), 5000, `the first event (${coding}) before the second is sent`)
      if (done) break
      text += Buffer.from(value).toString()
    }
    t.equal(text, 'data: one\n\n', `${coding}: the first event arrived and decoded alone`)
    if (coding === 'gzip') next.resolve()
    else break
    let rest = ''
    for (;;) {
      const { value, done } = await within(reader.read(), 5000, 'the rest')
      if (done) break
      rest += Buffer.from(value).toString()
    }
    t.equal(rest, 'data: two\n\n')
  }
})

function chunk (text: string): string {
  return Buffer.byteLength(text).toString(16) + '\r\n' + text + '\r\n'
}

t.test('a large body through gzip to a raw client: every byte, decoded', async t => {
  const big = Buffer.from('0123456789abcdef'.repeat(1 << 18)) // 4 MiB
  const o = await startOrigin(t, () => ok(big, ['Content-Type: text/plain']))
  const { port } = await startProxy(t, { targets: [o.target], compress: true })
  const res = (await exchange(port, get('/big', 'Accept-Encoding: gzip'), { responses: 1, ms: 30_000 })).responses[0]
  const gunzip = createGunzip()
  const parts: Buffer[] = []
  gunzip.on('data', (d: Buffer) => parts.push(d))
  await new Promise<void>((resolve, reject) => { gunzip.on('end', resolve); gunzip.on('error', reject); gunzip.end(res.body) })
  t.ok(Buffer.concat(parts).equals(big), '4 MiB decoded equal')
})

t.test('curl --compressed, and a page with its assets as a browser asks for them', async t => {
  const page = '<!doctype html><html><head><link rel="stylesheet" href="/app.css"><script src="/app.js"></script></head><body>' + '<p>hello</p>'.repeat(200) + '</body></html>'
  const css = 'body { color: red; }\n'.repeat(200)
  const js = 'console.log("hi");\n'.repeat(200)
  const o = await startOrigin(t, req => req.url === '/' ? ok(page, ['Content-Type: text/html; charset=utf-8'])
    : req.url === '/app.css' ? ok(css, ['Content-Type: text/css']) : ok(js, ['Content-Type: text/javascript']))
  const { port } = await startProxy(t, { targets: [o.target], compress: true })
  for (const accept of [[], ['-H', 'Accept-Encoding: gzip']]) {
    const out = await new Promise<string>((resolve, reject) => {
      execFile('curl', ['-sS', '--max-time', '20', '--compressed', ...accept, '-D', '-', `http://127.0.0.1:${port}/`], (err, stdout) => err !== null ? reject(err) : resolve(stdout))
    })
    const split = out.indexOf('\r\n\r\n')
    t.equal(out.slice(split + 4), page, 'curl decodes it')
    t.match(out.slice(0, split), accept.length === 0 ? /content-encoding: (br|gzip)/i : /content-encoding: gzip/i)
  }
  for (const [path, want] of [['/', page], ['/app.css', css], ['/app.js', js]]) {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { 'Accept-Encoding': 'gzip, deflate, br' } })
    t.equal(res.headers.get('content-encoding'), 'br', `${path}: compressed`)
    t.equal(await res.text(), want, `${path}: decoded equal`)
  }
})
