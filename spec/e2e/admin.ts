/**
 * The admin endpoint, served by rp4's engine on a listener of its own: health and readiness,
 * Prometheus metrics, the configuration with secrets redacted, the targets' state, drain; the
 * bearer token; loopback by default.
 */
import net from 'node:net'
import t, { type Test } from 'tap'
import { createProxy, type ProxyOptions } from '../../lib/index.js'
import { exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { unusedPort } from '../helpers/proxy.js'
import { within } from '../helpers/wait.js'
import { undated } from '../helpers/dates.js'

const TOKEN = 'a-long-enough-admin-token'

async function start (t: Test, options: ProxyOptions): Promise<{ proxy: ReturnType<typeof createProxy>, port: number, admin: number }> {
  const proxy = createProxy(options)
  const { port } = await proxy.listen()
  t.teardown(() => proxy.close())
  const admin = proxy.adminAddress()
  if (admin === null) throw new Error('no admin address')
  return { proxy, port, admin: admin.port }
}

/** One request to the admin port: status, headers (lowercased names), body. */
async function call (port: number, method: string, path: string, headers: string[] = []): Promise<{ status: number, headers: Record<string, string>, body: string }> {
  const res = await exchange(port, `${method} ${path} HTTP/1.1\r\nHost: admin\r\n${headers.map(h => h + '\r\n').join('')}Connection: close\r\n\r\n`, { responses: 1 })
  const message = res.responses[0]
  if (message === undefined) throw new Error(`no response to ${method} ${path}`)
  const fields: Record<string, string> = {}
  for (const line of undated(message.raw.toString('latin1')).split('\r\n\r\n')[0].split('\r\n').slice(1)) {
    const colon = line.indexOf(':')
    fields[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { status: Number(message.head.line[1]), headers: fields, body: message.body.toString() }
}

t.test('healthz, readyz, metrics after traffic, config redacted, upstreams; loopback by default', async t => {
  const origin = await startOrigin(t, () => ok('hello'))
  const down = await unusedPort()
  const { port, admin, proxy } = await start(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ name: 'app', proxy: 'web' }],
    upstreams: { web: { targets: [origin.target, { address: `127.0.0.1:${down}`, weight: 3 }] } },
    admin: { listen: 0, token: TOKEN },
  })
  t.equal(proxy.adminAddress()?.address, '127.0.0.1', 'a port alone listens on 127.0.0.1, not every interface')
  const auth = [`Authorization: Bearer ${TOKEN}`]

  for (let i = 0; i < 4; i++) {
    const res = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n', { responses: 1 })
    t.equal(res.responses[0]?.body.toString(), 'hello', 'served (the down target fails over)')
  }
  await exchange(port, 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc', { responses: 1 })

  t.same(await call(admin, 'GET', '/healthz'), { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8', 'content-length': '3', connection: 'close' }, body: 'ok\n' }, 'healthz, exact')
  t.equal((await call(admin, 'GET', '/readyz')).body, 'ready\n')

  const metrics = await call(admin, 'GET', '/metrics', auth)
  t.equal(metrics.status, 200)
  t.match(metrics.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.match(metrics.body, /\nrp4_requests_total\{route="app",method="GET",status="2xx"\} 4\n/)
  t.match(metrics.body, /\nrp4_requests_total\{route="app",method="POST",status="2xx"\} 1\n/)
  t.match(metrics.body, /\nrp4_request_duration_seconds_bucket\{le="60",route="app"\} 5\n/)
  t.match(metrics.body, new RegExp(`\\nrp4_upstream_first_byte_seconds_count\\{target="${origin.target}"\\} 5\\n`))
  t.match(metrics.body, /\nrp4_request_body_bytes_total\{route="app"\} 3\n/)
  t.match(metrics.body, /\nrp4_response_body_bytes_total\{route="app"\} 25\n/)
  t.match(metrics.body, new RegExp(`\\nrp4_upstream_up\\{group="web",target="127\\.0\\.0\\.1:${down}"\\} 0\\n`), 'the target that refused is down')
  t.match(metrics.body, new RegExp(`\\nrp4_upstream_weight\\{group="web",target="127\\.0\\.0\\.1:${down}"\\} 3\\n`))
  t.match(metrics.body, /\nrp4_errors_total\{code="connect_failed"\} [1-9]/)
  t.match(metrics.body, /\nrp4_ready 1\n/)
  t.match(metrics.body, /\nrp4_client_connections\{kind="all"\} \d+\n/)
  for (const name of ['rp4_nodejs_eventloop_lag_seconds', 'rp4_process_resident_memory_bytes', 'rp4_process_open_fds', 'rp4_nodejs_heap_size_used_bytes']) {
    t.match(metrics.body, `\n${name} `, name)
  }

  const config = await call(admin, 'GET', '/config', auth)
  t.equal(config.headers['content-type'], 'application/json')
  const parsed = JSON.parse(config.body) as { admin: { token: string }, upstreams: Record<string, { targets: Array<{ weight: number }> }> }
  t.equal(parsed.admin.token, '[redacted]')
  t.notMatch(config.body, TOKEN, 'the token appears nowhere')
  t.same(parsed.upstreams.web.targets.map(target => target.weight), [1, 3])

  const upstreams = JSON.parse((await call(admin, 'GET', '/upstreams', auth)).body) as Record<string, Array<Record<string, unknown>>>
  t.match(upstreams, { web: [{ target: origin.target, weight: 1, up: true }, { target: `127.0.0.1:${down}`, weight: 3, up: false, open: 0, waiting: 0 }] })

  t.equal((await call(admin, 'GET', '/nope', auth)).status, 404)
  t.same([(await call(admin, 'POST', '/metrics', auth)).status, (await call(admin, 'GET', '/drain', auth)).status], [405, 405], 'wrong method: 405')
  t.equal((await call(admin, 'POST', '/reload', auth)).status, 409, 'reload without a file to read: 409')
})

t.test('the bearer token: missing, wrong, lowercase scheme, right; health and readiness need none', async t => {
  const origin = await startOrigin(t, () => ok())
  const { admin } = await start(t, { listen: '127.0.0.1:0', targets: [origin.target], admin: { listen: '127.0.0.1:0', token: TOKEN } })
  const none = await call(admin, 'GET', '/metrics')
  t.equal(none.status, 401)
  t.equal(none.headers['www-authenticate'], 'Bearer realm="rp4 admin"')
  t.equal((await call(admin, 'GET', '/config', ['Authorization: Bearer wrong-token-of-some-length'])).status, 401)
  t.equal((await call(admin, 'GET', '/config', [`Authorization: Bearer ${TOKEN}x`])).status, 401, 'a longer token')
  t.equal((await call(admin, 'GET', '/config', [`Authorization: Basic ${TOKEN}`])).status, 401, 'another scheme')
  t.equal((await call(admin, 'POST', '/drain', ['Authorization: Bearer'])).status, 401, 'no token after the scheme: no drain')
  t.equal((await call(admin, 'GET', '/config', [`Authorization: bearer ${TOKEN}`])).status, 200, 'the scheme is case-insensitive')
  t.equal((await call(admin, 'GET', '/healthz')).status, 200)
  t.equal((await call(admin, 'GET', '/readyz')).status, 200)
})

t.test('POST /drain: readiness 503 at once, new connections refused, the proxy closes', async t => {
  const origin = await startOrigin(t, () => ok())
  const proxy = createProxy({ listen: '127.0.0.1:0', targets: [origin.target], admin: { listen: '127.0.0.1:0' } })
  const { port } = await proxy.listen()
  const admin = proxy.adminAddress()!.port
  let closed = false
  proxy.on('close', () => { closed = true })
  const drained = await call(admin, 'POST', '/drain')
  t.same([drained.status, drained.body], [202, 'draining: up to 10s for requests in flight\n'])
  const refused = await new Promise<boolean>(resolve => {
    const s = net.connect(port, '127.0.0.1')
    s.on('connect', () => { s.destroy(); resolve(false) })
    s.on('error', () => resolve(true))
  })
  t.ok(refused, 'the proxy port refuses')
  await within(proxy.drain(), 5000, 'the drain to end')
  t.ok(closed, 'closed once nothing was in flight')
})

t.test('admin options: errors name the key', async t => {
  t.throws(() => createProxy({ listen: '127.0.0.1:0', targets: ['127.0.0.1:1'], admin: { listen: '127.0.0.1:0', token: 'short' } }), /admin\.token.*at least 16 characters/)
  t.throws(() => createProxy({ listen: '127.0.0.1:0', targets: ['127.0.0.1:1'], admin: { listen: 'nowhere' } }), /admin\.listen/)
  t.throws(() => createProxy({ listen: '127.0.0.1:0', targets: ['127.0.0.1:1'], admin: {} as { listen: string } }), /admin.*listen/)
})
