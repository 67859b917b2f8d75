/**
 * The metrics beyond requests and latency, read from /metrics after traffic that must move each
 * by a known amount: the cache's hits and misses by route, TLS handshakes by version and
 * resumption and their failures by reason, targets taken out and put back, retries per group.
 */
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import tls from 'node:tls'
import t, { type Test } from 'tap'
import { createProxy, type ProxyOptions } from '../../lib/index.js'
import { exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { unusedPort } from '../helpers/proxy.js'
import { makeCertificates } from '../helpers/tls-certs.js'
import { within } from '../helpers/wait.js'

async function start (t: Test, options: ProxyOptions): Promise<{ port: number, metrics: () => Promise<string> }> {
  const proxy = createProxy({ ...options, admin: { listen: 0 } })
  const { port } = await proxy.listen()
  t.teardown(() => proxy.close())
  const admin = proxy.adminAddress()!.port
  const metrics = async (): Promise<string> => (await exchange(admin, 'GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', { responses: 1 })).responses[0]?.body.toString() ?? ''
  return { port, metrics }
}

function value (text: string, series: string): number | null {
  const line = text.split('\n').find(l => l.startsWith(series + ' '))
  return line === undefined ? null : Number(line.slice(series.length + 1))
}

t.test('rp4_cache_requests_total by route and result; rp4_cache_entries and _bytes', async t => {
  const origin = await startOrigin(t, () => ok('cached', ['Cache-Control: max-age=60']))
  const { port, metrics } = await start(t, { listen: '127.0.0.1:0', targets: [origin.target], cache: { size: '1m' } })
  for (const path of ['/a', '/a', '/a', '/b']) await exchange(port, `GET ${path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`, { responses: 1 })
  const text = await metrics()
  t.equal(value(text, 'rp4_cache_requests_total{route="default",result="miss"}'), 2)
  t.equal(value(text, 'rp4_cache_requests_total{route="default",result="hit"}'), 2)
  t.equal(value(text, 'rp4_cache_entries{route="default"}'), 2)
  t.ok((value(text, 'rp4_cache_bytes{route="default"}') ?? 0) > 0)
})

t.test('no cache: no rp4_cache_requests_total series', async t => {
  const origin = await startOrigin(t, () => ok('plain'))
  const { port, metrics } = await start(t, { listen: '127.0.0.1:0', targets: [origin.target] })
  await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n', { responses: 1 })
  t.notMatch(await metrics(), /^rp4_cache_requests_total\{/m)
})

t.test('rp4_tls_handshakes_total by version and session; rp4_tls_handshake_failures_total by reason', async t => {
  const origin = await startOrigin(t, () => ok('tls'))
  const certs = await makeCertificates(t)
  const pair = await certs.issue('site', ['a.test'])
  const ca = readFileSync(certs.ca.cert)
  const { port, metrics } = await start(t, { listen: '127.0.0.1:0', targets: [origin.target], tls: { certificates: [pair] } })
  /** A handshake, then a request answered over it: the server's side is done too. */
  const served = async (options: tls.ConnectionOptions): Promise<tls.TLSSocket> => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca, ...options })
    await within(once(socket, 'secureConnect'), 5000, 'handshake')
    socket.write('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')
    socket.resume()
    await within(once(socket, 'end'), 5000, 'the response')
    return socket
  }
  let ticket: Buffer | undefined
  const first = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca, maxVersion: 'TLSv1.2' })
  first.once('session', (session: Buffer) => { ticket = session })
  await within(once(first, 'secureConnect'), 5000, 'full handshake')
  first.write('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')
  first.resume()
  await within(once(first, 'end'), 5000, 'the response')
  first.destroy()
  t.ok(ticket !== undefined, 'a ticket')
  const again = await served({ maxVersion: 'TLSv1.2', session: ticket })
  t.ok(again.isSessionReused(), 'resumed')
  again.destroy()
  ;(await served({ minVersion: 'TLSv1.3' })).destroy()
  // TLS 1.1 is below every profile: the handshake fails for want of a protocol both speak
  const old = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' })
  await within(once(old, 'error'), 5000, 'the refused handshake')
  old.destroy()
  // the server's side of each handshake may finish after the client's: read until all four show (bounded)
  const expected: Array<[string, number]> = [
    ['rp4_tls_handshakes_total{listener="default",version="TLSv1.2",session="full"}', 1],
    ['rp4_tls_handshakes_total{listener="default",version="TLSv1.2",session="resumed"}', 1],
    ['rp4_tls_handshakes_total{listener="default",version="TLSv1.3",session="full"}', 1],
    ['rp4_tls_handshake_failures_total{listener="default",reason="unsupported_protocol"}', 1],
  ]
  let text = ''
  for (let i = 0; i < 100; i++) {
    text = await metrics()
    if (expected.every(([series]) => value(text, series) !== null)) break
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  for (const [series, n] of expected) t.equal(value(text, series), n, series)
})

t.test('rp4_upstream_pool_waits_total: requests that waited for a busy target\'s only connection', async t => {
  const origin = await startOrigin(t, request => request.url === '/slow' ? { bytes: ok('slow'), delay: 1000 } : ok('fast'))
  const { port, metrics } = await start(t, { listen: '127.0.0.1:0', targets: [origin.target], upstream: { maxConnections: 1 } })
  await exchange(port, 'GET /fast HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n', { responses: 1 })
  t.equal(value(await metrics(), `rp4_upstream_pool_waits_total{group="default",target="${origin.target}"}`), 0, 'one at a time: none waited')
  const get = async (path: string): Promise<string | undefined> =>
    (await exchange(port, `GET ${path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`, { responses: 1 })).responses[0]?.body.toString()
  const slow = get('/slow')
  await origin.until(() => origin.requests.some(q => q.url === '/slow'), 5000, 'the slow request at the origin')
  // the next two find the only connection busy with the slow one
  const answers = await Promise.all([slow, get('/fast'), get('/fast')])
  t.same(answers, ['slow', 'fast', 'fast'])
  t.equal(value(await metrics(), `rp4_upstream_pool_waits_total{group="default",target="${origin.target}"}`), 2)
})

t.test('rp4_upstream_health_changes_total per target and reason; rp4_upstream_group_events_total retries', async t => {
  let flaky = 0
  const origin = await startOrigin(t, request => request.url === '/flaky' && ++flaky === 1 ? 'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n' : ok('fine'))
  const down = await unusedPort()
  const { port, metrics } = await start(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'web' }],
    upstreams: { web: { policy: 'round-robin', targets: [`127.0.0.1:${down}`, origin.target], retries: { count: 1, on: [503] } } },
  })
  for (let i = 0; i < 2; i++) await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n', { responses: 1 })
  await exchange(port, 'GET /flaky HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n', { responses: 1 })
  const text = await metrics()
  t.equal(value(text, `rp4_upstream_health_changes_total{group="web",target="127.0.0.1:${down}",state="down",reason="connect_failed"}`), 1, 'the refused target taken out once')
  t.ok((value(text, 'rp4_upstream_group_events_total{group="web",event="retries"}') ?? 0) >= 1, 'the 503 retried')
  t.equal(value(text, 'rp4_upstream_group_events_total{group="web",event="circuit_open"}'), 0)
})
