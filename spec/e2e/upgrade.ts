/**
 * Upgrades (WebSocket): the request goes up with its Upgrade header and `Connection: upgrade`; after
 * the backend's 101 the proxy is a byte pipe both ways; bytes the client sent early wait for the 101.
 */
import t, { type Test } from 'tap'
import { RawClient } from '../helpers/client.js'
import { header } from '../helpers/framing.js'
import { randomBody, sha256 } from '../helpers/bodies.js'
import { ok, startOrigin, type Origin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import type { Filter } from '../../lib/index.js'
import { undated } from '../helpers/dates.js'

const lines = (...l: string[]): string => l.map(x => x + '\r\n').join('') + '\r\n'

const UPGRADE = lines(
  'GET /chat HTTP/1.1',
  'Host: h',
  'Connection: Upgrade',
  'Upgrade: websocket',
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
  'Sec-WebSocket-Version: 13',
)

const SWITCHING = lines(
  'HTTP/1.1 101 Switching Protocols',
  'Upgrade: websocket',
  'Connection: Upgrade',
  'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=',
)

/** An origin that accepts the upgrade and echoes every tunnelled chunk back. */
async function echoOrigin (t: Test): Promise<Origin> {
  return await startOrigin(t, () => ({ bytes: SWITCHING, tunnel: (data, socket) => { socket.write(data) } }))
}

t.test('the upgrade request goes up with Upgrade kept and Connection: upgrade appended', async t => {
  const origin = await echoOrigin(t)
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(UPGRADE)
  const res = await client.response(0)
  t.equal(origin.requests[0]?.raw.toString('latin1'), lines(
    'GET /chat HTTP/1.1',
    'Host: h',
    'Upgrade: websocket',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version: 13',
    'X-Forwarded-For: 127.0.0.1',
    'X-Forwarded-Proto: http',
    'X-Forwarded-Host: h',
    'Via: 1.1 rp4',
    'Connection: upgrade',
  ))
  t.equal(res.head.line.join(' '), 'HTTP/1.1 101 Switching Protocols')
  t.equal(header(res, 'upgrade'), 'websocket')
  t.equal(header(res, 'sec-websocket-accept'), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=')
  t.match(header(res, 'connection') ?? '', /^upgrade$/i, 'the client is told the connection switched')
})

t.test('after the 101: raw bytes both ways, exactly', async t => {
  const origin = await echoOrigin(t)
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(UPGRADE)
  await client.response(0)
  // bytes that look like HTTP must pass as they are: nothing parses them any more
  const frames = [Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.from([0x81, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f]), randomBody(1 << 20)]
  const all = Buffer.concat(frames)
  for (const frame of frames) await client.write(frame)
  await client.until(() => client.tunnel().length >= all.length, 10_000, 'the echo')
  const conn = origin.connections[0]!
  t.equal(sha256(Buffer.concat(conn.tunnel)), sha256(all), 'the origin got the client bytes')
  t.equal(sha256(client.tunnel()), sha256(all), 'the client got the origin bytes')
  t.equal(origin.requests.length, 1, 'the tunnelled request was not parsed as one')
})

t.test('bytes sent right after the upgrade head wait for the 101', async t => {
  let early = -1
  const origin = await startOrigin(t, async req => {
    const conn = req.connection
    // the proxy has this long to (wrongly) pass the early bytes before the backend agreed
    await origin.until(() => conn.tunnel.length > 0, 300).catch(() => {})
    early = Buffer.concat(conn.tunnel).length
    return { bytes: SWITCHING, tunnel: (data, socket) => { socket.write(data) } }
  })
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(UPGRADE + 'early bytes')
  await client.response(0)
  t.equal(early, 0, 'nothing of the tunnel reached the origin before its 101')
  await client.until(() => client.tunnel().length >= 11, 5000, 'the early bytes to come back')
  t.equal(client.tunnel().toString(), 'early bytes', 'then they were relayed')
})

t.test('a refused upgrade is an ordinary response', async t => {
  const origin = await startOrigin(t, () => lines('HTTP/1.1 426 Upgrade Required', 'Content-Length: 4') + 'nope')
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(UPGRADE)
  const res = await client.response(0)
  t.equal(res.head.line[1], '426')
  t.equal(res.body.toString(), 'nope')
  t.equal(client.tunnel().length, 0)
})

t.test('either side closing the tunnel closes the other', async t => {
  const origin = await echoOrigin(t)
  const { port } = await startProxy(t, { targets: [origin.target] })

  const a = await RawClient.connect(port)
  t.teardown(() => a.destroy())
  await a.write(UPGRADE)
  await a.response(0)
  a.destroy()
  await origin.until(() => origin.connections[0]?.released === true, 5000, 'the origin side to close')
  t.pass('client closed: origin connection closed')

  const b = await RawClient.connect(port)
  t.teardown(() => b.destroy())
  await b.write(UPGRADE)
  await b.response(0)
  await b.write('ping')
  await b.until(() => b.tunnel().length === 4, 5000, 'the echo')
  origin.connections[1]?.socket.end()
  await b.waitClose()
  t.equal(b.tunnel().toString(), 'ping', 'origin closed: client connection closed, nothing extra sent')
})

t.test('a plain request after an upgrade on another connection still works', async t => {
  const origin = await startOrigin(t, req => req.url === '/chat' ? { bytes: SWITCHING, tunnel: () => {} } : ok('plain'))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const ws = await RawClient.connect(port)
  t.teardown(() => ws.destroy())
  await ws.write(UPGRADE)
  await ws.response(0)
  const plain = await RawClient.connect(port)
  t.teardown(() => plain.destroy())
  await plain.write('GET /plain HTTP/1.1\r\nHost: h\r\n\r\n')
  t.equal((await plain.response(0)).body.toString(), 'plain')
  t.equal(origin.connections.length, 2, 'the upgraded upstream connection is not pooled')
})

t.test('a filter that answers in place of the backend\'s 101: the client gets that answer, the switched backend connection is closed, nothing fails', async t => {
  const origin = await startOrigin(t, req => req.url === '/chat' ? { bytes: SWITCHING + 'early tunnel bytes', tunnel: () => {} } : ok('plain'))
  const deny: Filter = { name: 'deny', onResponse (session, head) { if (head.status === 101) session.respond(403, { 'Content-Type': 'text/plain' }, 'no\n') } }
  const { port, proxy } = await startProxy(t, { targets: [origin.target], filters: [deny] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(UPGRADE)
  await client.response(0)
  await client.waitClose()
  t.equal(undated(client.text()), 'HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno\n', 'the filter\'s answer, byte for byte, and close (the upgrade request\'s connection cannot go on)')
  await origin.until(() => origin.connections[0]?.released === true, 5000, 'the switched backend connection to close')
  t.pass('the backend connection that switched protocols is closed, not pooled')
  const plain = await RawClient.connect(port)
  t.teardown(() => plain.destroy())
  await plain.write(lines('GET /x HTTP/1.1', 'Host: h'))
  t.equal((await plain.response(0)).body.toString(), 'plain', 'the next request goes on a fresh connection')
  t.same(proxy.stats().errors, {}, 'no error counted (before: internal_error from a 101 nobody took)')
})
