/**
 * Balancing policies, health and retries through the proxy, with real origins on port 0 that
 * refuse, reset, hang, answer 503 or flap: weights, least outstanding, hashing by header, backups,
 * active checks (HTTP and TCP) with rise/fall, outlier ejection, retries and their budget, per-try
 * timeouts, circuit breaking, and a raw TCP listener hashed by client IP.
 */
import { readFileSync } from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'
import t from 'tap'
import { exchange } from '../helpers/client.js'
import { header } from '../helpers/framing.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy, unusedPort } from '../helpers/proxy.js'
import { Observable, poll } from '../helpers/wait.js'
import type { Proxy, TargetHealthEvent } from '../../lib/index.js'

const GET = 'GET / HTTP/1.1\r\nHost: h\r\n\r\n'
const UNAVAILABLE = 'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy'

async function bodies (port: number, n: number, request = GET): Promise<string[]> {
  const out: string[] = []
  for (let i = 0; i < n; i++) {
    const res = await exchange(port, request, { responses: 1 })
    out.push(res.responses[0]?.body.toString() ?? `(${res.responses[0]?.head.line[1] ?? 'none'})`)
  }
  return out
}

function tally (list: string[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const x of list) out[x] = (out[x] ?? 0) + 1
  return out
}

/** The proxy's health transitions, waitable. */
function healthLog (proxy: Proxy): Observable & { events: TargetHealthEvent[] } {
  const log = Object.assign(new Observable(), { events: [] as TargetHealthEvent[] })
  proxy.on('targetHealth', event => { log.events.push(event); log.changed() })
  return log
}

t.test('weights from the command-line form: 3:1, smoothly interleaved', async t => {
  const a = await startOrigin(t, () => ok('A'))
  const b = await startOrigin(t, () => ok('B'))
  const { port } = await startProxy(t, { targets: [`${a.target},weight=3`, b.target], balance: 'round-robin' })
  const seen = await bodies(port, 16)
  t.same(tally(seen), { A: 12, B: 4 })
  t.notMatch(seen.join(''), /AAAA/, `A's turns are spread: ${seen.join('')}`)
})

t.test('p2c: weights hold one request at a time too (3:1, not everything on the heavy one)', async t => {
  const a = await startOrigin(t, () => ok('A'))
  const b = await startOrigin(t, () => ok('B'))
  const { port } = await startProxy(t, { targets: [`${a.target},weight=3`, b.target], balance: 'p2c' })
  const counts = tally(await bodies(port, 80))
  t.ok(counts.A >= 50 && counts.A <= 70 && counts.B >= 10, `about 60:20 (fixed seed): ${JSON.stringify(counts)}`)
})

t.test('least-conn: a slow target gets few requests while a fast one is free', async t => {
  const slow = await startOrigin(t, () => ({ bytes: ok('slow'), delay: 300 }))
  const fast = await startOrigin(t, () => ok('fast'))
  const { port } = await startProxy(t, { targets: [slow.target, fast.target], balance: 'least-conn' })
  // four clients, each sending its next request when the last is answered
  const seen: string[] = []
  await Promise.all([0, 1, 2, 3].map(async () => { seen.push(...await bodies(port, 10)) }))
  const counts = tally(seen)
  t.equal(seen.length, 40)
  t.ok((counts.slow ?? 0) <= 8, `the slow target took at most one request per client at a time: ${JSON.stringify(counts)}`)
})

t.test('hash:header: a key sticks to its target; requests without it go round robin', async t => {
  const a = await startOrigin(t, () => ok('A'))
  const b = await startOrigin(t, () => ok('B'))
  const c = await startOrigin(t, () => ok('C'))
  const { port } = await startProxy(t, { targets: [a.target, b.target, c.target], balance: 'hash:header:X-User' })
  const first = new Map<string, string>()
  for (let round = 0; round < 2; round++) {
    for (let u = 0; u < 12; u++) {
      const [got] = await bodies(port, 1, `GET / HTTP/1.1\r\nHost: h\r\nX-User: user-${u}\r\n\r\n`)
      if (round === 0) first.set(`user-${u}`, got)
      else t.equal(got, first.get(`user-${u}`), `user-${u} stays on its target`)
    }
  }
  t.ok(new Set(first.values()).size >= 2, 'the keys spread over the targets')
  t.same(tally(await bodies(port, 6)), { A: 2, B: 2, C: 2 }, 'keyless requests: round robin')
})

t.test('hash:cookie reads one cookie among several', async t => {
  const a = await startOrigin(t, () => ok('A'))
  const b = await startOrigin(t, () => ok('B'))
  const { port } = await startProxy(t, { targets: [a.target, b.target], balance: 'hash:cookie:sid' })
  const answers = new Set<string>()
  for (let i = 0; i < 6; i++) {
    const [got] = await bodies(port, 1, `GET / HTTP/1.1\r\nHost: h\r\nCookie: theme=${i}; sid=abc\r\n\r\n`)
    answers.add(got)
  }
  t.equal(answers.size, 1, 'the other cookie changes nothing')
})

t.test('backup: used only once every primary refuses', async t => {
  const a = await startOrigin(t, () => ok('A'))
  const spare = await startOrigin(t, () => ok('spare'))
  const deadPort = await unusedPort()
  const { port, events } = await startProxy(t, { targets: [a.target, `127.0.0.1:${deadPort}`, `${spare.target},backup`], timeouts: { failedTarget: 60_000 } })
  t.same(tally(await bodies(port, 6)), { A: 6 }, 'a primary is up: the backup idles')
  await a.close()
  t.same(tally(await bodies(port, 4)), { spare: 4 }, 'no primary left: the backup answers')
  t.ok(events.upstreamErrors.length >= 2, 'the refusals were reported')
})

t.test('active HTTP checks: a target failing them leaves after `fall`, comes back after `rise`', async t => {
  let healthy = true
  const a = await startOrigin(t, req => req.url === '/health' ? (healthy ? ok('fine') : UNAVAILABLE) : ok('A'))
  const b = await startOrigin(t, () => ok('B'))
  const { proxy, port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [a.target, b.target], policy: 'round-robin', healthCheck: { path: '/health', interval: '100ms', jitter: 0, rise: 2, fall: 2, timeout: '1s' } } },
  })
  const log = healthLog(proxy)
  await poll(() => a.requests.some(r => r.url === '/health'), 'a first check')
  t.same(tally(await bodies(port, 4)), { A: 2, B: 2 })
  healthy = false
  await log.until(() => log.events.length >= 1, 5000, 'the target to be taken out')
  t.match(log.events[0], { group: 'app', target: a.target, up: false, reason: 'check_failed', detail: 'status 503' })
  t.same(tally(await bodies(port, 4)), { B: 4 }, 'out of rotation')
  healthy = true
  await log.until(() => log.events.length >= 2, 5000, 'the target to come back')
  t.match(log.events[1], { target: a.target, up: true, reason: 'check_passed' })
  t.same(tally(await bodies(port, 4)), { A: 2, B: 2 })
  t.match(proxy.stats().health, { check_failed: 1, check_passed: 1 })
  const checks = a.requests.filter(r => r.url === '/health')
  t.equal(header(checks[0], 'host'), a.target, 'Host: the target')
  t.ok(checks.every(r => r.connection.requests.length === 1), 'each check on a connection of its own, never a pooled one')
})

t.test('active checks: the body must match when asked to', async t => {
  const a = await startOrigin(t, req => req.url === '/status' ? ok('status: degraded') : ok('A'))
  const b = await startOrigin(t, req => req.url === '/status' ? ok('status: ok') : ok('B'))
  const { proxy, port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [a.target, b.target], healthCheck: { path: '/status', expectBody: 'status: ok', interval: '100ms', fall: 1 } } },
  })
  const log = healthLog(proxy)
  await log.until(() => log.events.length >= 1, 5000, 'the check to fail')
  t.match(log.events[0], { target: a.target, up: false, detail: /body without "status: ok"/ })
  t.same(tally(await bodies(port, 3)), { B: 3 })
})

t.test('--health-check tcp: a target that stops listening is taken out before a request finds out', async t => {
  const a = await startOrigin(t, () => ok('A'))
  const b = await startOrigin(t, () => ok('B'))
  const { proxy } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [a.target, b.target], healthCheck: { type: 'tcp', interval: '100ms', fall: 2 } } },
  })
  const log = healthLog(proxy)
  await a.close()
  await log.until(() => log.events.length >= 1, 5000, 'the TCP check to fail')
  t.match(log.events[0], { target: a.target, up: false, reason: 'check_failed', detail: /ECONNREFUSED/ })
  t.same(proxy.stats().upstream.map(u => u.up), [false, true])
})

t.test('outlier detection: consecutive 5xx eject, never more than the allowed share', async t => {
  const bad = await startOrigin(t, () => UNAVAILABLE)
  const worse = await startOrigin(t, () => UNAVAILABLE)
  const good = await startOrigin(t, () => ok('good'))
  const { proxy, port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [bad.target, worse.target, good.target], policy: 'round-robin', outlierDetection: { consecutive5xx: 3, baseEjection: '1m', maxEjectedPercent: 34 } } },
  })
  const log = healthLog(proxy)
  await bodies(port, 9)
  t.equal(log.events.length, 1, 'one target ejected: a second would exceed 34% of three')
  t.match(log.events[0], { up: false, reason: 'ejected', detail: /3 5xx responses in a row; ejected for 60000 ms \(ejection 1\)/ })
  const ejected = log.events[0].target
  const before = (ejected === bad.target ? bad : worse).requests.length
  await bodies(port, 6)
  t.equal((ejected === bad.target ? bad : worse).requests.length, before, 'the ejected target gets nothing')
  t.same(proxy.stats().health, { ejected: 1 })
})

t.test('outlier detection: an ejection ends on time and says so', async t => {
  const flaky = await startOrigin(t, () => UNAVAILABLE)
  const good = await startOrigin(t, () => ok('good'))
  const { proxy, port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [flaky.target, good.target], policy: 'round-robin', outlierDetection: { consecutive5xx: 2, baseEjection: '200ms' } } },
  })
  const log = healthLog(proxy)
  await bodies(port, 4)
  await log.until(() => log.events.some(e => e.reason === 'ejection_ended'), 5000, 'the ejection to end')
  t.same(log.events.map(e => `${e.up ? 'up' : 'down'} ${e.reason}`), ['down ejected', 'up ejection_ended'])
})

t.test('retries: a 503 from one target is retried on another for a GET, never for a POST', async t => {
  const busy = await startOrigin(t, () => UNAVAILABLE)
  const good = await startOrigin(t, () => ok('good'))
  const { proxy, port } = await startProxy(t, { targets: [busy.target, good.target], balance: 'round-robin', retries: 1 })
  const posts = await bodies(port, 4, 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n')
  t.same(tally(posts), { busy: 2, good: 2 }, 'a POST takes the answer it gets')
  t.same(tally(await bodies(port, 6)), { good: 6 }, 'every GET answered by the good target')
  // its third 503 in a row (two to POSTs, one to a GET) skips it (retries.markDownAfter)
  t.equal(busy.requests.length, 3, 'the busy one was tried in its turn')
  t.match(proxy.stats().groups, [{ group: 'default', retries: 1 }])
})

t.test('retries: a reset before any response byte goes to another target', async t => {
  const resets = await startOrigin(t, () => ({ close: 'reset' }))
  const good = await startOrigin(t, () => ok('good'))
  const { port } = await startProxy(t, { targets: [resets.target, good.target], balance: 'round-robin', retries: 1 })
  t.same(tally(await bodies(port, 4)), { good: 4 })
  t.equal(resets.requests.length, 2)
})

t.test('retries: without --retries, a reset is the client\'s 502', async t => {
  const resets = await startOrigin(t, () => ({ close: 'reset' }))
  const good = await startOrigin(t, () => ok('good'))
  const { port } = await startProxy(t, { targets: [resets.target, good.target], balance: 'round-robin' })
  const first = await exchange(port, GET, { responses: 1 })
  t.equal(first.responses[0].head.line[1], '502')
  t.equal(good.requests.length, 0, 'not retried')
})

t.test('retries: never once a response byte reached the client', async t => {
  // a head and half a body, then the connection dies
  const cut = await startOrigin(t, () => ({ bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf', close: 'reset' }))
  const good = await startOrigin(t, () => ok('good'))
  const { port } = await startProxy(t, { targets: [cut.target, good.target], balance: 'round-robin', retries: 2 })
  const res = await exchange(port, GET)
  t.equal(res.responses.length, 0, 'no complete response: the cut shows')
  t.match(res.text, /^HTTP\/1\.1 200 OK\r\n[^]*half$/, 'what went out is all that went out')
  t.equal(good.requests.length, 0, 'not sent again')
})

t.test('per-try timeout: a hanging target is given up for another', async t => {
  const hangs = await startOrigin(t, () => ({ never: true }))
  const good = await startOrigin(t, () => ok('good'))
  const { port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [hangs.target, good.target], retries: { count: 1, perTryTimeout: '200ms' } } },
  })
  const started = Date.now()
  t.same(tally(await bodies(port, 2)), { good: 2 })
  t.ok(Date.now() - started < 5000, 'well before the route\'s 60s response timeout')
})

t.test('retry budget: with no room, the 503 passes as it is and the refusal is counted', async t => {
  const busy = await startOrigin(t, () => UNAVAILABLE)
  const good = await startOrigin(t, () => ok('good'))
  const { proxy, port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [busy.target, good.target], policy: 'round-robin', retries: { count: 3, budgetPercent: 1, budgetMinConcurrency: 0 } } },
  })
  t.same(tally(await bodies(port, 4)), { busy: 2, good: 2 })
  t.match(proxy.stats().groups, [{ group: 'app', retries: 0, budgetExhausted: 2 }])
})

t.test('circuit breaking: over maxRequests, 503 at once', async t => {
  const hangs = await startOrigin(t, () => ({ never: true }))
  const { proxy, port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [hangs.target], maxRequests: 2 } },
  })
  const clients = [exchange(port, GET, { responses: 1, ms: 300 }).catch(() => null), exchange(port, GET, { responses: 1, ms: 300 }).catch(() => null)]
  await hangs.until(() => hangs.requests.length === 2, 5000, 'two requests at the origin')
  const third = await exchange(port, GET, { responses: 1 })
  t.equal(third.responses[0].head.line[1], '503')
  t.match(proxy.stats().groups, [{ circuitOpen: 1 }])
  t.equal(hangs.requests.length, 2, 'the refused request never reached the origin')
  await Promise.all(clients)
  await hangs.close()
})

t.test('a raw TCP listener hashed by client IP: every connection from one address to one target', async t => {
  const servers: net.Server[] = []
  const targets: string[] = []
  for (const name of ['A', 'B', 'C']) {
    const server = net.createServer(socket => socket.end(name))
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', () => resolve()))
    servers.push(server)
    targets.push(`127.0.0.1:${(server.address() as net.AddressInfo).port}`)
  }
  t.teardown(() => { for (const s of servers) s.close() })
  const { port, proxy } = await startProxy(t, { targets, tcp: true, balance: 'hash:ip' })
  const seen: string[] = []
  for (let i = 0; i < 6; i++) {
    // one relay at a time: with one still counted, bounded loads may rightly pass the key's owner over
    await poll(() => proxy.stats().upstream.every(u => u.active === 0), 'the last relay to be released')
    const socket = net.connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', c => chunks.push(c))
    await new Promise(resolve => socket.on('close', resolve))
    seen.push(Buffer.concat(chunks).toString())
  }
  t.equal(new Set(seen).size, 1, `one target for one client address: ${seen.join('')}`)
})

t.test('least-conn over a raw TCP listener counts open relays', async t => {
  const held: net.Socket[] = []
  const a = net.createServer(socket => { held.push(socket); socket.write('A') })
  const b = net.createServer(socket => { held.push(socket); socket.write('B') })
  for (const s of [a, b]) await new Promise<void>(resolve => s.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => { for (const s of held) s.destroy(); a.close(); b.close() })
  const targets = [a, b].map(s => `127.0.0.1:${(s.address() as net.AddressInfo).port}`)
  const { port, proxy } = await startProxy(t, { targets, tcp: true, balance: 'least-conn' })
  const clients: net.Socket[] = []
  const greetings: string[] = []
  for (let i = 0; i < 4; i++) {
    const socket = net.connect(port, '127.0.0.1')
    clients.push(socket)
    greetings.push(await new Promise<string>(resolve => socket.once('data', d => resolve(d.toString()))))
  }
  t.teardown(() => { for (const c of clients) c.destroy() })
  t.same(tally(greetings), { A: 2, B: 2 }, 'two open relays each')
  t.same(proxy.stats().upstream.map(u => u.active), [2, 2])
})


t.test('sticky cookie: set once, followed while its target is up, replaced when it is not', async t => {
  const a = await startOrigin(t, () => ok('A', ['Set-Cookie: app=1']))
  const b = await startOrigin(t, () => ok('B'))
  const c = await startOrigin(t, () => ok('C'))
  const { port } = await startProxy(t, { targets: [a.target, b.target, c.target], balance: 'round-robin', stickyCookie: 'lb' })
  const first = (await exchange(port, GET, { responses: 1 })).responses[0]
  t.equal(first.body.toString(), 'A')
  const cookies = first.head.headers.filter(([name]) => name.toLowerCase() === 'set-cookie').map(([, value]) => value)
  t.equal(cookies.length, 2, 'the backend\'s own cookie passes beside rp4\'s')
  t.equal(cookies[0], 'app=1')
  const set = /^lb=([a-z0-9]+); Path=\/; HttpOnly; SameSite=Lax$/.exec(cookies[1])
  t.ok(set !== null, `rp4's cookie: ${cookies[1]}`)
  t.notMatch(cookies[1], String(a.port), 'the cookie does not tell the backend\'s address')
  const withCookie = `GET / HTTP/1.1\r\nHost: h\r\nCookie: other=x; lb=${set![1]}\r\n\r\n`
  for (let i = 0; i < 5; i++) {
    const res = (await exchange(port, withCookie, { responses: 1 })).responses[0]
    t.equal(res.body.toString(), 'A', `request ${i} follows the cookie`)
    t.notOk(res.head.headers.some(([name, value]) => name.toLowerCase() === 'set-cookie' && value.startsWith('lb=')), 'not set again')
  }
  await a.close()
  const moved = (await exchange(port, withCookie, { responses: 1 })).responses[0]
  t.not(moved.body.toString(), 'A')
  t.match(header(moved, 'set-cookie'), /^lb=[a-z0-9]+; /, 'a new cookie for the new target')
  t.not(header(moved, 'set-cookie'), cookies[1])
  const forged = (await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\nCookie: lb=nonsense\r\n\r\n', { responses: 1 })).responses[0]
  t.equal(forged.head.line[1], '200', 'an unknown value: the policy picks')
})

t.test('retries.nonIdempotent: a bodiless POST is retried only when the user says so', async t => {
  const busy = await startOrigin(t, () => UNAVAILABLE)
  const good = await startOrigin(t, () => ok('good'))
  const { port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [busy.target, good.target], policy: 'round-robin', retries: { count: 1, nonIdempotent: true } } },
  })
  t.same(tally(await bodies(port, 4, 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n')), { good: 4 })
  const withBody = await bodies(port, 2, 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello')
  t.same(tally(withBody), { busy: 1, good: 1 }, 'a body that left is not sent again')
})

t.test('a TCP check with tls: a backend that accepts connections but no TLS handshake is out', async t => {
  const { makeCertificates } = await import('../helpers/tls-certs.js')
  const certs = await makeCertificates(t)
  const pair = await certs.issue('backend', ['127.0.0.1'])
  const handshakes: string[] = []
  const good = tls.createServer({ cert: readFileSync(pair.cert), key: readFileSync(pair.key) }, socket => { socket.on('error', () => {}); socket.destroy() })
  // the check hangs up as soon as its own side of the handshake is done: the server may see a reset
  good.on('tlsClientError', err => handshakes.push((err as NodeJS.ErrnoException).code ?? 'error'))
  const held: net.Socket[] = []
  // accepts, reads, never answers a ClientHello
  const plain = net.createServer(socket => { held.push(socket); socket.on('error', () => {}); socket.resume() })
  for (const server of [good, plain]) await new Promise<void>(resolve => server.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => { for (const s of held) s.destroy(); good.close(); plain.close() })
  const address = (server: net.Server): string => `127.0.0.1:${(server.address() as net.AddressInfo).port}`
  const { proxy } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0', protocol: 'tcp', upstream: 'tls' }],
    upstreams: { tls: { targets: [address(good), address(plain)], healthCheck: { type: 'tcp', tls: true, interval: '100ms', timeout: '300ms', fall: 1 } } },
  })
  const log = healthLog(proxy)
  await log.until(() => log.events.length >= 1, 5000, 'the handshake check to fail')
  t.match(log.events[0], { target: address(plain), up: false, reason: 'check_failed', detail: 'timed out' })
  t.same(proxy.stats().upstream.map(u => u.up), [true, false], 'the TLS backend passes its handshake checks')
  await proxy.close()
})

t.test('retries: at most `count` more tries, each on a target not tried yet', async t => {
  const busy = await Promise.all([0, 1, 2, 3].map(async () => await startOrigin(t, () => UNAVAILABLE)))
  for (const count of [1, 2, 3]) {
    const before = busy.map(o => o.requests.length)
    const { port } = await startProxy(t, { targets: busy.map(o => o.target), retries: count })
    const res = await exchange(port, GET, { responses: 1 })
    t.equal(res.responses[0].head.line[1], '503', `retries ${count}: the last answer passes as it is`)
    const delta = busy.map((o, i) => o.requests.length - before[i])
    t.equal(delta.reduce((a, n) => a + n, 0), count + 1, `retries ${count}: ${count + 1} tries in all`)
    t.ok(delta.every(n => n <= 1), `no target tried twice for one request: ${delta}`)
  }
})
