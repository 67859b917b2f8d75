/**
 * Safe defaults without a flag: request line, header count and body size limits (414 / 431 /
 * 413, nothing of a refused request upstream), identifying response headers removed; a backend's
 * 502/503/504 passed as it is unless interceptErrors asks for rp4's own page.
 */
import t from 'tap'
import { RawClient, exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy, unusedPort } from '../helpers/proxy.js'
import { undated } from '../helpers/dates.js'

function rp4Error (status: number, reason: string, close: boolean): string {
  const body = `${status} ${reason}\n`
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\n` +
    (close ? 'Connection: close\r\n' : '') + '\r\n' + body
}

function upstreamBytes (origin: { connections: Array<{ raw: () => Buffer }> }): string {
  return origin.connections.map(c => c.raw().toString('latin1')).join('')
}

t.test('a request target over maxRequestLine: 414, nothing upstream', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port, events } = await startProxy(t, { targets: [origin.target], maxRequestLine: 64 })
  const fits = await exchange(port, `GET /${'a'.repeat(63)} HTTP/1.1\r\nHost: h\r\n\r\n`, { responses: 1 })
  t.equal(fits.responses[0]?.head.line[1], '200', 'a target of exactly the limit passes')
  const res = await exchange(port, `GET /${'a'.repeat(64)} HTTP/1.1\r\nHost: h\r\n\r\n`)
  t.equal(undated(res.text), rp4Error(414, 'URI Too Long', true))
  t.equal(origin.requests.length, 1, 'only the request that fits reached the origin')
  t.ok(events.clientErrors.some(e => e.error.status === 414), 'a clientError with status 414')
})

t.test('the default request line limit is 8 KiB', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, `GET /${'a'.repeat(8192)} HTTP/1.1\r\nHost: h\r\n\r\n`)
  t.equal(undated(res.text), rp4Error(414, 'URI Too Long', true))
  t.equal(upstreamBytes(origin), '')
})

t.test('more header fields than maxHeaders: 431, nothing upstream', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], maxHeaders: 5 })
  const five = 'GET / HTTP/1.1\r\nHost: h\r\n' + [1, 2, 3, 4].map(i => `X-${i}: v\r\n`).join('') + '\r\n'
  t.equal((await exchange(port, five, { responses: 1 })).responses[0]?.head.line[1], '200', 'five fields pass')
  const six = 'GET / HTTP/1.1\r\nHost: h\r\n' + [1, 2, 3, 4, 5].map(i => `X-${i}: v\r\n`).join('') + '\r\n'
  const res = await exchange(port, six)
  t.equal(undated(res.text), rp4Error(431, 'Request Header Fields Too Large', true))
  t.equal(origin.requests.length, 1)
})

t.test('a Content-Length over maxBodySize: 413 before anything goes upstream', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port, events, proxy } = await startProxy(t, { targets: [origin.target], maxBodySize: 10 })
  const fits = await exchange(port, 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789', { responses: 1 })
  t.equal(fits.responses[0]?.head.line[1], '200', 'a body of exactly the limit passes')
  const res = await exchange(port, 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n01234567890')
  t.equal(undated(res.text), rp4Error(413, 'Content Too Large', true))
  t.equal(origin.requests.length, 1)
  t.equal(origin.connections.length, 1, 'no connection opened for the refused request')
  t.same(events.clientErrors.map(e => [e.error.code, e.error.status]), [['body_too_large', 413]], 'one refusal, coded as the chunked case is')
  t.same(proxy.stats().errors, { body_too_large: 1 })
})

t.test('a chunked body that grows over maxBodySize: 413, and the upstream request is abandoned', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port, events, proxy } = await startProxy(t, { targets: [origin.target], maxBodySize: 10 })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write('POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n')
  await origin.until(() => (origin.connections[0]?.receivedLength ?? 0) > 0, 5000, 'the start of the request at the origin')
  await client.write('6\r\n678901\r\n0\r\n\r\n')
  await client.waitResponses(1)
  t.equal(undated(client.text()), rp4Error(413, 'Content Too Large', true))
  await origin.until(() => origin.connections[0].closed, 5000, 'the upstream connection to close')
  t.equal(origin.requests.length, 0, 'the origin never saw a complete request')
  t.notMatch(upstreamBytes(origin), /678901/, 'nothing past the limit went upstream')
  t.same(events.clientErrors.map(e => [e.error.code, e.error.status]), [['body_too_large', 413]], 'one refusal, coded as the Content-Length case is')
  t.same(proxy.stats().errors, { body_too_large: 1 })
})

t.test('identifying response headers are removed by default, case-insensitively', async t => {
  const origin = await startOrigin(t, () => ok('x', ['server: Apache/2.4.1', 'X-Powered-By: PHP/5.1', 'X-AspNet-Version: 4.0', 'X-Kept: 1']))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(res.text, 'HTTP/1.1 200 OK\r\nX-Kept: 1\r\nContent-Length: 1\r\nVia: 1.1 rp4\r\n\r\nx')
})

t.test('hideHeaders: a list of ours, or [] to keep everything', async t => {
  const origin = await startOrigin(t, () => ok('x', ['Server: s', 'X-Internal-Host: db7']))
  const custom = await startProxy(t, { targets: [origin.target], hideHeaders: ['x-internal-host'] })
  const a = await exchange(custom.port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(a.text, 'HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 1\r\nVia: 1.1 rp4\r\n\r\nx')
  const none = await startProxy(t, { targets: [origin.target], hideHeaders: [] })
  const b = await exchange(none.port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(b.text, 'HTTP/1.1 200 OK\r\nServer: s\r\nX-Internal-Host: db7\r\nContent-Length: 1\r\nVia: 1.1 rp4\r\n\r\nx')
})

t.test('interceptErrors: a backend 502/503/504 page is replaced by rp4\'s own; the connection stays usable', async t => {
  const page = 'Traceback: db01.internal:5432 refused\n'
  const origin = await startOrigin(t, req => req.url === '/next'
    ? ok('fine')
    : `HTTP/1.1 ${req.url.slice(1)} Whatever\r\nContent-Type: text/html\r\nContent-Length: ${page.length}\r\n\r\n${page}`)
  const { port } = await startProxy(t, { targets: [origin.target], interceptErrors: true })
  for (const [status, reason] of [[502, 'Bad Gateway'], [503, 'Service Unavailable'], [504, 'Gateway Timeout']] as const) {
    const res = await exchange(port, `GET /${status} HTTP/1.1\r\nHost: h\r\n\r\n`, { responses: 1 })
    t.equal(undated(res.text), rp4Error(status, reason, false), `${status}`)
    t.notMatch(res.text, /Traceback|db01/, 'nothing of the backend page')
  }
  t.equal(origin.connections.length, 1, 'the backend connection was reused after each dropped page')
  const res = await exchange(port, 'GET /502 HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 2 })
  t.equal(undated(res.text), rp4Error(502, 'Bad Gateway', false) + 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nVia: 1.1 rp4\r\n\r\nfine',
    'the client connection carries on after the page')
})

t.test('by default a backend\'s 502/503/504 reaches the client as it is: an API\'s JSON error and its Retry-After', async t => {
  const json = '{"error":"overloaded","retry_in":30}'
  const origin = await startOrigin(t, req => req.url === '/next'
    ? ok('fine')
    : `HTTP/1.1 ${req.url.slice(1)} Busy\r\nServer: api/1.0\r\nContent-Type: application/json\r\nRetry-After: 30\r\nContent-Length: ${json.length}\r\n\r\n${json}`)
  const { port } = await startProxy(t, { targets: [origin.target] })
  for (const status of [503, 502, 504]) {
    const res = await exchange(port, `GET /${status} HTTP/1.1\r\nHost: h\r\n\r\n`, { responses: 1 })
    t.equal(res.text, `HTTP/1.1 ${status} Busy\r\nContent-Type: application/json\r\nRetry-After: 30\r\nContent-Length: ${json.length}\r\nVia: 1.1 rp4\r\n\r\n${json}`,
      `${status}: the backend's response byte for byte (Server still hidden, Via added)`)
  }
  t.equal(origin.connections.length, 1, 'the backend connection was reused after each')
  const res = await exchange(port, 'GET /503 HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 2 })
  t.equal(res.responses[1]?.body.toString(), 'fine', 'the client connection carries on after it')
})

t.test('rp4\'s own pages stay for what rp4 itself answers: no backend, 502', async t => {
  const { port } = await startProxy(t, { targets: [`127.0.0.1:${await unusedPort()}`] })
  const res = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(undated(res.text), rp4Error(502, 'Bad Gateway', false))
})

t.test('rate limit: a burst, then 429 with Retry-After, per client IP; the refused request never goes upstream', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port, events, proxy } = await startProxy(t, { targets: [origin.target], rateLimit: { rate: 0.5, burst: 2 } })
  const three = 'GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\n\r\n'
  const res = await exchange(port, three, { responses: 3 })
  t.same(res.responses.map(r => r.head.line[1]), ['200', '200', '429'])
  const body = '429 Too Many Requests\n'
  t.ok(undated(res.text).endsWith(`HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\nRetry-After: 2\r\n\r\n${body}`),
    'rp4\'s 429 with Retry-After, the connection kept')
  t.same(origin.requests.map(r => r.url), ['/1', '/2'])
  t.ok(events.clientErrors.some(e => e.error.code === 'rate_limited'))
  t.equal(proxy.stats().errors.rate_limited, 1, 'each refusal is counted')
  // another client address has a bucket of its own
  const other = await exchange(port, 'GET /4 HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1, localAddress: '127.0.0.2' })
  t.equal(other.responses[0]?.head.line[1], '200', '127.0.0.2 is not limited by 127.0.0.1\'s requests')
})

t.test('a 429 is reported once, even when the client resets the connection rp4 ended after it', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port, events, proxy } = await startProxy(t, { targets: [origin.target], rateLimit: { rate: 0.5, burst: 1 } })
  const close = 'GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'
  t.equal((await exchange(port, close)).responses[0]?.head.line[1], '200')
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  // some clients close with a reset (SO_LINGER 0, or unread bytes): here as soon as the 429 comes,
  // while rp4, having ended the connection after it, is lingering
  client.socket.once('data', () => client.reset())
  await client.write(close)
  await client.waitClose()
  t.equal(client.responses[0]?.head.line[1], '429')
  for (let i = 0; i < 200 && proxy.stats().connections > 0; i++) await new Promise(resolve => setTimeout(resolve, 10))
  t.equal(proxy.stats().connections, 0, 'rp4 closed its side')
  t.same(events.clientErrors.map(e => e.error.code), ['rate_limited'], 'one clientError for one refusal')
  t.same(proxy.stats().errors, { rate_limited: 1 })
})

t.test('an absolute-form target whose host differs from Host: 400, nothing upstream', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target] })
  const same = await exchange(port, 'GET http://h.test/a HTTP/1.1\r\nHost: H.test\r\n\r\n', { responses: 1 })
  t.equal(same.responses[0]?.head.line[1], '200', 'the same host (case-insensitive) passes')
  for (const target of ['http://other.test/a', 'http://user@h.test/a', 'https://h.test:8443/a']) {
    const res = await exchange(port, `GET ${target} HTTP/1.1\r\nHost: h.test\r\n\r\n`)
    t.equal(undated(res.text), rp4Error(400, 'Bad Request', true), target)
  }
  t.equal(origin.requests.length, 1)
})

t.test('a request body that stalls longer than timeouts.requestBody: 408, upstream request abandoned', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port, events } = await startProxy(t, { targets: [origin.target], timeouts: { requestBody: 300 } })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234')
  await client.waitResponses(1)
  t.equal(undated(client.text()), rp4Error(408, 'Request Timeout', true))
  await origin.until(() => origin.connections.every(c => c.closed), 5000, 'the upstream connection to close')
  t.equal(origin.requests.length, 0, 'the origin never got a complete request')
  t.ok(events.clientErrors.some(e => e.error.code === 'request_body_timeout'))
})

t.test('a slow but steady request body is not cut off by timeouts.requestBody', async t => {
  const origin = await startOrigin(t, req => ok(String(req.body.length)))
  const { port } = await startProxy(t, { targets: [origin.target], timeouts: { requestBody: 400 } })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 8\r\n\r\n')
  for (let i = 0; i < 8; i++) {
    // eight pieces 100 ms apart: 800 ms in all, never 400 ms without a byte
    await new Promise(resolve => setTimeout(resolve, 100))
    await client.write('x')
  }
  await client.waitResponses(1)
  t.equal(client.responses[0]?.body.toString(), '8')
})

t.test('timeouts.responseTotal: a response still streaming past it is cut off (the client sees the truncation)', async t => {
  const origin = await startOrigin(t, req => {
    const socket = req.connection.socket
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nstart')
    return new Promise<string>(() => {}) // the other 95 bytes never come
  })
  const { port, events } = await startProxy(t, { targets: [origin.target], timeouts: { responseTotal: 300 } })
  const res = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n')
  t.equal(res.closed, true)
  t.equal(res.text, 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nVia: 1.1 rp4\r\n\r\nstart', 'a short body, then the close')
  t.ok(events.upstreamErrors.some(e => e.error.code === 'response_total_timeout'), 'the backend connection was given up with that reason')
})

t.test('minDataRate: a head trickled one byte at a time is refused long before timeouts.requestHead', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port, events } = await startProxy(t, { targets: [origin.target], minDataRate: 100, timeouts: { requestHead: 60_000 } })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  const head = 'GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ' + 'a'.repeat(200) + '\r\n\r\n'
  const started = Date.now()
  // one byte every 50 ms (20 bytes/s), bounded by the head's length
  for (let i = 0; i < head.length && !client.closed && client.raw().length === 0; i++) {
    await client.write(head[i])
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  await client.waitResponses(1)
  t.equal(undated(client.text()), rp4Error(408, 'Request Timeout', true))
  t.ok(Date.now() - started < 10_000, 'refused after the grace period, not after the 60 s head timeout')
  t.equal(origin.requests.length, 0)
  t.ok(events.clientErrors.some(e => e.error.code === 'request_head_timeout' && /slower than 100/.test(e.error.message)))
})

t.test('minDataRate: a body trickled slower than the rate gets 408', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], minDataRate: 100 })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n')
  for (let i = 0; i < 1000 && !client.closed && client.raw().length === 0; i++) {
    await client.write('x')
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  await client.waitResponses(1)
  t.equal(undated(client.text()), rp4Error(408, 'Request Timeout', true))
  t.equal(origin.requests.length, 0, 'the cut request never completed upstream')
})
