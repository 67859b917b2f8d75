/**
 * Client-side connection persistence: HTTP/1.1 by default, HTTP/1.0 only on request, `Connection:
 * close` honoured, and bodies re-framed when the two hops cannot agree (close-delimited from the
 * backend to an HTTP/1.1 client, chunked to an HTTP/1.0 client).
 */
import t from 'tap'
import { RawClient, exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'

const lines = (...l: string[]): string => l.map(x => x + '\r\n').join('') + '\r\n'

t.test('HTTP/1.1: several requests on one client connection, one upstream connection', async t => {
  const origin = await startOrigin(t, req => ok(`#${req.index} ${req.url}`))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  for (let i = 0; i < 3; i++) {
    await client.write(lines(`GET /r${i} HTTP/1.1`, 'Host: h'))
    const res = await client.response(i)
    t.equal(res.body.toString(), `#${i} /r${i}`)
    t.equal(res.head.text, lines('HTTP/1.1 200 OK', 'Content-Length: ' + `#${i} /r${i}`.length, 'Via: 1.1 rp4'), 'no Connection header')
  }
  t.equal(client.closed, false)
  t.equal(origin.connections.length, 1, 'the upstream connection was reused')
})

t.test('HTTP/1.1 with Connection: close: answered, then closed', async t => {
  const origin = await startOrigin(t, () => ok('bye'))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, lines('GET / HTTP/1.1', 'Host: h', 'Connection: close'))
  t.equal(res.text, lines('HTTP/1.1 200 OK', 'Content-Length: 3', 'Via: 1.1 rp4', 'Connection: close') + 'bye')
  t.equal(res.closed, true)
  t.equal(origin.requests[0]?.raw.toString('latin1').includes('Connection'), false, 'Connection not forwarded')
})

t.test('HTTP/1.0 without keep-alive: answered, then closed', async t => {
  const origin = await startOrigin(t, () => ok('old'))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, lines('GET / HTTP/1.0', 'Host: h'))
  t.equal(res.text, lines('HTTP/1.1 200 OK', 'Content-Length: 3', 'Via: 1.1 rp4', 'Connection: close') + 'old')
  t.equal(res.closed, true)
})

t.test('HTTP/1.0 with Connection: keep-alive: kept open, told so', async t => {
  const origin = await startOrigin(t, req => ok(req.url))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  for (let i = 0; i < 2; i++) {
    await client.write(lines(`GET /k${i} HTTP/1.0`, 'Host: h', 'Connection: keep-alive'))
    const res = await client.response(i)
    t.equal(res.head.text, lines('HTTP/1.1 200 OK', 'Content-Length: 3', 'Via: 1.1 rp4', 'Connection: keep-alive'))
    t.equal(res.body.toString(), `/k${i}`)
  }
  t.equal(client.closed, false)
  t.equal(origin.requests[0]?.raw.toString('latin1'), lines(
    'GET /k0 HTTP/1.1', 'Host: h', 'X-Forwarded-For: 127.0.0.1', 'X-Forwarded-Proto: http', 'X-Forwarded-Host: h', 'Via: 1.1 rp4'))
})

/** A backend that frames its body by closing the connection. */
function closeDelimited (body: string) {
  return () => ({ bytes: lines('HTTP/1.1 200 OK', 'Content-Type: text/plain') + body, close: 'end' as const })
}

t.test('close-delimited backend body to an HTTP/1.1 client: re-framed as chunked, connection kept', async t => {
  const body = 'streamed until the backend closes\n'.repeat(100)
  const origin = await startOrigin(t, closeDelimited(body))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(lines('GET /a HTTP/1.1', 'Host: h'))
  const first = await client.response(0)
  t.equal(first.head.text, lines('HTTP/1.1 200 OK', 'Content-Type: text/plain', 'Via: 1.1 rp4', 'Transfer-Encoding: chunked'))
  t.equal(first.framing, 'chunked')
  t.equal(first.body.toString(), body)
  // the client connection outlived the backend's: a second request is answered on it
  await client.write(lines('GET /b HTTP/1.1', 'Host: h'))
  const second = await client.response(1)
  t.equal(second.body.toString(), body)
  t.equal(origin.connections.length, 2, 'a new upstream connection for the second request')
  t.equal(client.closed, false)
})

t.test('close-delimited backend body to an HTTP/1.0 client: close-delimited', async t => {
  const origin = await startOrigin(t, closeDelimited('plain old body'))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, lines('GET / HTTP/1.0', 'Host: h'))
  t.equal(res.text, lines('HTTP/1.1 200 OK', 'Content-Type: text/plain', 'Via: 1.1 rp4', 'Connection: close') + 'plain old body')
  // even one that asked for keep-alive: without a length the close is the framing
  const res2 = await exchange(port, lines('GET / HTTP/1.0', 'Host: h', 'Connection: keep-alive'))
  t.equal(res2.text, lines('HTTP/1.1 200 OK', 'Content-Type: text/plain', 'Via: 1.1 rp4', 'Connection: close') + 'plain old body')
  t.equal(res2.closed, true)
})

t.test('chunked backend body to an HTTP/1.0 client: de-chunked, close-delimited', async t => {
  const origin = await startOrigin(t, () =>
    lines('HTTP/1.1 200 OK', 'Transfer-Encoding: chunked', 'X-After: 1') + '3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n')
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, lines('GET / HTTP/1.0', 'Host: h'))
  t.equal(res.text, lines('HTTP/1.1 200 OK', 'X-After: 1', 'Via: 1.1 rp4', 'Connection: close') + 'abcde')
  const res2 = await exchange(port, lines('GET / HTTP/1.0', 'Host: h', 'Connection: keep-alive'))
  t.equal(res2.text, lines('HTTP/1.1 200 OK', 'X-After: 1', 'Via: 1.1 rp4', 'Connection: close') + 'abcde')
})

t.test('a backend Connection: close ends the upstream connection, not the client one', async t => {
  const origin = await startOrigin(t, () => ({ bytes: lines('HTTP/1.1 200 OK', 'Connection: close', 'Content-Length: 2') + 'ok', close: 'end' }))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  for (let i = 0; i < 2; i++) {
    await client.write(lines('GET / HTTP/1.1', 'Host: h'))
    const res = await client.response(i)
    t.equal(res.head.text, lines('HTTP/1.1 200 OK', 'Content-Length: 2', 'Via: 1.1 rp4'))
  }
  t.equal(origin.connections.length, 2)
})

t.test('a client that half-closes after its request still gets the answer', async t => {
  const origin = await startOrigin(t, () => ({ bytes: ok('late'), delay: 50 }))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(lines('GET / HTTP/1.1', 'Host: h'))
  client.end()
  await client.waitClose()
  t.equal(client.responses[0]?.body.toString(), 'late')
})

t.test('an idle client connection is closed after timeouts.clientIdle', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], timeouts: { clientIdle: 300 } })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(lines('GET / HTTP/1.1', 'Host: h'))
  await client.response(0)
  const idleSince = Date.now()
  await client.waitClose(5000)
  const idle = Date.now() - idleSince
  t.ok(idle >= 200, `closed after ${idle} ms idle, not before the timeout`)
  t.equal(client.raw().length, client.responses[0]?.raw.length, 'nothing sent on close')
})
