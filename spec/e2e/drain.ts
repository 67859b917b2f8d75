/**
 * drain(): what SIGTERM does. New connections are refused at once and readiness turns false; a
 * request in flight finishes and its response says Connection: close; an idle keep-alive
 * connection is not cut under a request its client may be sending, but answered once more with
 * Connection: close; what is still open when the drain time runs out is cut.
 */
import net from 'node:net'
import t from 'tap'
import { createProxy } from '../../lib/index.js'
import { RawClient } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { within } from '../helpers/wait.js'

const GET = 'GET / HTTP/1.1\r\nHost: h\r\n\r\n'

function header (raw: Buffer, name: string): string | undefined {
  const m = new RegExp(`\r\n${name}: ([^\r]*)\r\n`, 'i').exec(raw.toString('latin1'))
  return m?.[1]
}

function refused (port: number): Promise<boolean> {
  return new Promise(resolve => {
    const s = net.connect(port, '127.0.0.1')
    s.on('connect', () => { s.destroy(); resolve(false) })
    s.on('error', () => resolve(true))
  })
}

t.test('drain: refuse new connections, finish what is in flight with Connection: close, keep idle ones for one more answer', async t => {
  const origin = await startOrigin(t, req => req.url === '/slow' ? { bytes: ok('slow done'), delay: 300 } : ok('quick'))
  const proxy = createProxy({ listen: '127.0.0.1:0', targets: [origin.target], drainTimeout: '10s' })
  t.teardown(() => proxy.close())
  const { port } = await proxy.listen()
  t.equal(proxy.ready, true, 'ready once listening')

  const idle = await RawClient.connect(port)
  t.teardown(() => idle.destroy())
  await idle.write(GET)
  t.equal(header((await idle.response(0)).raw, 'Connection'), undefined, 'before the drain: keep-alive')
  const busy = await RawClient.connect(port)
  t.teardown(() => busy.destroy())
  await busy.write('GET /slow HTTP/1.1\r\nHost: h\r\n\r\n')
  await origin.until(() => origin.requests.some(r => r.url === '/slow'), 5000, '/slow at the origin')

  let resolved = false
  const draining = proxy.drain()
  void draining.then(() => { resolved = true })
  t.equal(proxy.drain(), draining, 'drain() twice: the same promise')
  t.equal(proxy.ready, false, 'readiness false at the first moment')
  t.equal(await refused(port), true, 'new connections refused')

  const slow = await busy.response(0)
  t.equal(slow.body.toString(), 'slow done', 'the request in flight finished')
  t.equal(header(slow.raw, 'Connection'), 'close', 'and its response says Connection: close')
  await busy.waitClose()

  t.equal(resolved, false, 'the idle keep-alive connection is still open: the drain waits for it')
  await idle.write(GET)
  const again = await idle.response(1)
  t.equal(again.body.toString(), 'quick', 'a request on an idle connection during the drain is answered')
  t.equal(header(again.raw, 'Connection'), 'close', 'with Connection: close')
  await idle.waitClose()
  t.same(await within(draining, 5000, 'drain() once every connection closed'), { cut: 0 })
})

t.test('drainDelay: readiness false at once, connections still accepted (and closed after their answer), then refused', async t => {
  const origin = await startOrigin(t, () => ok('served'))
  const proxy = createProxy({ listen: '127.0.0.1:0', targets: [origin.target], drainDelay: '300ms' })
  t.teardown(() => proxy.close())
  const { port } = await proxy.listen()
  const draining = proxy.drain()
  t.equal(proxy.ready, false, 'not ready from the first moment')
  const late = await RawClient.connect(port)
  t.teardown(() => late.destroy())
  await late.write(GET)
  const res = await late.response(0)
  t.equal(res.body.toString(), 'served', 'a connection made during the delay is served')
  t.equal(header(res.raw, 'Connection'), 'close', 'and closed after its answer')
  t.same(await within(draining, 5000, 'the drain'), { cut: 0 })
  t.equal(await refused(port), true, 'refused once the delay is over')
})

t.test('drain with nothing open resolves at once; the drain time cuts a request that outlives it', async t => {
  const origin = await startOrigin(t, () => ({ bytes: ok('late'), delay: 5000 }))
  const quiet = createProxy({ listen: '127.0.0.1:0', targets: [origin.target] })
  await quiet.listen()
  t.same(await within(quiet.drain(), 2000, 'an empty drain'), { cut: 0 })

  const proxy = createProxy({ listen: '127.0.0.1:0', targets: [origin.target], drainTimeout: '200ms' })
  t.teardown(() => proxy.close())
  const { port } = await proxy.listen()
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(GET)
  await origin.until(() => origin.requests.length === 1, 5000, 'the request at the origin')
  const started = Date.now()
  t.same(await within(proxy.drain(), 3000, 'drain() after its timeout'), { cut: 1 })
  t.ok(Date.now() - started >= 150, 'it waited for the drain time')
  await client.waitClose()
  t.equal(client.responses.length, 0, 'the cut request got no (partial) response')
})
