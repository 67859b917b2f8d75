/**
 * examples/rp4.yaml, the example the README points to: it loads, and says what it means.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { loadConfig } from '../../lib/config/load.js'
import { ROOT } from '../helpers/proxy.js'

t.test('examples/rp4.yaml → Model', async t => {
  // the example names its files relative to itself: a copy beside stand-ins for them
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rp4-example-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'rp4.yaml')
  copyFileSync(path.join(ROOT, 'examples/rp4.yaml'), file)
  mkdirSync(path.join(dir, 'certs'))
  mkdirSync(path.join(dir, 'ca'))
  for (const name of ['certs/example.com.pem', 'certs/example.com.key', 'certs/shop.example.net.pem', 'certs/shop.example.net.key']) {
    writeFileSync(path.join(dir, name), 'PEM')
  }
  writeFileSync(path.join(dir, 'ca/internal-ca.pem'), 'INTERNAL CA')

  const { model } = loadConfig(file)
  t.same(model.listeners.map(l => [l.name, l.listen.host, l.listen.port, l.protocol]), [
    ['public', '', 443, 'auto'],
    ['redirect', '', 80, 'auto'],
    ['postgres', '10.0.0.1', 5432, 'tcp'],
    ['health', '127.0.0.1', 9090, 'auto'],
  ])
  const [pub, redirect, postgres, health] = model.listeners
  t.same(pub.tls?.certificates, [
    { cert: path.join(dir, 'certs/example.com.pem'), key: path.join(dir, 'certs/example.com.key') },
    { cert: path.join(dir, 'certs/shop.example.net.pem'), key: path.join(dir, 'certs/shop.example.net.key') },
  ], 'file names relative to the file')
  t.same(pub.tls?.passthrough, [{ name: 'db.example.com', upstream: 'db' }])
  t.equal(pub.tls?.cleartext, 'redirect')
  t.same(pub.routes, ['old-blog', 'api', 'shop', 'www'])
  t.equal(pub.timeouts.tlsHandshake, 5000)
  t.equal(pub.tcpFallback, null)
  t.equal(redirect.redirectToHttps, true)
  t.equal(postgres.upstream, 'db')
  t.same(postgres.access?.rules.map(r => r.action), ['allow', 'deny'])
  t.equal(postgres.timeouts.tcpIdle, 7_200_000)
  t.same(health.routes, ['health'])

  const routes = new Map(model.routes.map(r => [r.name, r]))
  t.same([...routes.keys()], ['health', 'old-blog', 'api', 'shop', 'www'])
  t.same(routes.get('health')?.match, { hosts: null, path: { exact: '/healthz' }, methods: ['GET', 'HEAD'], headers: null })
  t.same(routes.get('health')?.action, { kind: 'respond', status: 200, headers: [['Content-Type', 'text/plain; charset=utf-8']], body: 'ok\n' })
  t.same(routes.get('old-blog')?.action, { kind: 'redirect', location: 'https://blog.example.com$path$query', status: 301 })
  t.same(routes.get('old-blog')?.match.hosts, ['example.com', 'www.example.com'])
  const api = routes.get('api')!
  t.same(api.match, { hosts: ['api.example.com'], path: { prefix: '/v1' }, methods: null, headers: null })
  t.same(api.action, { kind: 'proxy', upstream: 'api' })
  t.same(api.filters, [
    { kind: 'stripPrefix', prefix: '/v1' },
    { kind: 'requestHeaders', set: [['X-Api-Version', '1']], add: [], remove: ['cookie'] },
    { kind: 'responseHeaders', set: [['Cache-Control', 'no-store']], add: [], remove: [] },
  ])
  t.same([api.timeouts.response, api.maxBodySize, api.rateLimit], [30_000, 10 * 1024 * 1024, { rate: 50, burst: 100 }])
  t.same(routes.get('shop')?.match, { hosts: ['*.example.net'], path: null, methods: null, headers: [{ name: 'x-canary', value: '1' }] })
  t.same(routes.get('www')?.filters, [{ kind: 'responseHeaders', set: [['Strict-Transport-Security', 'max-age=31536000']], add: [['X-Served-By', 'rp4']], remove: [] }])

  t.same([...model.upstreams.keys()], ['api', 'web', 'web-canary', 'db'])
  const apiGroup = model.upstreams.get('api')!
  t.same(apiGroup.targets.map(x => [x.authority, x.weight, x.tls?.servername, x.tls?.rejectUnauthorized]), [
    ['api-1.internal:8443', 1, 'api-1.internal', true],
    ['api-2.internal:8443', 2, 'api-2.internal', true],
  ])
  t.same(apiGroup.targets[0].tls?.ca, [Buffer.from('INTERNAL CA')])
  t.same([apiGroup.pool.maxConnections, apiGroup.timeouts.connect], [128, 2000])
  t.equal(model.upstreams.get('web')!.pool.pipelining, 4)
  t.same(model.upstreams.get('db')!.timeouts, { connect: 1000, failedTarget: 30_000 })
  t.equal(model.http.via, '1.1 edge')
  t.equal(model.http.timeouts.clientIdle, 120_000)
  t.same(model.http.hideHeaders, new Set(['server', 'x-powered-by']))
  t.equal(model.limits.maxConnectionsPerIp, 512)
})
