/**
 * Failures on the backend side, answered cleanly: 502 for a backend that cannot be reached or
 * answers garbage, 504 for one too slow, 503 for a full queue, and, once a response has started, a
 * closed client connection whose body visibly ends short. And a client that goes away: its
 * upstream request is abandoned, the connection to the backend closed.
 */
import t, { type Test } from 'tap'
import { RawClient, exchange } from '../helpers/client.js'
import { header } from '../helpers/framing.js'
import { GeneratedBody } from '../helpers/bodies.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy, unusedPort } from '../helpers/proxy.js'
import { deferred } from '../helpers/wait.js'
import { undated } from '../helpers/dates.js'

const GET = 'GET /x HTTP/1.1\r\nHost: h\r\n\r\n'

function errorBytes (code: number, reason: string, close: boolean): string {
  const body = `${code} ${reason}\n`
  return `HTTP/1.1 ${code} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\n` +
    (close ? 'Connection: close\r\n' : '') + '\r\n' + body
}

/**
 * Check rp4's own error response, exactly, and that what it says about the connection is true:
 * closed after `Connection: close`, otherwise still able to carry `next` (which gets `nextCode`).
 */
async function expectError (t: Test, client: RawClient, code: number, reason: string, nextCode: number = code): Promise<void> {
  const res = await client.response(0)
  const close = header(res, 'connection') === 'close'
  t.equal(undated(res.raw.toString('latin1')), errorBytes(code, reason, close), `exact ${code} response`)
  if (close) {
    await client.waitClose()
    t.equal(client.raw().length, res.raw.length, 'nothing after it')
  } else {
    await client.write(GET)
    const second = await client.response(1)
    t.equal(second.head.line[1], String(nextCode), 'the connection stayed usable, as announced')
  }
}

t.test('unreachable backend: 502', async t => {
  const port0 = await unusedPort()
  const { port, events } = await startProxy(t, { targets: [`127.0.0.1:${port0}`] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(GET)
  await expectError(t, client, 502, 'Bad Gateway')
  t.ok(events.upstreamErrors.length >= 1, 'upstreamError emitted')
  t.equal(events.upstreamErrors[0]?.target, `127.0.0.1:${port0}`)
  t.equal(events.upstreamErrors[0]?.error.status, 502)
  t.equal(events.responses[0]?.status, 502)
})

t.test('slow backend: 504 after timeouts.response, and its late answer goes nowhere', async t => {
  let first = true
  const origin = await startOrigin(t, () => {
    if (!first) return ok('fresh')
    first = false
    return { bytes: ok('stale'), delay: 800 }
  })
  const { port, events } = await startProxy(t, { targets: [origin.target], timeouts: { response: 300 } })
  const started = Date.now()
  const res = await exchange(port, GET, { responses: 1 })
  const elapsed = Date.now() - started
  const close = header(res.responses[0]!, 'connection') === 'close'
  t.equal(undated(res.text.slice(0, res.responses[0]?.raw.length)), errorBytes(504, 'Gateway Timeout', close))
  t.ok(elapsed >= 250 && elapsed < 3000, `answered after ${elapsed} ms`)
  t.equal(events.upstreamErrors[0]?.error.status, 504)
  const next = await exchange(port, GET, { responses: 1 })
  t.equal(next.responses[0]?.body.toString(), 'fresh', 'the next request gets its own answer')
})

t.test('queue full: 503; a queued request is served once a connection frees', async t => {
  const release = deferred()
  const origin = await startOrigin(t, async req => {
    if (req.url === '/hold') await release.promise
    return ok(req.url)
  })
  const { port } = await startProxy(t, { targets: [origin.target], upstream: { maxConnections: 1, maxQueue: 1 } })
  const holder = await RawClient.connect(port)
  const queued = await RawClient.connect(port)
  const refused = await RawClient.connect(port)
  t.teardown(() => { holder.destroy(); queued.destroy(); refused.destroy() })
  await holder.write('GET /hold HTTP/1.1\r\nHost: h\r\n\r\n')
  await origin.until(() => origin.requests.length === 1, 5000, '/hold at the origin')
  await queued.write('GET /queued HTTP/1.1\r\nHost: h\r\n\r\n')
  // the queued request has no observable effect; a request on the holder's connection orders it
  await refused.write('GET /refused HTTP/1.1\r\nHost: h\r\n\r\n')
  const res = await refused.response(0)
  t.equal(undated(res.raw.toString('latin1')), errorBytes(503, 'Service Unavailable', header(res, 'connection') === 'close'))
  release.resolve()
  t.equal((await holder.response(0)).body.toString(), '/hold')
  t.equal((await queued.response(0)).body.toString(), '/queued')
  t.equal(origin.peakOpen, 1)
})

t.test('malformed backend responses before anything was sent: 502', async t => {
  const garbage = [
    'NOT HTTP AT ALL\r\n\r\n',
    'HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n',
    'HTTP/1.1 200 OK\r\nBad Header Name: x\r\nContent-Length: 0\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello',
    'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX-Big: ' + 'x'.repeat(3000) + '\r\nContent-Length: 0\r\n\r\n',
  ]
  let i = 0
  const origin = await startOrigin(t, () => ({ bytes: garbage[i++], close: 'end' }))
  const { port } = await startProxy(t, { targets: [origin.target], maxHeaderSize: 1024 })
  for (const g of garbage) {
    const res = await exchange(port, GET, { responses: 1 })
    const r = res.responses[0]
    t.equal(undated(r?.raw.toString('latin1')), errorBytes(502, 'Bad Gateway', r !== undefined && header(r, 'connection') === 'close'),
      `502 for ${JSON.stringify(g.slice(0, 60))}`)
  }
})

t.test('a backend that closes without answering (fresh connection): 502', async t => {
  const origin = await startOrigin(t, () => ({ close: 'end' }))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, GET, { responses: 1 })
  const r = res.responses[0]
  t.equal(undated(r?.raw.toString('latin1')), errorBytes(502, 'Bad Gateway', r !== undefined && header(r, 'connection') === 'close'))
})

t.test('backend dies mid-body (Content-Length): the client sees a short body and a closed connection', async t => {
  const origin = await startOrigin(t, () => ({ bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n' + 'a'.repeat(100), close: 'destroy' }))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, GET)
  t.equal(res.closed, true)
  t.equal(res.responses.length, 0, 'no complete response')
  t.equal(res.text, 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nVia: 1.1 rp4\r\n\r\n' + 'a'.repeat(100))
})

t.test('backend dies mid-body (chunked): no terminating chunk reaches the client', async t => {
  const origin = await startOrigin(t, () => ({ bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n', close: 'destroy' }))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, GET)
  t.equal(res.closed, true)
  t.equal(res.responses.length, 0, 'no complete response')
  t.equal(res.client.reader.snapshot()?.body.toString(), 'hello')
  t.notOk(res.text.includes('0\r\n\r\n'), 'no last-chunk')
})

t.test('backend resets mid-body (close-delimited, re-framed as chunked): no terminating chunk', async t => {
  const origin = await startOrigin(t, () => ({ bytes: 'HTTP/1.1 200 OK\r\n\r\npartial', close: 'reset' }))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, GET)
  t.equal(res.closed, true)
  t.equal(res.responses.length, 0, 'a reset is not the end of a close-delimited body')
  t.notOk(res.text.endsWith('0\r\n\r\n'), 'no last-chunk')
})

t.test('client goes away mid-upload: the upstream connection is closed', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port, events } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  await client.write('POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n' + 'x'.repeat(5000))
  await origin.until(() => (origin.connections[0]?.receivedLength ?? 0) > 5000, 5000, 'the start of the body at the origin')
  client.destroy()
  await origin.until(() => origin.connections[0]?.released === true, 5000, 'the upstream connection to close')
  t.pass('upstream closed')
  await events.until(() => events.clientErrors.length > 0 || events.responses.length > 0, 5000, 'the exchange to end')
  t.equal(origin.requests.length, 0, 'the request never completed at the origin')
})

t.test('each failure is reported once, on its own side', async t => {
  // a backend dying mid-body: an upstream error, not a client error too
  const dying = await startOrigin(t, () => ({ bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n' + 'a'.repeat(100), close: 'destroy' }))
  const first = await startProxy(t, { targets: [dying.target] })
  const res = await exchange(first.port, GET)
  t.equal(res.closed, true)
  // the response event comes last, after every report of the exchange
  await first.events.until(() => first.events.responses.length === 1, 5000, 'the response event')
  t.same(first.events.upstreamErrors.map(e => e.error.code), ['truncated_response'])
  t.same(first.events.clientErrors, [], 'the client did nothing wrong')
  // a client leaving mid-upload, by FIN and by reset: one client error each
  const origin = await startOrigin(t, () => ok())
  const second = await startProxy(t, { targets: [origin.target] })
  for (const [i, leave] of (['end', 'reset'] as const).entries()) {
    const client = await RawClient.connect(second.port)
    await client.write('POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n' + 'x'.repeat(5000))
    await origin.until(() => (origin.connections[i]?.receivedLength ?? 0) > 5000, 5000, 'the start of the body at the origin')
    if (leave === 'end') client.destroy()
    else client.reset()
    await second.events.until(() => second.events.responses.length === i + 1, 5000, `the response event (${leave})`)
    t.equal(second.events.clientErrors.length, i + 1, `${leave}: reported once`)
    t.equal(second.events.clientErrors[i]?.error.code, leave === 'end' ? 'client_aborted' : 'client_error', leave)
  }
  t.same(second.events.upstreamErrors, [], 'nothing reported on the backend\'s side')
})

t.test('client goes away while waiting for the response: the upstream connection is closed, not reused', async t => {
  const origin = await startOrigin(t, req => req.url === '/never' ? { never: true } : ok('later'))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  await client.write('GET /never HTTP/1.1\r\nHost: h\r\n\r\n')
  await origin.until(() => origin.requests.length === 1, 5000, 'the request at the origin')
  // a reset, not a FIN: a FIN after a complete request is a half-close that still wants the answer
  client.reset()
  await origin.until(() => origin.connections[0]?.released === true, 5000, 'the upstream connection to close')
  const res = await exchange(port, GET, { responses: 1 })
  t.equal(res.responses[0]?.body.toString(), 'later')
  t.equal(origin.connections.length, 2, 'a new upstream connection')
})

t.test('client goes away mid-download: the upstream connection is closed', async t => {
  const origin = await startOrigin(t, () => ({ bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n', stream: new GeneratedBody(100 << 20) }))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port, { keep: 1 << 20 })
  await client.write(GET)
  await client.until(() => client.raw().length > 0 || client.closed, 5000, 'the response to start')
  client.destroy()
  await origin.until(() => origin.connections[0]?.released === true, 5000, 'the upstream connection to close')
  t.pass('upstream closed')
})
