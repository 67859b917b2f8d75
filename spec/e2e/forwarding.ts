/**
 * The basic path: a request reaches the origin with exactly the expected bytes and the answer
 * reaches the client with exactly the expected bytes, however the client cuts its writes.
 */
import t from 'tap'
import { exchange } from '../helpers/client.js'
import { header } from '../helpers/framing.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import { undated } from '../helpers/dates.js'

/** The headers rp4 appends for a plain IPv4 client that sent `Host: <host>`. */
function added (host: string): string {
  return `X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ${host}\r\nVia: 1.1 rp4\r\n`
}

t.test('GET: exact bytes upstream and back', async t => {
  const origin = await startOrigin(t, () => 'HTTP/1.1 200 Fine Thanks\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello')
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, 'GET /path?q=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: raw\r\n\r\n', { responses: 1 })
  t.equal(origin.connections[0]?.raw().toString('latin1'),
    'GET /path?q=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: raw\r\n' + added('example.test') + '\r\n')
  t.equal(res.text, 'HTTP/1.1 200 Fine Thanks\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nVia: 1.1 rp4\r\n\r\nhello')
})

t.test('POST with a Content-Length body: body bytes unchanged', async t => {
  const origin = await startOrigin(t, req => ok(`got ${req.bodyLength}`))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const body = 'a=1&b=\u00e9\r\n\r\nnot a header'
  const res = await exchange(port,
    `POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${Buffer.byteLength(body, 'latin1')}\r\n\r\n${body}`,
    { responses: 1 })
  t.equal(origin.connections[0]?.raw().toString('latin1'),
    `POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${Buffer.byteLength(body, 'latin1')}\r\n` +
    added('h') + '\r\n' + body)
  t.equal(res.responses[0]?.body.toString(), `got ${Buffer.byteLength(body, 'latin1')}`)
})

t.test('the request target goes upstream exactly as the client sent it', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target] })
  // an absolute-form target must name the Host header's host (a different one is refused: spec/e2e/limits.ts)
  const targets = ['/a%20b/../c/./d?x=%zz&y=&&z', '/', '*', '/%E2%82%AC//double//slash']
  for (const target of targets) {
    const method = target === '*' ? 'OPTIONS' : 'GET'
    const res = await exchange(port, `${method} ${target} HTTP/1.1\r\nHost: h\r\n\r\n`, { responses: 1 })
    t.equal(res.responses[0]?.head.line[1], '200', `${target}: answered`)
    t.equal(origin.requests.at(-1)?.head.line.join(' '), `${method} ${target} HTTP/1.1`, `${target}: request line`)
  }
})

t.test('an absolute-form target goes upstream in origin-form (RFC 9112 3.2.1): path and query only', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target] })
  const cases: Array<[string, string]> = [['http://h/abs?x=1', '/abs?x=1'], ['https://h/p', '/p'], ['http://h', '/'], ['http://h?q=1', '/?q=1'], ['HTTP://H/Up', '/Up']]
  for (const [target, sent] of cases) {
    const res = await exchange(port, `GET ${target} HTTP/1.1\r\nHost: ${target.includes('H/') ? 'H' : 'h'}\r\n\r\n`, { responses: 1 })
    t.equal(res.responses[0]?.head.line[1], '200', `${target}: answered`)
    t.equal(origin.requests.at(-1)?.head.line.join(' '), `GET ${sent} HTTP/1.1`, `${target}: sent as ${sent}`)
    t.equal(header(origin.requests.at(-1)!, 'x-forwarded-proto'), 'http', `${target}: the scheme of the client's connection, not of its target`)
  }
})

t.test('the status line is HTTP/1.1 with the reason the backend sent', async t => {
  const lines = ['HTTP/1.1 418 I\'m a teapot', 'HTTP/1.1 299 Custom Reason With  Spaces', 'HTTP/1.0 200 OK', 'HTTP/1.1 404 Not Here', 'HTTP/1.1 500 Internal Server Error']
  let i = 0
  const origin = await startOrigin(t, () => `${lines[i++]}\r\nContent-Length: 2\r\n\r\nhi`)
  const { port } = await startProxy(t, { targets: [origin.target] })
  for (const line of lines) {
    const res = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
    const expected = line.replace('HTTP/1.0', 'HTTP/1.1')
    t.equal(res.text.split('\r\n')[0], expected, line)
    t.equal(res.responses[0]?.body.toString(), 'hi')
  }
})

const SMALL = 'POST /split?x=1 HTTP/1.1\r\nHost: split.test\r\nX-Tag: abc\r\nContent-Length: 7\r\n\r\npayload'
const SMALL_UPSTREAM = 'POST /split?x=1 HTTP/1.1\r\nHost: split.test\r\nX-Tag: abc\r\nContent-Length: 7\r\n' + added('split.test') + '\r\npayload'

t.test('a request sent one byte per write', async t => {
  const origin = await startOrigin(t, req => ok(req.body))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, SMALL, { responses: 1, split: 'byte', ms: 10_000 })
  t.equal(res.responses[0]?.head.line[1], '200')
  t.equal(res.responses[0]?.body.toString(), 'payload')
  t.equal(origin.requests[0]?.raw.toString('latin1'), SMALL_UPSTREAM)
})

t.test('a request cut in two at every offset', async t => {
  const origin = await startOrigin(t, req => ok(req.body))
  const { port } = await startProxy(t, { targets: [origin.target] })
  for (let cut = 1; cut < SMALL.length; cut++) {
    const res = await exchange(port, SMALL, { responses: 1, split: [cut] })
    const got = res.responses[0]
    if (got?.body.toString() !== 'payload' || origin.requests.at(-1)?.raw.toString('latin1') !== SMALL_UPSTREAM) {
      t.fail(`cut at ${cut}: client got ${JSON.stringify(res.text)}, origin got ${JSON.stringify(origin.requests.at(-1)?.raw.toString('latin1'))}`)
    }
  }
  t.equal(origin.requests.length, SMALL.length - 1, 'one upstream request per cut')
  t.ok(origin.requests.every(r => r.raw.toString('latin1') === SMALL_UPSTREAM), 'every upstream request identical')
})

t.test('a response arriving at the proxy one byte at a time', async t => {
  const response = 'HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n'
  const origin = await startOrigin(t, async req => {
    const socket = req.connection.socket
    for (const byte of Buffer.from(response)) {
      socket.write(Buffer.from([byte]))
      await new Promise(resolve => setImmediate(resolve))
    }
    return ''
  })
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  const r = res.responses[0]
  t.equal(r?.body.toString(), 'abcde')
  t.equal(r?.framing, 'chunked')
  t.equal(res.text.slice(0, res.text.indexOf('\r\n\r\n') + 4), 'HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\nVia: 1.1 rp4\r\n\r\n')
})

t.test('Max-Forwards on TRACE and OPTIONS (RFC 9110 7.6.2): 0 is answered by rp4, any other count goes on one less', async t => {
  const origin = await startOrigin(t, () => ok('from the origin'))
  const { port } = await startProxy(t, { targets: [origin.target] })

  const options = await exchange(port, 'OPTIONS * HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\n', { responses: 1 })
  t.equal(undated(options.text), 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'OPTIONS, 0: a 200 of rp4\'s own')

  const trace = await exchange(port, 'TRACE /t?q=1 HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\nCookie: s=secret\r\nAuthorization: Basic eDp5\r\nX-Trace: yes\r\n\r\n', { responses: 1 })
  const echo = 'TRACE /t?q=1 HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\nX-Trace: yes\r\n\r\n'
  t.equal(undated(trace.text), `HTTP/1.1 200 OK\r\nContent-Type: message/http\r\nContent-Length: ${echo.length}\r\n\r\n${echo}`,
    'TRACE, 0: the request back as message/http, without its credentials')
  t.equal(origin.requests.length, 0, 'neither reached the origin')

  await exchange(port, 'TRACE / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 3\r\n\r\n', { responses: 1 })
  await exchange(port, 'OPTIONS / HTTP/1.1\r\nHost: h\r\nmax-forwards: 1\r\n\r\n', { responses: 1 })
  await exchange(port, 'OPTIONS / HTTP/1.1\r\nHost: h\r\nMax-Forwards: soon\r\n\r\n', { responses: 1 })
  await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\n', { responses: 1 })
  const sent = origin.connections.map(c => c.raw().toString('latin1')).join('')
  t.match(sent, /^TRACE \/ HTTP\/1\.1\r\nHost: h\r\nMax-Forwards: 2\r\n/m, 'TRACE, 3: forwarded with 2')
  t.match(sent, /^OPTIONS \/ HTTP\/1\.1\r\nHost: h\r\nmax-forwards: 0\r\n/m, 'OPTIONS, 1: forwarded with 0, the name as sent')
  t.match(sent, /^OPTIONS \/ HTTP\/1\.1\r\nHost: h\r\nMax-Forwards: soon\r\n/m, 'no count: passed on as it is')
  t.match(sent, /^GET \/ HTTP\/1\.1\r\nHost: h\r\nMax-Forwards: 0\r\n/m, 'other methods: not counted')
  t.equal(origin.requests.length, 4)
})

t.test('Max-Forwards, hostile: several fields, spaces, signs, 20 digits; a TRACE answered at 0 with a body, then a pipelined request', async t => {
  const origin = await startOrigin(t, () => ok('from the origin'))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const sentFor = async (field: string): Promise<string> => {
    const before = origin.requests.length
    await exchange(port, `OPTIONS / HTTP/1.1\r\nHost: h\r\n${field}\r\n\r\n`, { responses: 1 })
    t.equal(origin.requests.length, before + 1, `${JSON.stringify(field)}: forwarded`)
    const raw = origin.requests.at(-1)!.raw.toString('latin1')
    return raw.split('\r\n').filter(line => /^max-forwards:/i.test(line)).join(' | ')
  }
  t.equal(await sentFor('Max-Forwards: 3\r\nMax-Forwards: 9'), 'Max-Forwards: 2', 'the first of several counts, one field goes on')
  t.equal(await sentFor('Max-Forwards:   4  '), 'Max-Forwards: 3', 'spaces around the count')
  t.equal(await sentFor('Max-Forwards: -1'), 'Max-Forwards: -1', 'a sign: no count, passed as it is')
  t.equal(await sentFor('Max-Forwards: +1'), 'Max-Forwards: +1', 'a plus sign too')
  t.equal(await sentFor('Max-Forwards: 99999999999999999999'), 'Max-Forwards: 99999999999999999999', '20 digits: passed as it is')
  t.equal(await sentFor('Max-Forwards: 0x1'), 'Max-Forwards: 0x1', 'hex: no count')

  const before = origin.requests.length
  const res = await exchange(port, 'TRACE / HTTP/1.1\r\nHost: h\r\nMax-Forwards:  0 \r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 2 })
  t.equal(res.responses[0]?.head.line[1], '200')
  t.equal(res.responses[0]?.body.toString(), 'TRACE / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0 \r\nContent-Length: 5\r\n\r\n', 'the head echoed as the fields were parsed, not the body')
  t.equal(res.responses[1]?.body.toString(), 'from the origin', 'the next request on the connection is served')
  t.equal(origin.requests.length, before + 1, 'only the second reached the origin')
  t.equal(origin.requests.at(-1)?.url, '/next')
})
