/**
 * The library surface: option validation, listen(), the events and what they carry, and close()
 * (stops accepting, lets requests in flight finish, closes idle connections on both sides).
 */
import net from 'node:net'
import t from 'tap'
import { createProxy, ProxyError, type ProxyOptions } from '../../lib/index.js'
import { RawClient, exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { ProxyEventLog, startProxy, unusedPort } from '../helpers/proxy.js'
import { within } from '../helpers/wait.js'

const GET = 'GET /x?y=1 HTTP/1.1\r\nHost: h\r\n\r\n'

t.test('invalid options: TypeError naming the option', async t => {
  const base: ProxyOptions = { listen: '127.0.0.1:0', targets: ['127.0.0.1:8080'] }
  const cases: Array<[unknown, string]> = [
    [{ ...base, targets: [] }, 'targets'],
    [{ ...base, targets: ['nohost'] }, 'targets[0]'],
    [{ ...base, targets: ['127.0.0.1:1', 'x:y'] }, 'targets[1]'],
    [{ ...base, targets: ['127.0.0.1:70000'] }, 'targets[0]'],
    [{ ...base, targets: ['::1:80'] }, 'targets[0]'],
    [{ ...base, listen: 'abc:def' }, 'listen'],
    [{ ...base, listen: true }, 'listen'],
    [{ ...base, timeouts: { response: -1 } }, 'timeouts.response'],
    [{ ...base, timeouts: { connect: 'soon' } }, 'timeouts.connect'],
    [{ ...base, upstream: { maxConnections: 0 } }, 'upstream.maxConnections'],
    [{ ...base, upstream: { pipelining: 1.5 } }, 'upstream.pipelining'],
    [{ ...base, maxPipelinedRequests: 0 }, 'maxPipelinedRequests'],
    [{ ...base, maxHeaderSize: 'big' }, 'maxHeaderSize'],
    [{ ...base, via: 'a b' }, 'via'],
    [{ ...base, bogus: 1 }, 'bogus'],
  ]
  for (const [options, name] of cases) {
    let thrown: unknown = null
    try {
      createProxy(options as ProxyOptions)
    } catch (err) {
      thrown = err
    }
    t.ok(thrown instanceof TypeError && thrown.message.includes(name),
      `${JSON.stringify(options)} → TypeError naming ${name} (got ${String(thrown)})`)
  }
  t.doesNotThrow(() => createProxy({ ...base, targets: ['[::1]:80', 'localhost:1', '10.0.0.1:65535'] }), 'valid targets accepted')
})

t.test('listen() resolves with the bound address', async t => {
  const proxy = createProxy({ listen: '127.0.0.1:0', targets: ['127.0.0.1:1'] })
  const address = await proxy.listen()
  t.equal(address.address, '127.0.0.1')
  t.equal(address.family, 'IPv4')
  t.ok(address.port > 0)
  await proxy.close()
})

t.test('request and response events', async t => {
  const origin = await startOrigin(t, () => ok('evented'))
  const { port, events } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(GET + GET.replace('GET', 'HEAD'))
  await client.waitResponses(2)
  await events.until(() => events.responses.length === 2, 5000, 'two response events')
  const local = `127.0.0.1:${client.socket.localPort}`
  const [r1, r2] = events.requests
  t.match(r1, { method: 'GET', url: '/x?y=1', client: local })
  t.match(r2, { method: 'HEAD', url: '/x?y=1', client: local })
  t.ok(typeof r1?.id === 'number' && typeof r2?.id === 'number' && r1.id !== r2.id, 'distinct ids')
  for (const [i, res] of events.responses.entries()) {
    const req = events.requests.find(q => q.id === res.id)
    t.ok(req, `response ${i} matches a request`)
    t.match(res, { method: req?.method, url: '/x?y=1', client: local, status: 200, target: origin.target })
    t.ok(res.duration >= 0 && res.duration < 5000, `duration ${res.duration}`)
  }
})

t.test('upstreamError and clientError carry a ProxyError', async t => {
  const dead = await unusedPort()
  const { port, events } = await startProxy(t, { targets: [`127.0.0.1:${dead}`] })
  await exchange(port, GET, { responses: 1 })
  const up = events.upstreamErrors[0]
  t.ok(up?.error instanceof ProxyError, 'a ProxyError')
  t.match(up?.error, { source: 'upstream', status: 502 })
  t.type(up?.error.code, 'string')
  t.type(up?.error.retryable, 'boolean')
  t.equal(up?.target, `127.0.0.1:${dead}`)
  await exchange(port, 'NOT HTTP\r\n\r\n')
  await events.until(() => events.clientErrors.length > 0, 5000, 'a clientError event')
  const down = events.clientErrors.at(-1)
  t.ok(down?.error instanceof ProxyError)
  t.match(down?.error, { source: 'downstream', status: 400 })
  t.match(down?.client, /^127\.0\.0\.1:\d+$/)
})

t.test('a request refused before its head completed: the response event shows what the client sent, timed from its first byte', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port, events } = await startProxy(t, { targets: [origin.target], maxRequestLine: 8192, timeouts: { requestHead: 300 } })
  const long = await exchange(port, `DELETE /${'a'.repeat(9000)} HTTP/1.1\r\nHost: h\r\n\r\n`)
  t.equal(long.responses[0]?.head.line[1], '414')
  const slow = await RawClient.connect(port)
  t.teardown(() => slow.destroy())
  const began = performance.now()
  await slow.write('PUT /partial?q')
  await slow.waitResponses(1)
  const waited = performance.now() - began
  await exchange(port, 'FOO / HTTP/1.1\r\nHost: h\r\n\r\n')
  await events.until(() => events.responses.length === 3, 5000, 'three response events')
  const [r414, r408, r400] = events.responses
  t.match(r414, { method: 'DELETE', url: '/' + 'a'.repeat(255) + '...', status: 414, target: '' })
  t.match(r408, { method: 'PUT', url: '/partial?q', status: 408 })
  t.ok(r408.duration >= 300 && r408.duration <= waited + 1, `the 408 timed from the first byte: ${r408.duration} ms (300 ms timeout, ${waited} ms seen by the client)`)
  t.match(r400, { method: '-', url: '-', status: 400 }, 'nothing parsed: -')
  t.equal(origin.requests.length, 0)
})

t.test('listen() on an address in use: rejects with the system error, and no event reports it a second time', async t => {
  const first = await startProxy(t, { targets: ['127.0.0.1:1'] })
  const proxy = createProxy({ listen: `127.0.0.1:${first.port}`, targets: ['127.0.0.1:1'] })
  const events = new ProxyEventLog(proxy)
  const err = await proxy.listen().then(() => null, (e: NodeJS.ErrnoException) => e)
  t.equal(err?.code, 'EADDRINUSE')
  await new Promise(resolve => setImmediate(resolve))
  t.same(events.clientErrors, [], 'no clientError')
  t.same(events.proxyErrors, [], 'no proxyError')
  await proxy.close()
})

t.test('close(): stops accepting, finishes the request in flight, closes idle connections', async t => {
  const origin = await startOrigin(t, req => req.url === '/slow' ? { bytes: ok('finished'), delay: 200 } : ok('quick'))
  const proxy = createProxy({ listen: '127.0.0.1:0', targets: [origin.target] })
  const { port } = await proxy.listen()
  let closeEvents = 0
  proxy.on('close', () => { closeEvents++ })

  // an idle keep-alive client, with its idle upstream connection
  const idle = await RawClient.connect(port)
  t.teardown(() => idle.destroy())
  await idle.write(GET)
  await idle.response(0)
  // a request in flight
  const busy = await RawClient.connect(port)
  t.teardown(() => busy.destroy())
  await busy.write('GET /slow HTTP/1.1\r\nHost: h\r\n\r\n')
  await origin.until(() => origin.requests.some(r => r.url === '/slow'), 5000, '/slow at the origin')

  const closing = proxy.close()
  t.equal(proxy.close(), closing, 'close() twice: the same promise')
  const refused = await new Promise<boolean>(resolve => {
    const s = net.connect(port, '127.0.0.1')
    s.on('connect', () => { s.destroy(); resolve(false) })
    s.on('error', () => resolve(true))
  })
  t.ok(refused, 'new connections are refused')
  await idle.waitClose()
  t.equal(idle.raw().length, idle.responses[0]?.raw.length, 'the idle client connection closed without another byte')
  const res = await busy.response(0)
  t.equal(res.body.toString(), 'finished', 'the request in flight completed')
  await within(closing, 5000, 'close() to resolve')
  t.equal(closeEvents, 1, 'one close event')
  await origin.until(() => origin.connections.every(c => c.released), 5000, 'upstream connections to close')
  t.pass('upstream connections closed')
})
