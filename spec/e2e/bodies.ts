/**
 * Message bodies and their absence: request framing kept (Content-Length, chunked without its
 * trailers), responses that never carry a body (HEAD, 204, 304, 1xx), interim responses relayed
 * before the final one.
 */
import t from 'tap'
import { RawClient, exchange } from '../helpers/client.js'
import { header } from '../helpers/framing.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'

const lines = (...l: string[]): string => l.map(x => x + '\r\n').join('') + '\r\n'
const ADDED = ['X-Forwarded-For: 127.0.0.1', 'X-Forwarded-Proto: http', 'X-Forwarded-Host: h', 'Via: 1.1 rp4']

t.test('chunked request: framing kept, extensions accepted, trailers dropped', async t => {
  const origin = await startOrigin(t, req => ok(req.body))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const head = lines('POST /c HTTP/1.1', 'Host: h', 'Transfer-Encoding: chunked', 'Trailer: X-Sum')
  const body = '5;name=val\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Sum: 42\r\n\r\n'
  const res = await exchange(port, head + body, { responses: 1 })
  t.equal(res.responses[0]?.body.toString(), 'hello world')
  const req = origin.requests[0]
  t.equal(req?.head.text, lines('POST /c HTTP/1.1', 'Host: h', 'Transfer-Encoding: chunked', ...ADDED), 'Trailer header removed')
  t.equal(req?.body.toString(), 'hello world')
  t.same(req?.trailers, [], 'no trailers upstream')
  t.equal(req?.raw.subarray(-5).toString(), '0\r\n\r\n')
})

t.test('Content-Length 0 and no body at all', async t => {
  const origin = await startOrigin(t, req => ok(`${req.method} ${req.bodyLength}`))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port,
    lines('POST /empty HTTP/1.1', 'Host: h', 'Content-Length: 0') + lines('DELETE /none HTTP/1.1', 'Host: h') + lines('GET /after HTTP/1.1', 'Host: h'),
    { responses: 3 })
  t.same(res.responses.map(r => r.body.toString()), ['POST 0', 'DELETE 0', 'GET 0'])
  // pipelined requests may travel on separate upstream connections: compare each by its URL
  const raw = (url: string): string | undefined => origin.requests.find(r => r.url === url)?.raw.toString('latin1')
  t.equal(raw('/empty'), lines('POST /empty HTTP/1.1', 'Host: h', 'Content-Length: 0', ...ADDED))
  t.equal(raw('/none'), lines('DELETE /none HTTP/1.1', 'Host: h', ...ADDED))
  t.equal(raw('/after'), lines('GET /after HTTP/1.1', 'Host: h', ...ADDED))
  t.equal(origin.requests.reduce((n, r) => n + r.raw.length, 0), origin.connections.reduce((n, c) => n + c.receivedLength, 0),
    'nothing else reached the origin')
})

t.test('HEAD: the backend Content-Length is kept and no body follows', async t => {
  const origin = await startOrigin(t, req => req.method === 'HEAD'
    ? 'HTTP/1.1 200 OK\r\nContent-Length: 123456\r\nContent-Type: application/octet-stream\r\n\r\n'
    : ok('next'))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(lines('HEAD /big HTTP/1.1', 'Host: h'))
  await client.response(0)
  await client.write(lines('GET /next HTTP/1.1', 'Host: h'))
  await client.response(1)
  t.equal(client.text(),
    'HTTP/1.1 200 OK\r\nContent-Length: 123456\r\nContent-Type: application/octet-stream\r\nVia: 1.1 rp4\r\n\r\n' +
    'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nVia: 1.1 rp4\r\n\r\nnext')
  t.equal(origin.connections.length, 1, 'the upstream connection was reusable after HEAD')
})

t.test('HEAD answered with Transfer-Encoding: chunked and no body', async t => {
  const origin = await startOrigin(t, req => req.method === 'HEAD'
    ? 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'
    : ok('next'))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, lines('HEAD / HTTP/1.1', 'Host: h') + lines('GET / HTTP/1.1', 'Host: h'), { responses: 2 })
  t.equal(res.text,
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVia: 1.1 rp4\r\n\r\n' +
    'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nVia: 1.1 rp4\r\n\r\nnext')
})

t.test('Expect: 100-continue is forwarded and the 100 relayed before the body is sent', async t => {
  const origin = await startOrigin(t, req => ok(`got ${req.body.toString()}`), {
    interim: req => header(req, 'expect') === '100-continue' ? 'HTTP/1.1 100 Continue\r\n\r\n' : undefined,
  })
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(lines('PUT /up HTTP/1.1', 'Host: h', 'Expect: 100-continue', 'Content-Length: 4'))
  // the body goes only once the 100 arrived, as a real client would do it
  await client.until(() => client.interim.length === 1, 5000, 'the 100 Continue')
  t.equal(client.interim[0]?.head.line[1], '100')
  t.equal(client.responses.length, 0)
  await client.write('data')
  const res = await client.response(0)
  t.equal(res.body.toString(), 'got data')
  t.equal(origin.requests[0]?.head.text,
    lines('PUT /up HTTP/1.1', 'Host: h', 'Expect: 100-continue', 'Content-Length: 4', ...ADDED))
  t.ok(client.text().startsWith('HTTP/1.1 100 Continue\r\n'), 'the interim response comes first')
})

t.test('103 Early Hints: relayed to an HTTP/1.1 client, not to an HTTP/1.0 one', async t => {
  const origin = await startOrigin(t, () => 'HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n' + ok('final').toString('latin1'))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const v11 = await exchange(port, lines('GET / HTTP/1.1', 'Host: h'), { responses: 1 })
  t.equal(v11.client.interim.length, 1)
  t.equal(header(v11.client.interim[0]!, 'link'), '</s.css>; rel=preload')
  t.equal(v11.responses[0]?.body.toString(), 'final')
  const v10 = await exchange(port, lines('GET / HTTP/1.0', 'Host: h'))
  t.equal(v10.client.interim.length, 0, 'no 1xx to HTTP/1.0')
  t.equal(v10.text, lines('HTTP/1.1 200 OK', 'Content-Length: 5', 'Via: 1.1 rp4', 'Connection: close') + 'final')
})

t.test('204 and 304 with a stray Content-Length: no body is read or sent; a 204\'s and a 1xx\'s Content-Length is not passed on', async t => {
  const origin = await startOrigin(t, req => req.url === '/204'
    ? 'HTTP/1.1 204 No Content\r\n\r\n'
    : req.url === '/204-length'
      ? 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-After: 1\r\n\r\n'
      : req.url === '/103'
        ? 'HTTP/1.1 103 Early Hints\r\nContent-Length: 7\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'
        : 'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n')
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  for (const [i, path] of ['/204', '/304', '/204-length', '/103', '/204'].entries()) {
    await client.write(lines(`GET ${path} HTTP/1.1`, 'Host: h'))
    await client.response(i)
  }
  // RFC 9110 §8.6: never with a 1xx or a 204; a 304's describes the representation and stays
  t.equal(client.text(),
    'HTTP/1.1 204 No Content\r\nVia: 1.1 rp4\r\n\r\n' +
    'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nVia: 1.1 rp4\r\n\r\n' +
    'HTTP/1.1 204 No Content\r\nX-After: 1\r\nVia: 1.1 rp4\r\n\r\n' +
    'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nVia: 1.1 rp4\r\n\r\n' +
    'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 rp4\r\n\r\nok' +
    'HTTP/1.1 204 No Content\r\nVia: 1.1 rp4\r\n\r\n')
  t.equal(origin.connections.length, 1, 'one upstream connection served them all')
})

t.test('a backend that answers an upload before its body is all sent: the client is told Connection: close, and the connection closes after the answer', async t => {
  const early = 'HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\n\r\nbig!'
  const origin = await startOrigin(t, () => ok('late'), { interim: req => req.head.line[1] === '/up' ? early : undefined })
  const { port } = await startProxy(t, { targets: [origin.target] })
  for (const framing of ['Content-Length: 10000000', 'Transfer-Encoding: chunked']) {
    const client = await RawClient.connect(port)
    t.teardown(() => client.destroy())
    await client.write(lines('POST /up HTTP/1.1', 'Host: h', framing) + (framing.startsWith('Content') ? 'x'.repeat(1000) : '10\r\n' + 'x'.repeat(16) + '\r\n'))
    await client.waitClose(5000)
    t.equal(client.text(), 'HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nVia: 1.1 rp4\r\nConnection: close\r\n\r\nbig!',
      `${framing}: the answer says the connection ends, as it does (the rest of the body cannot be skipped)`)
  }
  // a body that completes before the answer: the connection stays
  const res = await exchange(port, lines('POST /whole HTTP/1.1', 'Host: h', 'Content-Length: 4') + 'data' + lines('GET /next HTTP/1.1', 'Host: h'), { responses: 2 })
  t.same(res.responses.map(r => r.body.toString()), ['late', 'late'], 'kept alive when the request was complete first')
  t.equal(header(res.responses[0]!, 'connection'), undefined)
})
