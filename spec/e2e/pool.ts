/**
 * The upstream connection pool: reuse across client connections, the per-backend cap, the idle
 * timeout, the one retry when a pooled connection turns out to be closed, and pipelining upstream.
 */
import t from 'tap'
import { RawClient, exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'

const get = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: h\r\n\r\n`

t.test('a new client connection reuses the idle upstream connection', async t => {
  const origin = await startOrigin(t, req => ok(req.url))
  const { port } = await startProxy(t, { targets: [origin.target] })
  for (const path of ['/a', '/b', '/c']) {
    const res = await exchange(port, get(path), { responses: 1 })
    t.equal(res.responses[0]?.body.toString(), path)
  }
  t.equal(origin.connections.length, 1, 'the origin saw one connection')
  t.equal(origin.connections[0]?.requests.length, 3)
})

t.test('more concurrent requests than maxConnections: never more than the cap, all succeed', async t => {
  const origin = await startOrigin(t, req => ({ bytes: ok(req.url), delay: 20 }))
  const { port } = await startProxy(t, { targets: [origin.target], upstream: { maxConnections: 2 } })
  const paths = Array.from({ length: 12 }, (_, i) => `/c${i}`)
  const results = await Promise.all(paths.map(p => exchange(port, get(p), { responses: 1 })))
  t.same(results.map(r => r.responses[0]?.body.toString()), paths, 'every client got its own answer')
  t.ok(origin.peakOpen <= 2, `at most 2 upstream connections at once (saw ${origin.peakOpen})`)
  t.equal(origin.connections.length, 2, 'and both were reused')
})

t.test('an idle upstream connection is closed after timeouts.upstreamIdle', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], timeouts: { upstreamIdle: 200 } })
  await exchange(port, get('/'), { responses: 1 })
  const idleSince = Date.now()
  await origin.until(() => origin.connections[0]?.released === true, 5000, 'the idle upstream connection to close')
  const idle = Date.now() - idleSince
  t.ok(idle >= 150, `closed after ${idle} ms idle, not before the timeout`)
  const res = await exchange(port, get('/again'), { responses: 1 })
  t.equal(res.responses[0]?.head.line[1], '200', 'the next request opens a new one')
  t.equal(origin.connections.length, 2)
})

t.test('a backend closing after each response without saying so: every request still succeeds', async t => {
  const origin = await startOrigin(t, req => ({ bytes: ok(req.url), close: 'end' }))
  const { port } = await startProxy(t, { targets: [origin.target] })
  for (const path of ['/1', '/2', '/3', '/4']) {
    const res = await exchange(port, get(path), { responses: 1 })
    t.equal(res.responses[0]?.body.toString(), path)
  }
  t.equal(origin.connections.length, 4)
})

t.test('a pooled connection closed under a GET: retried once on a new connection', async t => {
  // the second request on a connection is dropped unanswered: the close crossed the request
  const origin = await startOrigin(t, req => req.connection.requests.length >= 2 ? { close: 'destroy' } : ok(req.url))
  const { port, events } = await startProxy(t, { targets: [origin.target] })
  const first = await exchange(port, get('/first'), { responses: 1 })
  t.equal(first.responses[0]?.body.toString(), '/first')
  const second = await exchange(port, get('/second'), { responses: 1 })
  t.equal(second.responses[0]?.head.line[1], '200', 'the retried GET succeeded')
  t.equal(second.responses[0]?.body.toString(), '/second')
  t.same(origin.connections.map(c => c.requests.map(r => r.url)), [['/first', '/second'], ['/second']], 'sent twice: reused, then fresh')
  t.equal(second.responses.length, 1)
  t.equal(events.responses.at(-1)?.status, 200)
})

t.test('upstream pipelining: several requests on one connection before their responses', async t => {
  const origin = await startOrigin(t, async req => {
    // hold the first answer until the proxy pipelined the others (bounded: without pipelining they never come)
    if (req.connection.requests[0] === req) {
      await origin.until(() => req.connection.requests.length >= 2 || origin.connections.length > 1, 2000).catch(() => {})
    }
    return ok(req.url)
  })
  const { port } = await startProxy(t, { targets: [origin.target], upstream: { maxConnections: 1, pipelining: 4 } })
  const clients = await Promise.all([0, 1, 2, 3].map(() => RawClient.connect(port)))
  t.teardown(() => clients.forEach(c => c.destroy()))
  await Promise.all(clients.map((c, i) => c.write(get(`/p${i}`))))
  const bodies = await Promise.all(clients.map(async c => (await c.response(0)).body.toString()))
  t.same(bodies, ['/p0', '/p1', '/p2', '/p3'], 'each client got the answer to its own request')
  t.same(origin.connections.map(c => c.requests.length), [4], 'all four on one connection')
  t.equal(origin.connections.length, 1, 'one upstream connection')
  t.ok((origin.connections[0]?.peakPending ?? 0) >= 2, `requests in flight together on it: ${origin.connections[0]?.peakPending}`)
})

t.test('upstream pipelining: a client pipeline over a pipelined upstream keeps every pairing', async t => {
  const origin = await startOrigin(t, req => ({ bytes: ok(`${req.url} on ${req.connection.id}`), delay: req.url.endsWith('0') ? 30 : 0 }))
  const { port } = await startProxy(t, { targets: [origin.target], upstream: { maxConnections: 2, pipelining: 8 } })
  const paths = Array.from({ length: 20 }, (_, i) => `/q${i}`)
  const res = await exchange(port, paths.map(get).join(''), { responses: paths.length })
  t.same(res.responses.map(r => r.body.toString().split(' ')[0]), paths)
  t.ok(origin.peakOpen <= 2)
})
