/**
 * proxy.update(): a new configuration while running. A bad one changes nothing; a good one
 * serves new connections at once while requests in flight finish on the old one; pools and
 * health carry over; listeners are added and removed; certificates swap; and reloading
 * repeatedly under load fails no request.
 */
import net from 'node:net'
import tls from 'node:tls'
import { readFileSync } from 'node:fs'
import t, { type Test } from 'tap'
import { ConfigError, createProxy, type Options, type Proxy } from '../../lib/index.js'
import { RawClient } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { unusedPort } from '../helpers/proxy.js'
import { fingerprint, makeCertificates } from '../helpers/tls-certs.js'
import { deferred, within } from '../helpers/wait.js'

function header (raw: Buffer, name: string): string | undefined {
  return new RegExp(`\r\n${name}: ([^\r]*)\r\n`, 'i').exec(raw.toString('latin1'))?.[1]
}

async function started (t: Test, options: Options): Promise<{ proxy: Proxy, port: number }> {
  const proxy = createProxy(options)
  const { port } = await proxy.listen()
  t.teardown(() => proxy.close())
  return { proxy, port }
}

function full (origin: string, extra: Record<string, unknown> = {}, body = 'one'): Options {
  return {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ name: 'hello', match: { pathExact: '/hello' }, respond: { body } }, { name: 'app', proxy: 'web' }],
    upstreams: { web: { targets: [origin] } },
    ...extra,
  } as Options
}

function refused (port: number): Promise<boolean> {
  return new Promise(resolve => {
    const s = net.connect(port, '127.0.0.1')
    s.on('connect', () => { s.destroy(); resolve(false) })
    s.on('error', () => resolve(true))
  })
}

t.test('new connections get the new configuration; a request in flight finishes on the old one, with Connection: close', async t => {
  const origin = await startOrigin(t, req => req.url === '/slow' ? { bytes: ok('slow'), delay: 300 } : ok('origin'))
  const { proxy, port } = await started(t, full(origin.target))
  const before = await RawClient.connect(port)
  t.teardown(() => before.destroy())
  await before.write('GET /hello HTTP/1.1\r\nHost: h\r\n\r\n')
  t.equal((await before.response(0)).body.toString(), 'one')
  await before.write('GET /slow HTTP/1.1\r\nHost: h\r\n\r\n')
  await origin.until(() => origin.requests.some(r => r.url === '/slow'), 5000, '/slow at the origin')

  t.same(await proxy.update(full(origin.target, {}, 'two')), { notes: [] })
  t.equal(proxy.address()?.port, port, 'the same listening socket')
  const after = await RawClient.connect(port)
  t.teardown(() => after.destroy())
  await after.write('GET /hello HTTP/1.1\r\nHost: h\r\n\r\n')
  t.equal((await after.response(0)).body.toString(), 'two', 'a new connection: the new configuration')

  const slow = await before.response(1)
  t.equal(slow.body.toString(), 'slow', 'the request in flight finished')
  t.equal(header(slow.raw, 'Connection'), 'close', 'and closed its connection, opened under the old configuration')
  await before.waitClose()
})

t.test('an invalid configuration changes nothing and says why', async t => {
  const origin = await startOrigin(t, () => ok())
  const { proxy, port } = await started(t, full(origin.target))
  const bad = { ...full(origin.target), routes: [{ name: 'app', proxy: 'nowhere' }] } as Options
  await t.rejects(proxy.update(bad), ConfigError)
  await t.rejects(proxy.update(bad), /routes\[0\]\.proxy.*nowhere/)
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write('GET /hello HTTP/1.1\r\nHost: h\r\n\r\n')
  t.equal((await client.response(0)).body.toString(), 'one', 'still the old configuration')
})

t.test('an unchanged group keeps its pool and health; a changed one keeps the health of targets that stay', async t => {
  const origin = await startOrigin(t, () => ok('pooled'))
  const down = await unusedPort()
  const options = (body: string): Options => full(origin.target, {
    upstreams: { web: { targets: [origin.target] }, other: { targets: [`127.0.0.1:${down}`, origin.target], policy: 'round-robin' } },
    routes: [{ name: 'hello', match: { pathExact: '/hello' }, respond: { body } }, { name: 'other', match: { path: '/other' }, proxy: 'other' }, { name: 'app', proxy: 'web' }],
  })
  const { proxy, port } = await started(t, options('one'))
  const first = await RawClient.connect(port)
  t.teardown(() => first.destroy())
  await first.write('GET /x HTTP/1.1\r\nHost: h\r\n\r\nGET /other HTTP/1.1\r\nHost: h\r\n\r\n')
  await first.waitResponses(2)
  t.equal(first.responses[1].body.toString(), 'pooled', 'failed over from the down target')
  t.equal(proxy.upstreams().find(u => u.target === `127.0.0.1:${down}`)?.up, false)
  first.destroy()

  const changed = options('two') as { upstreams: Record<string, { targets: string[] }> }
  changed.upstreams.other.targets.push('127.0.0.1:1')
  await proxy.update(changed as Options)
  const second = await RawClient.connect(port)
  t.teardown(() => second.destroy())
  await second.write('GET /y HTTP/1.1\r\nHost: h\r\n\r\n')
  t.equal((await second.response(0)).body.toString(), 'pooled')
  t.equal(origin.connections.length, 2, 'the unchanged group reused its pooled connection (one for web, one for other before the reload)')
  t.match(proxy.upstreams().filter(u => u.group === 'other'), [{ target: `127.0.0.1:${down}`, up: false }, { target: origin.target, up: true }, { target: '127.0.0.1:1', up: true }],
    'the down target is still down in the changed group')
})

t.test('a changed group (a target added): the targets that stay keep their pool, idle connections included', async t => {
  const a = await startOrigin(t, () => ok('A'))
  const b = await startOrigin(t, () => ok('B'))
  const options = (targets: string[]): Options => full(a.target, { upstreams: { web: { targets, policy: 'round-robin' } } })
  const { proxy, port } = await started(t, options([a.target]))
  const first = await RawClient.connect(port)
  await first.write('GET /x HTTP/1.1\r\nHost: h\r\n\r\n')
  t.equal((await first.response(0)).body.toString(), 'A')
  first.destroy()
  await a.until(() => a.connections.length === 1 && a.connections[0].requests.length === 1, 5000, 'the first request')
  // no client of the old generation is left: it retires during the update, its groups close
  await proxy.update(options([a.target, b.target]))
  const second = await RawClient.connect(port)
  t.teardown(() => second.destroy())
  // one at a time: each request finds the connection the previous one left idle
  const bodies: string[] = []
  for (let i = 0; i < 3; i++) {
    await second.write(`GET /${i} HTTP/1.1\r\nHost: h\r\n\r\n`)
    bodies.push((await second.response(i)).body.toString())
  }
  t.same(bodies.slice().sort(), ['A', 'A', 'B'], 'both targets take requests')
  t.equal(a.connections.length, 1, 'the target that stayed still has its one connection: accepted once by the origin')
  t.equal(a.connections[0].requests.length, 3, 'every request to it on that connection')
  t.equal(a.open, 1, 'and it is open')
  t.equal(b.connections.length, 1, 'the new target: a connection of its own')
  t.match(proxy.upstreams().filter(u => u.group === 'web'), [{ target: a.target, open: 1 }, { target: b.target, open: 1 }])
})

t.test('a reload during a request: its connection finishes it, then serves the new generation', async t => {
  const arrived = deferred()
  const answer = deferred()
  t.teardown(() => answer.resolve())
  const a = await startOrigin(t, async req => {
    if (req.url === '/slow') {
      arrived.resolve()
      await answer.promise
    }
    return ok('A')
  })
  const b = await startOrigin(t, () => ok('B'))
  const options = (targets: string[]): Options => full(a.target, { upstreams: { web: { targets, policy: 'round-robin' } } })
  const { proxy, port } = await started(t, options([a.target]))
  const first = await RawClient.connect(port)
  t.teardown(() => first.destroy())
  await first.write('GET /slow HTTP/1.1\r\nHost: h\r\n\r\n')
  await within(arrived.promise, 5000, 'the slow request at the origin')
  await proxy.update(options([a.target, b.target]))
  answer.resolve()
  const res = await first.response(0)
  t.equal(res.body.toString(), 'A')
  t.equal(header(res.raw, 'connection'), 'close', 'the old generation\'s client is told to go')
  const second = await RawClient.connect(port)
  t.teardown(() => second.destroy())
  const bodies: string[] = []
  for (let i = 0; i < 2; i++) {
    await second.write(`GET /${i} HTTP/1.1\r\nHost: h\r\n\r\n`)
    bodies.push((await second.response(i)).body.toString())
  }
  t.same(bodies.sort(), ['A', 'B'])
  t.equal(a.connections.length, 1, 'the connection that carried the request in flight serves the new generation')
  t.equal(a.open, 1)
})

t.test('changed connection settings: a new pool, and the old one drains', async t => {
  const a = await startOrigin(t, () => ok('A'))
  const options = (maxConnections: number): Options => full(a.target, { upstreams: { web: { targets: [a.target], maxConnections } } })
  const { proxy, port } = await started(t, options(16))
  const first = await RawClient.connect(port)
  await first.write('GET /x HTTP/1.1\r\nHost: h\r\n\r\n')
  await first.response(0)
  first.destroy()
  await a.until(() => a.connections.length === 1, 5000, 'the first connection')
  await proxy.update(options(8))
  await a.until(() => a.connections[0].released, 5000, 'the old pool\'s idle connection to close')
  const second = await RawClient.connect(port)
  t.teardown(() => second.destroy())
  await second.write('GET /y HTTP/1.1\r\nHost: h\r\n\r\n')
  t.equal((await second.response(0)).body.toString(), 'A')
  t.equal(a.connections.length, 2, 'a new connection under the new settings')
})

t.test('listeners added and removed; certificates swap', async t => {
  const certs = await makeCertificates(t)
  const a = await certs.issue('a', ['site.test'])
  const b = await certs.issue('b', ['site.test'])
  const origin = await startOrigin(t, () => ok())
  const extra = await unusedPort()
  const base = (pair: { cert: string, key: string }, more: Array<Record<string, unknown>> = []): Options => (({
    listeners: [{ name: 'tls', listen: '127.0.0.1:0', tls: { certificates: [pair] } }, ...more],
    routes: [{ name: 'app', proxy: 'web' }],
    upstreams: { web: { targets: [origin.target] } },
  }) as unknown) as Options
  const { proxy, port } = await started(t, base(a))
  const peer = async (): Promise<string> => {
    const socket = tls.connect({ port, host: '127.0.0.1', servername: 'site.test', ca: readFileSync(certs.ca.cert) })
    t.teardown(() => socket.destroy())
    await within(new Promise(resolve => socket.once('secureConnect', resolve)), 5000, 'the TLS handshake')
    const fp = socket.getPeerCertificate().fingerprint256
    // a whole exchange, so that the connection ends cleanly on both sides
    socket.end('GET / HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n')
    socket.resume()
    await within(new Promise(resolve => socket.once('close', resolve)), 5000, 'the TLS connection to close')
    return fp
  }
  t.equal(await peer(), fingerprint(a.cert))
  t.equal(await refused(extra), true)

  await proxy.update(base(b, [{ name: 'plain', listen: `127.0.0.1:${extra}` }]))
  t.equal(await peer(), fingerprint(b.cert), 'the new certificate, on the same socket')
  t.same(proxy.addresses().map(x => [x.name, x.address?.port]), [['tls', port], ['plain', extra]])
  const plain = await RawClient.connect(extra)
  t.teardown(() => plain.destroy())
  await plain.write('GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n')
  t.equal((await plain.response(0)).head.line[1], '200', 'the added listener serves')

  await proxy.update(base(b))
  t.equal(await refused(extra), true, 'the removed listener no longer accepts')

})

t.test('reloading again and again under keep-alive load: no request fails', async t => {
  const origin = await startOrigin(t, () => ok('body'))
  const { proxy, port } = await started(t, full(origin.target))
  let failures = 0
  let answered = 0
  let running = true
  const errors: string[] = []
  // each client: sequential requests on a keep-alive connection; a Connection: close answer
  // (the old configuration letting go) is followed by a new connection, as any client does
  const client = async (id: number): Promise<void> => {
    let conn = await RawClient.connect(port)
    let index = 0
    for (let i = 0; running && i < 5000; i++) {
      try {
        await conn.write(`GET /${id}/${i} HTTP/1.1\r\nHost: h\r\n\r\n`)
        const res = await conn.response(index++, 5000)
        if (res.head.line[1] !== '200' || res.body.toString() !== 'body') {
          failures++
          errors.push(res.head.line.join(' '))
        }
        answered++
        if (header(res.raw, 'Connection') === 'close') {
          await conn.waitClose()
          conn = await RawClient.connect(port)
          index = 0
        }
      } catch (err) {
        failures++
        errors.push((err as Error).message)
        conn.destroy()
        conn = await RawClient.connect(port)
        index = 0
      }
    }
    conn.destroy()
  }
  const clients = Array.from({ length: 8 }, (_, id) => client(id))
  for (let reload = 0; reload < 20; reload++) {
    const target = answered + 20
    // between reloads: some requests answered (bounded by the clients' own timeouts)
    for (let spin = 0; spin < 1000 && answered < target; spin++) await new Promise(resolve => setImmediate(resolve))
    await proxy.update(full(origin.target, {}, `v${reload}`))
  }
  running = false
  await within(Promise.all(clients), 20_000, 'the clients to finish')
  t.ok(answered > 100, `requests answered meanwhile (${answered})`)
  t.equal(failures, 0, `no failed request (${errors.slice(0, 5).join('; ')})`)
})
