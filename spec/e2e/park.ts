/**
 * Parked client connections (timeouts.clientPark, downstream/parked.ts): an idle keep-alive
 * connection given up to its TCP handle must be, to its client, the connection it was: the next
 * request answered byte for byte whatever way it arrives, its end and a reset handled, its idle
 * timeout, a shutdown and a drain as for any idle connection, still counted under the connection
 * caps, still the client a PROXY header named. TLS connections are never parked.
 */
import t, { type Test } from 'tap'
import tls from 'node:tls'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createProxy, type Options } from '../../lib/index.js'
import { RawClient, exchange } from '../helpers/client.js'
import { header } from '../helpers/framing.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy, type StartedProxy, type TestProxyOptions } from '../helpers/proxy.js'
import { makeCertificates } from '../helpers/tls-certs.js'
import { poll, tick, within } from '../helpers/wait.js'

const lines = (...l: string[]): string => l.map(x => x + '\r\n').join('') + '\r\n'
const GET = (path: string): string => lines(`GET ${path} HTTP/1.1`, 'Host: h')
const PARK = '30ms'

/** Every client connection parked, and as many as `n` open (counted under the caps). */
async function parked (started: StartedProxy, n = 1): Promise<void> {
  await poll(() => { const s = started.proxy.stats(); return s.parked === n && s.connections >= n }, `${n} connection(s) parked`)
}

async function echoing (t: Test) {
  return await startOrigin(t, req => ok(`${req.method} ${req.url} ${req.bodyLength} ${header(req, 'x-forwarded-for') ?? '-'}`))
}

/** An echoing origin, rp4 parking after PARK (and `options`), and a client whose connection is parked after one GET of `first`. */
async function parkedClient (t: Test, options: Partial<TestProxyOptions> = {}, first = '/first') {
  const origin = await echoing(t)
  const started = await startProxy(t, { targets: [origin.target], ...options, timeouts: { clientPark: PARK, ...options.timeouts } })
  const client = await RawClient.connect(started.port)
  t.teardown(() => client.destroy())
  await client.write(GET(first))
  const response = await client.response(0)
  await parked(started)
  return { origin, started, client, response }
}

t.test('a parked connection answers its next request byte for byte, on the same backend connection', async t => {
  const { origin, started, client, response } = await parkedClient(t, {}, '/before')
  t.equal(response.body.toString(), 'GET /before 0 127.0.0.1')
  t.equal(started.proxy.stats().clients, 1, 'still one of the clients')
  await client.write(GET('/after'))
  const res = await client.response(1)
  t.equal(res.raw.toString('latin1'), lines('HTTP/1.1 200 OK', 'Content-Length: 22', 'Via: 1.1 rp4') + 'GET /after 0 127.0.0.1', 'the exact bytes')
  t.equal(origin.connections.length, 1, 'the backend connection was reused')
  // parked a second time, and woken again
  await parked(started)
  await client.write(GET('/third'))
  t.equal((await client.response(2)).body.toString(), 'GET /third 0 127.0.0.1')
  t.equal(client.closed, false)
  t.same(started.events.clientErrors, [], 'nothing reported')
})

t.test('after parking: pipelined requests in one write, a request a byte at a time, bodies (Content-Length and chunked, large)', async t => {
  const origin = await echoing(t)
  const started = await startProxy(t, { targets: [origin.target], timeouts: { clientPark: PARK } })
  const client = await RawClient.connect(started.port)
  t.teardown(() => client.destroy())
  let n = 0
  const next = async (bytes: string | Buffer, expected: string, bytewise = false): Promise<void> => {
    await parked(started)
    if (bytewise) await client.writeBytewise(bytes)
    else await client.write(bytes)
    t.equal((await client.response(n++)).body.toString(), expected)
  }
  await client.write(GET('/first'))
  await client.response(n++)
  await parked(started)
  await client.write(GET('/p1') + GET('/p2') + GET('/p3'))
  t.same((await client.waitResponses(n + 3)).slice(n).map(r => r.body.toString()), ['GET /p1 0 127.0.0.1', 'GET /p2 0 127.0.0.1', 'GET /p3 0 127.0.0.1'], 'three pipelined, in order')
  n += 3
  await next(GET('/bytewise'), 'GET /bytewise 0 127.0.0.1', true)
  const body = Buffer.alloc(300_000, 'x')
  await next(Buffer.concat([Buffer.from(lines('POST /upload HTTP/1.1', 'Host: h', `Content-Length: ${body.length}`)), body]), 'POST /upload 300000 127.0.0.1')
  await next(lines('POST /chunked HTTP/1.1', 'Host: h', 'Transfer-Encoding: chunked') + '5\r\nhello\r\n0\r\n\r\n', 'POST /chunked 5 127.0.0.1')
  t.equal(origin.requests.at(-2)?.sha256, createHash('sha256').update(body).digest('hex'), 'the upload arrived whole')
  t.same(started.events.clientErrors, [])
})

t.test('a smuggling attempt on a woken connection is refused as on any other', async t => {
  const { origin, client } = await parkedClient(t)
  await client.write(lines('POST /x HTTP/1.1', 'Host: h', 'Content-Length: 5', 'Transfer-Encoding: chunked') + '0\r\n\r\n' + GET('/smuggled'))
  const res = await client.response(1)
  t.equal(res.head.line[1], '400')
  await client.waitClose()
  t.same(origin.requests.map(r => r.url), ['/first'], 'the backend saw nothing of it')
})

t.test('a head over maxHeaderSize on a woken connection, sent a byte at a time: 431, nothing upstream', async t => {
  const { origin, client } = await parkedClient(t, { maxHeaderSize: 1024 })
  await client.writeBytewise(lines('GET /big HTTP/1.1', 'Host: h', `X-Big: ${'a'.repeat(2048)}`))
  const res = await client.response(1)
  t.equal(res.head.line[1], '431')
  await client.waitClose()
  t.same(origin.requests.map(r => r.url), ['/first'], 'the backend saw nothing of it')
})

t.test('the client closes a parked connection: uncounted, nothing reported; a reset is reported as for an idle connection', async t => {
  const origin = await echoing(t)
  const started = await startProxy(t, { targets: [origin.target], timeouts: { clientPark: PARK } })
  const closing = await RawClient.connect(started.port)
  await closing.write(GET('/a'))
  await closing.response(0)
  await parked(started)
  closing.end()
  await closing.waitClose()
  t.equal(closing.text().length, (await closing.response(0)).raw.length, 'nothing more was sent to it')
  await poll(() => started.proxy.stats().connections === 0, 'the connection uncounted')
  t.equal(started.proxy.stats().parked, 0)
  t.equal(started.proxy.stats().clients, 0)
  t.same(started.events.clientErrors, [], 'a clean end is no error')

  const resetting = await RawClient.connect(started.port)
  await resetting.write(GET('/b'))
  await resetting.response(0)
  await parked(started)
  resetting.reset()
  await started.events.until(() => started.events.clientErrors.length === 1, 5000, 'the client error')
  t.equal(started.events.clientErrors[0].error.code, 'client_error')
  t.match(started.events.clientErrors[0].error.message, /^client 127\.0\.0\.1:\d+: ECONNRESET$/)
  await poll(() => started.proxy.stats().connections === 0, 'uncounted')
})

t.test('the idle timeout closes a parked connection with a FIN, as an idle one', async t => {
  const origin = await echoing(t)
  const started = await startProxy(t, { targets: [origin.target], timeouts: { clientPark: PARK, clientIdle: '400ms' } })
  const client = await RawClient.connect(started.port)
  await client.write(GET('/a'))
  const first = await client.response(0)
  await parked(started)
  await client.waitClose()
  t.equal(client.ended, true, 'ended by a FIN')
  t.equal(client.error, null, 'not reset')
  t.equal(client.raw().length, first.raw.length, 'nothing more was sent')
  await poll(() => started.proxy.stats().connections === 0, 'uncounted')
})

t.test('close() closes parked connections and resolves', async t => {
  const origin = await echoing(t)
  const proxy = createProxy({ listen: '127.0.0.1:0', targets: [origin.target], timeouts: { clientPark: PARK } })
  const { port } = await proxy.listen()
  const clients = await Promise.all([1, 2, 3].map(async () => await RawClient.connect(port)))
  for (const c of clients) {
    await c.write(GET('/a'))
    await c.response(0)
  }
  await poll(() => proxy.stats().parked === 3, 'three parked')
  await within(proxy.close(), 5000, 'close()')
  for (const c of clients) await c.waitClose()
  t.ok(clients.every(c => c.ended && c.error === null), 'each closed with a FIN')
})

t.test('a drain keeps a parked connection open for one more answer, with Connection: close', async t => {
  const origin = await echoing(t)
  const proxy = createProxy({ listen: '127.0.0.1:0', targets: [origin.target], drainTimeout: '10s', timeouts: { clientPark: PARK } })
  t.teardown(() => proxy.close())
  const { port } = await proxy.listen()
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(GET('/a'))
  await client.response(0)
  await poll(() => proxy.stats().parked === 1, 'parked')
  let resolved = false
  const draining = proxy.drain()
  void draining.then(() => { resolved = true })
  for (let i = 0; i < 3; i++) await tick()
  t.equal(resolved, false, 'the drain waits for the parked connection')
  await client.write(GET('/b'))
  const res = await client.response(1)
  t.equal(res.body.toString(), 'GET /b 0 127.0.0.1')
  t.equal(header(res, 'Connection'), 'close')
  await client.waitClose()
  t.same(await within(draining, 5000, 'the drain'), { cut: 0 })
})

t.test('a parked connection still counts under limits.maxConnectionsPerIp', async t => {
  const origin = await echoing(t)
  const started = await startProxy(t, { targets: [origin.target], timeouts: { clientPark: PARK }, limits: { maxConnectionsPerIp: 1 } })
  const first = await RawClient.connect(started.port)
  t.teardown(() => first.destroy())
  await first.write(GET('/a'))
  await first.response(0)
  await parked(started)
  const second = await RawClient.connect(started.port)
  await second.waitClose()
  t.equal(second.text(), '', 'the second connection from the address was closed unanswered')
  t.equal(started.events.clientErrors[0]?.error.code, 'too_many_connections')
  await first.write(GET('/b'))
  t.equal((await first.response(1)).body.toString(), 'GET /b 0 127.0.0.1', 'the parked one is served')
  await parked(started)
  first.destroy()
  await poll(() => started.proxy.stats().connections === 0, 'its place freed')
  const third = await RawClient.connect(started.port)
  t.teardown(() => third.destroy())
  await third.write(GET('/c'))
  t.equal((await third.response(0)).body.toString(), 'GET /c 0 127.0.0.1', 'a new connection takes the place')
})

t.test('a woken connection is still the client its PROXY header named', async t => {
  const origin = await echoing(t)
  const started = await startProxy(t, { targets: [origin.target], timeouts: { clientPark: PARK }, acceptProxy: { from: ['127.0.0.1/32'] } })
  const client = await RawClient.connect(started.port)
  t.teardown(() => client.destroy())
  await client.write('PROXY TCP4 198.51.100.7 127.0.0.1 40001 80\r\n' + GET('/a'))
  t.equal((await client.response(0)).body.toString(), 'GET /a 0 198.51.100.7')
  await parked(started)
  await client.write(GET('/b'))
  t.equal((await client.response(1)).body.toString(), 'GET /b 0 198.51.100.7', 'the header\'s client, after parking')
})

t.test('TLS connections are not parked; a cleartext one on the same proxy is', async t => {
  const certs = await makeCertificates(t)
  const pair = await certs.issue('a', ['a.test'])
  const origin = await echoing(t)
  const started = await startProxy(t, { targets: [origin.target], timeouts: { clientPark: PARK }, tls: { certificates: [pair] } })
  const secure = tls.connect({ host: '127.0.0.1', port: started.port, servername: 'a.test', ca: readFileSync(certs.ca.cert) })
  t.teardown(() => secure.destroy())
  await within(once(secure, 'secureConnect'), 5000, 'the handshake')
  let text = ''
  secure.on('data', (chunk: Buffer) => { text += chunk.toString('latin1') })
  secure.write(GET('/s1'))
  await poll(() => text.endsWith('GET /s1 0 127.0.0.1'), 'the first TLS response')
  // the cleartext connection goes idle after the TLS one: parked, the TLS one would have been first
  const plain = await RawClient.connect(started.port)
  t.teardown(() => plain.destroy())
  await plain.write(GET('/p'))
  await plain.response(0)
  await parked(started)
  t.equal(started.proxy.stats().clients, 2, 'both are clients, one parked')
  secure.write(GET('/s2'))
  await poll(() => text.endsWith('GET /s2 0 127.0.0.1'), 'the second TLS response')
  t.equal(started.proxy.stats().parked, 1)
})

t.test('clientPark: a value the schema refuses names the key', async t => {
  t.throws(() => createProxy({ listen: '127.0.0.1:0', targets: ['127.0.0.1:1'], timeouts: { clientPark: 'soon' } } as never), /clientPark/)
})

t.test('a reload while a connection is parked: its next request is answered by the configuration it came under, with Connection: close', async t => {
  const origin = await echoing(t)
  const config = (body: string): Options => ({
    listeners: [{ listen: '127.0.0.1:0' }],
    http: { timeouts: { clientPark: PARK } },
    routes: [{ name: 'hello', match: { pathExact: '/hello' }, respond: { body } }, { name: 'app', proxy: 'web' }],
    upstreams: { web: { targets: [origin.target] } },
  }) as Options
  const proxy = createProxy(config('one'))
  const { port } = await proxy.listen()
  t.teardown(() => proxy.close())
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(GET('/hello'))
  t.equal((await client.response(0)).body.toString(), 'one')
  await poll(() => proxy.stats().parked === 1, 'parked')
  t.same(await proxy.update(config('two')), { notes: [] })
  const fresh = await RawClient.connect(port)
  t.teardown(() => fresh.destroy())
  await fresh.write(GET('/hello'))
  t.equal((await fresh.response(0)).body.toString(), 'two', 'a new connection: the new configuration')
  await client.write(GET('/hello'))
  const res = await client.response(1)
  t.equal(res.body.toString(), 'one', 'the parked one: the configuration it came under')
  t.equal(header(res, 'Connection'), 'close')
  await client.waitClose()
})

t.test('the metrics count parked connections among the HTTP ones', async t => {
  const origin = await echoing(t)
  const proxy = createProxy({ listen: '127.0.0.1:0', targets: [origin.target], timeouts: { clientPark: PARK }, admin: { listen: 0 } })
  const { port } = await proxy.listen()
  t.teardown(() => proxy.close())
  const clients = await Promise.all([1, 2].map(async () => await RawClient.connect(port)))
  t.teardown(() => { for (const c of clients) c.destroy() })
  for (const c of clients) {
    await c.write(GET('/a'))
    await c.response(0)
  }
  await poll(() => proxy.stats().parked === 2, 'both parked')
  const admin = proxy.adminAddress()!.port
  const scrape = async (): Promise<string> => (await exchange(admin, 'GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', { responses: 1 })).responses[0]?.body.toString() ?? ''
  const series = (text: string, kind: string): string | undefined => text.split('\n').find(l => l.startsWith(`rp4_client_connections{kind="${kind}"} `))
  const text = await scrape()
  t.equal(series(text, 'parked'), 'rp4_client_connections{kind="parked"} 2')
  t.equal(series(text, 'http'), 'rp4_client_connections{kind="http"} 2')
  // the start of a head wakes one, and keeps it awake (a head under way is never parked)
  await clients[0].write('GET /b HTTP/1.1\r\n')
  await poll(() => proxy.stats().parked === 1, 'one woken')
  t.equal(series(await scrape(), 'parked'), 'rp4_client_connections{kind="parked"} 1', 'one woken')
  await clients[0].write('Host: h\r\n\r\n')
  t.equal((await clients[0].response(1)).body.toString(), 'GET /b 0 127.0.0.1')
})
