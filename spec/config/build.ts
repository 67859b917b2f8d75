/**
 * Options → Model: the flat shorthand expanded, defaults filled from the schema, units converted,
 * names resolved, upstream TLS files read; and every problem thrown at once, named by option.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { buildModel } from '../../lib/config/build.js'
import { ConfigError } from '../../lib/config/problems.js'
import { MAX_CONNECTIONS, readOpenFileLimit } from '../../lib/config/open-files.js'
import type { Options } from '../../lib/config/schema.js'

const dir = mkdtempSync(path.join(os.tmpdir(), 'rp4-build-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
function file (name: string, text: string): string {
  const full = path.join(dir, name)
  writeFileSync(full, text)
  return full
}

t.test('the flat shorthand: one listener, one catch-all route, one group, all named default', async t => {
  const model = buildModel({ listen: ':8080', targets: ['127.0.0.1:3000', '[::1]:3001'] })
  t.equal(model.listeners.length, 1)
  const listener = model.listeners[0]
  t.same(listener, {
    name: 'default',
    listen: { host: '', port: 8080 },
    protocol: 'auto',
    upstream: null,
    // no TCP fallback unless asked for; no certificate or passthrough name: TLS is bytes of no known protocol
    tcpFallback: null,
    tls: null,
    redirectToHttps: false,
    routes: null,
    access: null,
    acceptProxy: null,
    timeouts: { detect: 300, tlsHandshake: 10_000, tcpIdle: 3_600_000 },
  })
  t.same(model.routes, [{
    name: 'default',
    match: { hosts: null, path: null, methods: null, headers: null },
    action: { kind: 'proxy', upstream: 'default' },
    filters: [],
    maxBodySize: 1_073_741_824,
    timeouts: { response: 60_000, responseTotal: 0 },
    interceptErrors: false,
    rateLimit: null,
    hsts: null,
    requireClientCertificate: false,
    compress: null,
    cache: null,
  }])
  const group = model.upstreams.get('default')!
  t.same([...model.upstreams.keys()], ['default'])
  t.same(group.targets.map(target => [target.host, target.port, target.authority, target.weight, target.tls]), [
    ['127.0.0.1', 3000, '127.0.0.1:3000', 1, null],
    ['::1', 3001, '[::1]:3001', 1, null],
  ])
  t.same(group.pool, { maxConnections: 256, maxQueue: 4096, pipelining: 1, idleTimeout: 30_000 })
  t.same(group.timeouts, { connect: 5000, failedTarget: 10_000 })
  t.equal(group.sendProxy, null)
  t.same([model.accessLog, model.drainTimeout, model.admin], [null, 10_000, null], 'no access log, a 10 s drain, no admin endpoint')
  t.same(model.http, {
    maxHeaderSize: 65_536,
    maxRequestLine: 8192,
    maxHeaders: 100,
    maxPipelinedRequests: 32,
    minDataRate: 500,
    timeouts: { clientIdle: 60_000, clientPark: 5000, requestHead: 10_000, requestBody: 30_000 },
    via: '1.1 rp4',
    hideHeaders: new Set(['server', 'x-powered-by', 'x-aspnet-version', 'x-aspnetmvc-version']),
    underscoresInHeaders: false,
  })
  t.equal(model.limits.maxConnectionsPerIp, 0)
  t.equal(model.limits.maxConnections, MAX_CONNECTIONS)
  t.ok(Object.isFrozen(model) && Object.isFrozen(model.listeners) && Object.isFrozen(listener.timeouts) &&
    Object.isFrozen(model.routes[0].match) && Object.isFrozen(group.targets[0]) && Object.isFrozen(model.http))
})

t.test('the flat shorthand: every key lands where the full form has it, units converted', async t => {
  const ca = file('ca.pem', 'CA PEM')
  const model = buildModel({
    listen: '127.0.0.1:0',
    targets: ['https://api.internal:8443', 'https://10.0.0.6'],
    tcpFallback: ['127.0.0.1:22'],
    tls: { certificates: [{ cert: ca, key: ca }], passthrough: { 'DB.example.com.': '10.0.0.9:443', '*.internal.example.com': '10.0.0.10:443' }, reloadInterval: '10s' },
    upstreamTls: { ca: [ca], verify: false },
    timeouts: { connect: '2s', response: 30_000, responseTotal: '5m', clientIdle: '1m', clientPark: '500ms', requestHead: '5s', requestBody: '20s', upstreamIdle: '15s', failedTarget: '1s', tcpIdle: '10m', detect: '1s', tlsHandshake: '3s' },
    upstream: { maxConnections: 16, maxQueue: 0, pipelining: 8 },
    maxPipelinedRequests: 4,
    maxHeaderSize: '16k',
    maxRequestLine: '2k',
    maxHeaders: 50,
    maxBodySize: '10m',
    minDataRate: '1k',
    hideHeaders: ['Server'],
    interceptErrors: true,
    allowUnderscoresInHeaders: true,
    rateLimit: { rate: 2.5 },
    via: 'edge',
    access: { allow: ['10.0.0.0/8'], deny: ['10.0.9.0/24'] },
    limits: { maxConnectionsPerIp: 32 },
  })
  const [listener] = model.listeners
  t.same(listener.listen, { host: '127.0.0.1', port: 0 })
  t.equal(listener.tcpFallback, 'tcp-fallback')
  t.same(listener.tls, {
    certificates: [{ cert: ca, key: ca }],
    passthrough: [{ name: 'db.example.com', upstream: 'passthrough-1' }, { name: '*.internal.example.com', upstream: 'passthrough-2' }],
    reloadInterval: 10_000,
    cleartext: 'serve',
    profile: 'intermediate',
    ciphers: null,
    hsts: null,
    clientCertificates: null,
    ticketKeyRotation: 43_200_000,
    sessionCache: 10 * 1024 * 1024,
    sessionTimeout: 86_400_000,
    ocspStapling: true,
    acme: null,
  })
  t.same(listener.timeouts, { detect: 1000, tlsHandshake: 3000, tcpIdle: 600_000 })
  t.same(listener.access?.rules.map(rule => rule.action), ['allow', 'deny'])
  t.equal(listener.access?.file, null)
  t.same([...model.upstreams.keys()], ['default', 'tcp-fallback', 'passthrough-1', 'passthrough-2'])
  t.same(model.upstreams.get('passthrough-1')!.targets.map(x => x.authority), ['10.0.0.9:443'])
  t.same(model.upstreams.get('tcp-fallback')!.timeouts, { connect: 2000, failedTarget: 1000 })
  const group = model.upstreams.get('default')!
  t.same(group.pool, { maxConnections: 16, maxQueue: 0, pipelining: 8, idleTimeout: 15_000 })
  const [named, ip] = group.targets
  t.equal(named.tls?.servername, 'api.internal', 'SNI: the target host name')
  t.equal(ip.tls?.servername, undefined, 'no SNI for an IP address (RFC 6066)')
  t.equal(ip.port, 443)
  t.same(named.tls?.ca, [Buffer.from('CA PEM')], 'CA files read')
  t.equal(named.tls?.rejectUnauthorized, false)
  t.same(named.tls?.ALPNProtocols, ['http/1.1'])
  const [route] = model.routes
  t.same(route.timeouts, { response: 30_000, responseTotal: 300_000 })
  t.equal(route.maxBodySize, 10 * 1024 * 1024)
  t.equal(route.interceptErrors, true)
  t.same(route.rateLimit, { rate: 2.5, burst: 3 })
  t.equal(model.http.maxHeaderSize, 16_384)
  t.equal(model.http.minDataRate, 1024)
  t.equal(model.http.via, '1.1 edge')
  t.equal(model.http.underscoresInHeaders, true)
  t.same(model.http.hideHeaders, new Set(['server']))
  t.same(model.http.timeouts, { clientIdle: 60_000, clientPark: 500, requestHead: 5000, requestBody: 20_000 })
  t.equal(model.limits.maxConnectionsPerIp, 32)
})

t.test('tcp: one raw listener, no route; tcpFallback false: none, as without it', async t => {
  const raw = buildModel({ listen: '5432', targets: ['10.0.0.7:5432'], tcp: true })
  t.equal(raw.listeners[0].protocol, 'tcp')
  t.equal(raw.listeners[0].upstream, 'default')
  t.equal(raw.listeners[0].tls, null)
  t.equal(raw.listeners[0].tcpFallback, null)
  t.same(raw.routes, [])
  t.equal(buildModel({ listen: ':0', targets: ['a:1'], tcpFallback: false }).listeners[0].tcpFallback, null)
  const passthrough = buildModel({ listen: ':0', targets: ['a:1'], tls: { passthrough: { 'db.example.com': 'b:1' }, reloadInterval: '5s' } }).listeners[0].tls
  t.same(passthrough, { certificates: [], passthrough: [{ name: 'db.example.com', upstream: 'passthrough-1' }], reloadInterval: 5000, cleartext: 'serve', profile: 'intermediate', ciphers: null, hsts: null, clientCertificates: null, ticketKeyRotation: 43_200_000, sessionCache: 10 * 1024 * 1024, sessionTimeout: 86_400_000, ocspStapling: true, acme: null })
  t.equal(buildModel({ listen: ':0', targets: ['a:1'], tls: { reloadInterval: '5s' } }).listeners[0].tls, null, 'nothing to terminate or relay')
})

t.test('the full form: defaults, names, matches, actions, filters in their order', async t => {
  const ca = file('api-ca.pem', 'API CA')
  const cert = file('client.pem', 'CLIENT CERT')
  const key = file('client.key', 'CLIENT KEY')
  const options: Options = {
    listeners: [
      { listen: ':443', tls: { certificates: [{ cert, key }], passthrough: { 'Db.Example.com': 'api' } }, routes: ['api', 'route-2'] },
      { name: 'plain', listen: 80, redirectToHttps: true },
      { name: 'sni', listen: 8443, tls: { passthrough: { '*': 'api', 'a.example.com': 'api' } } },
    ],
    routes: [
      {
        name: 'api',
        match: { host: ['API.example.com.', '*.api.example.com', 'api.example.com'], path: '/api', methods: ['get', 'POST'], headers: { 'x-canary': 1, 'x-any': null } },
        proxy: 'api',
        stripPrefix: '/api',
        rewritePath: { pattern: '^/old/(.*)$', replacement: '/new/$1' },
        requestHeaders: { set: { 'X-Env': 'prod' }, add: { 'X-Trace': 'on' }, remove: ['Cookie'] },
        responseHeaders: { remove: ['X-Debug'] },
        filters: ['auth'],
        timeouts: { response: '2m' },
        maxBodySize: 0,
        interceptErrors: true,
        rateLimit: { rate: 100, burst: 200 },
      },
      { match: { pathExact: '/health' }, respond: { body: 'ok\n' } },
      { redirect: { to: 'https://$host$path$query' } },
    ],
    upstreams: {
      api: {
        targets: ['https://10.0.0.5:8443', { address: 'https://api-2.internal:8443', weight: 3 }],
        tls: { servername: 'API.internal', ca: [ca], cert, key },
        maxConnections: 64,
        timeouts: { connect: '1s', idle: '1m', failedTarget: '30s' },
      },
    },
    http: { hideHeaders: [], via: 'gw' },
    limits: { maxConnections: 100 },
  }
  const model = buildModel(options, { filters: ['auth'] })
  const [tls, plain] = model.listeners
  t.equal(tls.name, ':443', 'a listener is named by its address unless named')
  t.same(tls.routes, ['api', 'route-2'])
  t.same(tls.tls?.passthrough, [{ name: 'db.example.com', upstream: 'api' }])
  t.same(model.listeners[2].tls?.passthrough, [{ name: 'a.example.com', upstream: 'api' }, { name: '*', upstream: 'api' }], '* comes last')
  t.equal(tls.tls?.cleartext, 'redirect', 'cleartext HTTP on a TLS port is redirected by default')
  t.equal(tls.tcpFallback, null, 'no fallback unless asked for')
  t.same(plain.listen, { host: '', port: 80 })
  t.equal(plain.redirectToHttps, true)
  t.equal(plain.tls, null)

  const [api, health, redirect] = model.routes
  t.same(api.match, {
    hosts: ['api.example.com', '*.api.example.com'],
    path: { prefix: '/api' },
    methods: ['GET', 'POST'],
    headers: [{ name: 'x-canary', value: '1' }, { name: 'x-any' }],
  })
  t.same(api.action, { kind: 'proxy', upstream: 'api' })
  t.same(api.filters.map(f => f.kind), ['stripPrefix', 'rewritePath', 'requestHeaders', 'responseHeaders', 'user'])
  const rewrite = api.filters[1]
  t.ok(rewrite.kind === 'rewritePath' && '/old/a/b'.replace(rewrite.pattern, rewrite.replacement) === '/new/a/b')
  t.same(api.filters[2], { kind: 'requestHeaders', set: [['X-Env', 'prod']], add: [['X-Trace', 'on']], remove: ['cookie'] })
  t.same(api.filters[4], { kind: 'user', name: 'auth' })
  t.same(api.timeouts, { response: 120_000, responseTotal: 0 })
  t.equal(api.maxBodySize, 0)
  t.same(api.rateLimit, { rate: 100, burst: 200 })
  t.equal(health.name, 'route-2')
  t.same(health.match.path, { exact: '/health' })
  t.same(health.action, { kind: 'respond', status: 200, headers: [['Content-Type', 'text/plain; charset=utf-8']], body: 'ok\n' })
  t.same(redirect.action, { kind: 'redirect', location: 'https://$host$path$query', status: 302 })
  t.equal(redirect.interceptErrors, false)

  const group = model.upstreams.get('api')!
  t.same(group.targets.map(x => [x.authority, x.weight, x.tls?.servername]), [['10.0.0.5:8443', 1, 'api.internal'], ['api-2.internal:8443', 3, 'api.internal']])
  const tlsOptions = group.targets[0].tls!
  t.same([tlsOptions.ca, tlsOptions.cert, tlsOptions.key], [[Buffer.from('API CA')], Buffer.from('CLIENT CERT'), Buffer.from('CLIENT KEY')])
  t.equal(tlsOptions.rejectUnauthorized, true, 'verification on by default')
  t.equal(group.targets[0].tls, group.targets[0].tls)
  t.same(group.pool, { maxConnections: 64, maxQueue: 4096, pipelining: 1, idleTimeout: 60_000 })
  t.same(group.timeouts, { connect: 1000, failedTarget: 30_000 })
  t.same(model.http.hideHeaders, new Set())
  t.equal(model.http.via, '1.1 gw')
  t.equal(model.limits.maxConnections, Math.min(100, MAX_CONNECTIONS))
})

t.test('limits.maxConnections is never more than the open-file limit allows', async t => {
  const model = buildModel({ listen: ':0', targets: ['a:1'], limits: { maxConnections: 10_000_000 } })
  if (readOpenFileLimit() === null) {
    t.equal(model.limits.maxConnections, 10_000_000, 'a guessed limit lowers nothing')
    t.equal(model.limits.requested, 0)
  } else {
    t.equal(model.limits.maxConnections, MAX_CONNECTIONS)
    t.equal(model.limits.requested, 10_000_000, 'what was asked for, to say so at startup')
  }
})

t.test('every problem in one ConfigError, named by option', async t => {
  const error = t.throws(() => buildModel({ listen: ':0', targets: ['a:1', 'b'], timeouts: { conect: 5, tcpIdle: '25h' }, maxHeaderSize: 10 })) as ConfigError
  t.type(error, TypeError, 'still a TypeError, as createProxy has always thrown')
  t.same(error.lines, [
    'option timeouts.conect: unknown key (did you mean connect?)',
    'option targets[1]: "b" is not HOST:PORT',
    'option timeouts.tcpIdle: 25h: at most 24h',
    'option maxHeaderSize: 10: at least 256',
  ])
  t.throws(() => buildModel({ listen: ':0', targets: ['https://a:1'], upstreamTls: { ca: ['/nonexistent/ca.pem'] } }), {
    message: 'option upstreamTls.ca[0]: cannot read "/nonexistent/ca.pem": ENOENT',
  })
  t.throws(() => buildModel({ listeners: [{ listen: ':0' }], routes: [{ proxy: 'x', filters: ['auth'] }], upstreams: { x: { targets: ['a:1'] } } }), {
    message: 'option routes[0].filters[0]: no filter named "auth" (filters are registered by the library, createProxy({ filters }), and none are here)',
  })
})
