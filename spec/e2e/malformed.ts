/**
 * Malformed requests: rp4 answers 400 (or 431 for an oversized head) with its exact error bytes,
 * closes the connection, and nothing at all reaches the origin.
 */
import t from 'tap'
import { RawClient, exchange } from '../helpers/client.js'
import { header } from '../helpers/framing.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import { within } from '../helpers/wait.js'
import { undated } from '../helpers/dates.js'

const BAD_REQUEST = 'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n'

const MALFORMED: Array<[string, string]> = [
  ['not HTTP', 'HELLO THERE\r\n\r\n'],
  ['HTTP/1.1 without Host', 'GET / HTTP/1.1\r\nAccept: */*\r\n\r\n'],
  ['two Host headers', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
  ['two Host headers, same value', 'GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n'],
  ['space in a header name', 'GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n'],
  ['space before the colon', 'GET / HTTP/1.1\r\nHost : h\r\n\r\n'],
  ['Content-Length and Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
  ['non-numeric Content-Length', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n'],
  ['two different Content-Lengths', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'],
  ['Transfer-Encoding not ending in chunked', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n'],
  ['unknown HTTP version', 'GET / HTTP/9.9\r\nHost: h\r\n\r\n'],
  ['NUL in a header value', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\u0000b\r\n\r\n'],
  ['control character in the target', 'GET /a\u0001b HTTP/1.1\r\nHost: h\r\n\r\n'],
  ['missing request target', 'GET HTTP/1.1\r\nHost: h\r\n\r\n'],
]

t.test('malformed requests: 400, connection closed, nothing upstream', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port, events } = await startProxy(t, { targets: [origin.target] })
  for (const [name, bytes] of MALFORMED) {
    const before = origin.connections.length
    const res = await exchange(port, bytes)
    t.equal(undated(res.text), BAD_REQUEST, `${name}: exact 400`)
    t.equal(res.closed, true, `${name}: closed`)
    // a connection may have been opened early; what matters is that no byte of the request left
    const upstream = origin.connections.slice(before).map(c => c.raw().toString('latin1')).join('')
    t.equal(upstream, '', `${name}: nothing reached the origin`)
  }
  t.ok(events.clientErrors.length >= MALFORMED.length, 'a clientError per bad request')
  t.ok(events.clientErrors.every(e => e.error.status === 400), 'each with status 400')
})

t.test('malformed requests sent one byte at a time: same answer, and the proxy can still close', async t => {
  const origin = await startOrigin(t, () => ok())
  for (const [name, bytes] of MALFORMED.slice(0, 6)) {
    const { proxy, port } = await startProxy(t, { targets: [origin.target] })
    const client = await RawClient.connect(port)
    // the client keeps writing after the error, as a real one would before it reads the 400
    await client.writeBytewise(bytes)
    await client.waitClose()
    t.equal(undated(client.text()), BAD_REQUEST, name)
    client.destroy()
    const closed = await within(proxy.close(), 2000, 'proxy.close()').then(() => true, () => false)
    t.ok(closed, `${name}: proxy.close() resolves once the client is gone (clients open: ${proxy.stats().clients})`)
  }
  t.equal(origin.connections.reduce((n, c) => n + c.receivedLength, 0), 0, 'nothing reached the origin')
})

t.test('a malformed request after good ones in a pipeline: good ones answered, then 400', async t => {
  const origin = await startOrigin(t, req => ok(req.url))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, 'GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\n\r\n')
  t.same(res.responses.slice(0, 2).map(r => r.body.toString()), ['/1', '/2'])
  t.equal(undated(res.responses[2]?.raw.toString('latin1')), BAD_REQUEST)
  t.equal(res.responses.length, 3)
  t.equal(res.closed, true)
  t.same(origin.requests.map(r => r.url).sort(), ['/1', '/2'], 'only the good ones upstream')
})

t.test('a head over maxHeaderSize: 431, nothing upstream', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], maxHeaderSize: 1024 })
  const small = await exchange(port, `GET / HTTP/1.1\r\nHost: h\r\nX-Fill: ${'a'.repeat(500)}\r\n\r\n`, { responses: 1 })
  t.equal(small.responses[0]?.head.line[1], '200', 'a head under the limit passes')
  const big = await exchange(port, `GET / HTTP/1.1\r\nHost: h\r\nX-Fill: ${'a'.repeat(2000)}\r\n\r\n`, { responses: 1 })
  const r = big.responses[0]
  const body = '431 Request Header Fields Too Large\n'
  const close = r !== undefined && header(r, 'connection') === 'close'
  t.equal(undated(r?.raw.toString('latin1')),
    `HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\n` +
    (close ? 'Connection: close\r\n' : '') + '\r\n' + body)
  t.equal(origin.requests.length, 1, 'only the small request reached the origin')
  // a head that never ends is cut off too, however slowly it comes
  const endless = await RawClient.connect(port)
  t.teardown(() => endless.destroy())
  await endless.write('GET / HTTP/1.1\r\nHost: h\r\n')
  for (let i = 0; i < 200 && !endless.closed && endless.responses.length === 0; i++) await endless.write(`X-${i}: ${'b'.repeat(50)}\r\n`)
  await endless.waitResponses(1)
  t.equal(endless.responses[0]?.head.line[1], '431', 'an endless head gets 431')
})

t.test('a head not complete within timeouts.requestHead: the connection is closed, nothing upstream', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], timeouts: { requestHead: 300 } })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  const started = Date.now()
  await client.write('GET /stalled HTTP/1.1\r\nHost: h\r\nX-Half: ')
  await client.waitClose(5000)
  const waited = Date.now() - started
  t.ok(waited >= 250, `closed after ${waited} ms, not before the timeout`)
  // an answer is optional here; if there is one, it is rp4's own error format with a 4xx status
  const text = client.text()
  if (text !== '') t.match(undated(text), /^HTTP\/1\.1 4\d\d [^\r\n]+\r\nContent-Type: text\/plain; charset=utf-8\r\nContent-Length: \d+\r\nConnection: close\r\n\r\n4\d\d /)
  t.equal(origin.connections.reduce((n, c) => n + c.receivedLength, 0), 0, 'nothing reached the origin')
})
