/**
 * The request pipeline end to end, on the full form of the configuration: routes by host, path,
 * method and header; the respond and redirect actions; path and header edits; several listeners
 * with their own routes; the library user's filters (sync and async, on every hook) and what
 * happens when one misbehaves.
 */
import t, { type Test } from 'tap'
import { exchange } from '../helpers/client.js'
import { header } from '../helpers/framing.js'
import { ok, startOrigin, type Origin } from '../helpers/origin.js'
import { startProxy, type StartedProxy } from '../helpers/proxy.js'
import type { Filter, ProxyOptions } from '../../lib/index.js'
import { undated } from '../helpers/dates.js'

const get = (path: string, host = 'h', ...extra: string[]): string =>
  [`GET ${path} HTTP/1.1`, `Host: ${host}`, ...extra].map(x => x + '\r\n').join('') + '\r\n'

const named = (origin: Origin, name: string): void => {
  origin.handler = req => ok(`${name} ${req.url}`)
}

async function full (t: Test, options: Omit<ProxyOptions, 'listeners'> & { listeners?: ProxyOptions['listeners'] }): Promise<StartedProxy> {
  return await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0', timeouts: { detect: '30s' } }],
    ...options,
  } as ProxyOptions)
}

t.test('routes: exact host, then the longest wildcard, then any host; path prefixes by segment; methods; headers; 404 without a route', async t => {
  const api = await startOrigin(t, () => ok())
  const web = await startOrigin(t, () => ok())
  const canary = await startOrigin(t, () => ok())
  named(api, 'api')
  named(web, 'web')
  named(canary, 'canary')
  const { port, events } = await full(t, {
    routes: [
      { name: 'canary', match: { host: 'www.example.com', headers: { 'X-Canary': '1' } }, proxy: 'canary' },
      { name: 'api', match: { host: ['api.example.com', '*.api.example.com'], path: '/v1' }, proxy: 'api' },
      { name: 'api-post', match: { host: '*.example.com', methods: ['POST'] }, proxy: 'api' },
      { name: 'www', match: { host: '*.example.com' }, proxy: 'web' },
    ],
    upstreams: { api: { targets: [api.target] }, web: { targets: [web.target] }, canary: { targets: [canary.target] } },
  })
  const body = async (request: string): Promise<string> => (await exchange(port, request, { responses: 1 })).responses[0]?.body.toString() ?? '?'
  t.equal(await body(get('/v1/users', 'api.example.com')), 'api /v1/users')
  t.equal(await body(get('/v1', 'EU.API.example.com:8443')), 'api /v1', 'a wildcard host, any case, port ignored')
  t.equal(await body(get('/v10', 'api.example.com')), 'web /v10', '/v1 does not match /v10: *.example.com takes it')
  t.equal(await body(get('/x', 'www.example.com', 'X-Canary: 1')), 'canary /x', 'a header condition')
  t.equal(await body(get('/x', 'www.example.com', 'X-Canary: 2')), 'web /x')
  t.equal(await body('POST /form HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 2\r\n\r\nhi'), 'api /form', 'a method condition')
  t.equal(await body(get('/./v1/../v1/x', 'api.example.com')), 'api /./v1/../v1/x', 'matched on the normalized path, forwarded as sent')
  const none = await exchange(port, get('/', 'other.test'), { responses: 1 })
  t.equal(undated(none.text), 'HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\n404 Not Found\n', 'no route: rp4\'s 404, the connection kept')
  t.notOk(none.closed)
  t.ok(events.clientErrors.some(e => e.error.code === 'no_route'), 'counted as no_route')
})

t.test('respond and redirect: exact bytes, placeholders filled, no backend touched', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await full(t, {
    routes: [
      { match: { pathExact: '/healthz' }, respond: { status: 200, body: 'ok\n' } },
      { match: { path: '/old' }, redirect: { to: 'https://$host/new$path$query', status: 301 } },
      { match: { path: '/secure' }, redirect: { to: 'https://$hostname$path$query', status: 301 } },
      { match: { path: '/gone' }, respond: { status: 410, headers: { 'Cache-Control': 'no-store' } } },
      { proxy: 'app' },
    ],
    upstreams: { app: { targets: [origin.target] } },
  })
  const health = await exchange(port, get('/healthz') + get('/healthz').replace('GET', 'HEAD'), { responses: 2 })
  t.equal(undated(health.text),
    'HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nok\n' +
    'HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\n', 'GET and HEAD: no body for HEAD')
  const moved = await exchange(port, get('/old/a?b=1', 'example.com'), { responses: 1 })
  t.equal(moved.responses[0]?.head.line[1], '301')
  t.equal(header(moved.responses[0]!, 'location'), 'https://example.com/new/old/a?b=1')
  const secure = await exchange(port, get('/secure/x?y', 'Example.com:8080'), { responses: 1 })
  t.equal(header(secure.responses[0]!, 'location'), 'https://example.com/secure/x?y', '$hostname: the host without the cleartext port')
  const noHost = await exchange(port, 'GET /old HTTP/1.0\r\n\r\n')
  t.equal(undated(noHost.text), 'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n', 'no Host to redirect to: 400, not https:///new/old')
  const gone = await exchange(port, get('/gone'), { responses: 1 })
  t.equal(undated(gone.text), 'HTTP/1.1 410 Gone\r\nCache-Control: no-store\r\nContent-Length: 0\r\n\r\n')
  t.equal(origin.requests.length, 0, 'the backend saw none of them')
  const post = await exchange(port, 'POST /healthz HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello' + get('/healthz'), { responses: 2 })
  t.same(post.responses.map(r => r.head.line[1]), ['200', '200'], 'a body before a fixed response is read and dropped, the connection goes on')
})

t.test('path and header edits: stripPrefix, rewritePath, request and response headers', async t => {
  const origin = await startOrigin(t, req => ok(`${req.url} tenant=${header(req, 'x-tenant') ?? '-'} secret=${header(req, 'x-secret') ?? '-'}`, ['X-Backend: b1', 'X-Debug: yes']))
  const { port } = await full(t, {
    routes: [
      {
        match: { path: '/api' },
        stripPrefix: '/api',
        requestHeaders: { set: { 'X-Tenant': 'acme' }, remove: ['X-Secret'] },
        responseHeaders: { remove: ['X-Debug'], add: { 'X-Route': 'api' } },
        proxy: 'app',
      },
      { match: { path: '/old' }, rewritePath: { pattern: '^/old/(.*)$', replacement: '/new/$1' }, proxy: 'app' },
    ],
    upstreams: { app: { targets: [origin.target] } },
  })
  const res = await exchange(port, get('/api/users?x=1', 'h', 'X-Secret: s', 'X-Tenant: spoofed') + get('/api') + get('/old/a/b?q'), { responses: 3 })
  t.same(res.responses.map(r => r.body.toString()), ['/users?x=1 tenant=acme secret=-', '/ tenant=acme secret=-', '/new/a/b?q tenant=- secret=-'])
  const first = res.responses[0]!
  t.equal(header(first, 'x-debug'), undefined, 'a response header removed')
  t.equal(header(first, 'x-route'), 'api', 'a response header added')
  t.equal(header(first, 'x-backend'), 'b1')
  const odd = await exchange(port, get('//old/a') + get('/./old/%61/b') + get('/x/../old/c'), { responses: 3 })
  t.same(odd.responses.map(r => r.body.toString().split(' ')[0]), ['/new/a', '/new/a/b', '/new/c'], 'spellings the route took for /old are rewritten too, not passed on unchanged')
})

t.test('listeners: each with its routes; a :80-style listener redirecting to https', async t => {
  const origin = await startOrigin(t, req => ok(req.url))
  const { proxy } = await full(t, {
    listeners: [
      { name: 'public', listen: '127.0.0.1:0', routes: ['site'], timeouts: { detect: '30s' } },
      { name: 'admin', listen: '127.0.0.1:0', routes: ['admin', 'site'], timeouts: { detect: '30s' } },
      { name: 'http', listen: '127.0.0.1:0', redirectToHttps: true, timeouts: { detect: '30s' } },
    ],
    routes: [
      { name: 'admin', match: { path: '/admin' }, respond: { status: 200, body: 'admin\n' } },
      { name: 'site', proxy: 'app' },
    ],
    upstreams: { app: { targets: [origin.target] } },
  })
  const ports = Object.fromEntries(proxy.addresses().map(({ name, address }) => [name, address!.port]))
  t.equal((await exchange(ports.public, get('/admin'), { responses: 1 })).responses[0]?.body.toString(), '/admin', 'the public listener has no admin route')
  t.equal((await exchange(ports.admin, get('/admin'), { responses: 1 })).responses[0]?.body.toString(), 'admin\n')
  const redirect = await exchange(ports.http, get('/a?b', 'Example.com:80'), { responses: 1 })
  t.equal(redirect.responses[0]?.head.line[1], '308', 'permanent, method kept')
  t.equal(header(redirect.responses[0]!, 'location'), 'https://example.com/a?b')
})

t.test('user filters: typed hooks in order, a promise holds the client, onLog sees the end', async t => {
  const origin = await startOrigin(t, req => ok(`${req.url} user=${header(req, 'x-user') ?? '-'}`))
  const log: string[] = []
  const auth: Filter = {
    name: 'auth',
    async onRequest (session) {
      // an auth call: answered later, the client's next bytes wait
      await new Promise(resolve => setTimeout(resolve, 20))
      const token = session.request.headers.get('authorization')
      if (token !== 'Bearer good') return session.respond(401, { 'WWW-Authenticate': 'Bearer' }, 'no\n')
      session.ctx.user = 'alice'
      return 'continue'
    },
    onUpstreamRequest (session, head) {
      head.headers.set('X-User', String(session.ctx.user))
      head.headers.delete('authorization')
    },
    onResponse (session, head) { head.headers.append('X-Served-To', String(session.ctx.user ?? 'nobody')) },
    onLog (session, error) { log.push(`${session.request.method} ${session.request.target} ${session.response?.status ?? 0} ${error?.code ?? '-'}`) },
  }
  const upper: Filter = {
    name: 'upper',
    onResponseBody (_session, chunk) { return Buffer.from(chunk.toString('latin1').toUpperCase(), 'latin1') },
  }
  const { port } = await startProxy(t, { targets: [origin.target], filters: [auth, upper] })
  const res = await exchange(port,
    get('/a', 'h', 'Authorization: Bearer good') + get('/b', 'h', 'Authorization: Bearer bad') + get('/c', 'h', 'Authorization: Bearer good'),
    { responses: 3 })
  t.same(res.responses.map(r => r.head.line[1]), ['200', '401', '200'], 'in request order, though the filter answered /b at once')
  t.equal(res.responses[0]?.body.toString(), '/A USER=ALICE', 'the upstream request carried X-User and no Authorization; the body upper-cased')
  t.equal(header(res.responses[0]!, 'x-served-to'), 'alice')
  t.equal(header(res.responses[1]!, 'www-authenticate'), 'Bearer')
  t.equal(header(res.responses[1]!, 'x-served-to'), 'nobody', 'the response hooks see rp4\'s own answers too')
  t.equal(origin.requests.length, 2, '/b never went upstream')
  t.ok(origin.requests.every(r => header(r, 'authorization') === undefined))
  t.same(log, ['GET /a 200 -', 'GET /b 401 -', 'GET /c 200 -'])
})

t.test('a filter that throws, rejects, answers nonsense or sets a header with CRLF: 500 for that request, the proxy goes on', async t => {
  const origin = await startOrigin(t, req => ok(req.url))
  const bad: Filter = {
    name: 'bad',
    onRequest (session) {
      switch (session.request.path) {
        case '/throw': throw new Error('boom')
        case '/reject': return Promise.reject(new Error('later boom'))
        case '/nonsense': return 'yes' as never
        case '/crlf': session.request.headers.set('X-A', 'a\r\nX-Injected: 1'); return 'continue'
        default: return 'continue'
      }
    },
  }
  const { proxy, port, events } = await startProxy(t, { targets: [origin.target], filters: [bad] })
  const failures: string[] = []
  proxy.on('proxyError', error => failures.push(`${error.code} ${error.message.split(':')[0]}`))
  for (const path of ['/throw', '/reject', '/nonsense', '/crlf']) {
    const res = await exchange(port, get(path) + get('/fine'), { responses: 2 })
    t.same(res.responses.map(r => `${r.head.line[1]} ${r.body.toString()}`), ['500 500 Internal Server Error\n', '200 /fine'], path)
  }
  t.equal(events.clientErrors.filter(e => e.error.code === 'filter_error').length, 0, 'not the client\'s fault')
  t.same(failures, ['/throw', '/reject', '/nonsense', '/crlf'].map(path => `filter_error filter bad on GET ${path} from 127.0.0.1`), 'reported as rp4\'s own trouble (proxyError), naming the filter and the request')
  t.equal(proxy.stats().errors.filter_error, 4)
  t.notOk(origin.requests.some(r => r.url !== '/fine'), 'nothing of the failed requests went upstream')
})

t.test('options of the full form are checked: unknown keys, a route to a missing group, a filter name nobody gave', async t => {
  const { createProxy } = await import('../../lib/index.js')
  const base = { listeners: [{ listen: '127.0.0.1:0' }], upstreams: { app: { targets: ['127.0.0.1:1'] } } }
  t.throws(() => createProxy({ ...base, routes: [{ proxy: 'nope' }] } as ProxyOptions), /routes\[0\]\.proxy: no upstream named "nope"/)
  t.throws(() => createProxy({ ...base, routes: [{ proxy: 'app', filters: ['auth'] }] } as ProxyOptions), /routes\[0\]\.filters\[0\]/)
  t.throws(() => createProxy({ ...base, routes: [{ proxy: 'app', mtach: {} }] } as never), /routes\[0\]\.mtach: unknown key/)
  t.throws(() => createProxy({ ...base, listen: ':1', routes: [] } as never), /listen/)
})

t.test('a route written for /admin holds against every other spelling of it; targets a backend could cut short are refused', async t => {
  const origin = await startOrigin(t, req => ok(`app ${req.url}`))
  const { port } = await full(t, {
    routes: [
      { name: 'admin', match: { path: '/admin' }, respond: { status: 403, body: 'denied\n' } },
      { name: 'api', match: { path: '/api' }, proxy: 'app', stripPrefix: '/api' },
      { name: 'all', proxy: 'app' },
    ],
    upstreams: { app: { targets: [origin.target] } },
  })
  const denied = ['/admin', '/admin/', '/%61dmin', '/x/../admin', '/x/%2e%2e/admin', '//admin', '/./admin', '/admin?x',
    // a backend that decodes %2F before routing sees /admin/x
    '/admin%2fx', '/%2Fadmin', '/api%2f..%2fadmin', '/api/..%2fadmin',
    // servlet containers drop ;parameters from segments
    '/admin;x', '/admin;jsessionid=1/x', '/x/..;/admin', '/api/..;/admin',
    'http://h/admin']
  for (const path of denied) {
    const res = await exchange(port, get(path), { responses: 1 })
    t.equal(res.responses[0]?.head.line[1], '403', `${path}: the admin route`)
  }
  const refused: Array<[string, string]> = [['GET /admin#x HTTP/1.1', 'a fragment'], ['GET /x#/../admin HTTP/1.1', 'a fragment'],
    ['GET /admin%00.png HTTP/1.1', 'an encoded NUL'], ['GET /a%00 HTTP/1.1', 'an encoded NUL'], ['GET * HTTP/1.1', 'the asterisk form with GET']]
  for (const [line, why] of refused) {
    const res = await exchange(port, `${line}\r\nHost: h\r\n\r\n`, { responses: 1 })
    t.equal(res.responses[0]?.head.line[1], '400', `${line}: 400 (${why})`)
  }
  t.equal(origin.requests.length, 0, 'none of them reached the backend')

  const passed: Array<[string, string]> = [
    ['/apix', 'app /apix'], ['/api/a%2Fb', 'app /a%2Fb'], ['/api%2Fx', 'app /x'], ['/api', 'app /'], ['/api/x?q=%2F', 'app /x?q=%2F'],
    ['/files/a;b', 'app /files/a;b'], ['/%2561dmin', 'app /%2561dmin'],
  ]
  for (const [path, body] of passed) {
    const res = await exchange(port, get(path), { responses: 1 })
    t.equal(res.responses[0]?.body.toString(), body, `${path}: proxied as ${body.slice(4)}`)
  }
  const options = await exchange(port, 'OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(options.responses[0]?.body.toString(), 'app *', 'OPTIONS * is proxied')
})

t.test('the forwarding headers are a filter at the hop: other filters see what the backend gets and what it sent, hop-by-hop gone', async t => {
  const origin = await startOrigin(t, () => ok('x', ['Connection: keep-alive, X-Hop', 'X-Hop: secret', 'Keep-Alive: timeout=5', 'X-Kept: 1']))
  const seen: { upstream: string[], response: string[] } = { upstream: [], response: [] }
  const watch: Filter = {
    name: 'watch',
    onUpstreamRequest (_session, head) { seen.upstream = head.headers.raw.filter((_, i) => i % 2 === 0).map(n => n.toLowerCase()) },
    onResponse (_session, head) { seen.response = head.headers.raw.filter((_, i) => i % 2 === 0).map(n => n.toLowerCase()) },
  }
  const { port } = await startProxy(t, { targets: [origin.target], filters: [watch] })
  const res = await exchange(port, get('/', 'h', 'Connection: keep-alive, X-Client-Hop', 'X-Client-Hop: 1', 'X-Forwarded-Proto: https', 'Keep-Alive: 5'), { responses: 1 })
  t.equal(res.responses[0]?.body.toString(), 'x')
  t.same(seen.upstream.sort(), ['host', 'via', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto'].sort(), 'the upstream request as the backend gets it')
  t.same(seen.response.sort(), ['content-length', 'via', 'x-kept'].sort(), 'the backend\'s response without its hop-by-hop headers, with Via')
  const sent = origin.requests[0]!
  t.equal(header(sent, 'x-forwarded-proto'), 'http', 'the client\'s X-Forwarded-Proto replaced')
  t.equal(header(sent, 'x-client-hop'), undefined)
})

t.test('a filter promise that never settles: 504 after the route\'s response timeout, the proxy and the connection go on; settling late changes nothing', async t => {
  const origin = await startOrigin(t, req => ok(`app ${req.url}`))
  let release: (verdict: 'continue') => void = () => {}
  const hang: Filter = {
    name: 'hang',
    async onRequest (session) {
      if (session.request.path !== '/hang') return 'continue'
      return await new Promise(resolve => { release = resolve })
    },
  }
  const { port, events } = await startProxy(t, { targets: [origin.target], filters: [hang], timeouts: { response: '300ms' } })
  const started = Date.now()
  const res = await exchange(port, get('/hang') + get('/after'), { responses: 2 })
  t.equal(res.responses[0]?.head.line[1], '504', 'the hung filter: 504')
  t.ok(Date.now() - started >= 250, 'not before the timeout')
  t.equal(res.responses[1]?.body.toString(), 'app /after', 'the next request on the connection is served')
  t.ok(events.proxyErrors.some(e => e.code === 'filter_timeout'), 'reported as filter_timeout')
  release('continue')
  await new Promise(resolve => setImmediate(resolve))
  t.same(origin.requests.map(r => r.url), ['/after'], 'the late verdict sent nothing upstream')
})

t.test('a body filter that changes the length: framed by what it declares, never by bytes past the head\'s Content-Length', async t => {
  const origin = await startOrigin(t, req => req.url === '/bad-length' ? ok('hello', ['X-Set-Length: abc']) : ok('hello'))
  const grow = (s: string): string => s + ' world'
  const filter: Filter = {
    name: 'rewrite',
    onResponse (session, head) {
      const path = session.request.path
      if (path === '/declared') head.headers.delete('Content-Length')
      if (path === '/bad-length') head.headers.set('Content-Length', 'abc')
      if (path === '/two-lengths') head.headers.append('Content-Length', '7')
    },
    onResponseBody (session, chunk) {
      const path = session.request.path
      if (path === '/short') return chunk.subarray(0, 2)
      if (path === '/two-lengths') return chunk
      return Buffer.from(grow(chunk.toString('latin1')), 'latin1')
    },
  }
  const { port, events } = await startProxy(t, { targets: [origin.target], filters: [filter] })

  const grown = await exchange(port, get('/undeclared') + get('/after'))
  t.equal(grown.text, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVia: 1.1 rp4\r\n\r\nhello', 'five bytes as declared, nothing after them')
  t.ok(grown.closed, 'and the connection closed: the pipelined /after is not answered from leftover bytes')
  t.equal(grown.responses.length, 1)
  t.ok(events.proxyErrors.some(e => e.code === 'filter_error' && /ran 6 bytes past its Content-Length \(body filters: rewrite;/.test(e.message)), 'reported, naming the filter')

  const short = await exchange(port, get('/short'))
  t.equal(short.text, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVia: 1.1 rp4\r\n\r\nhe', 'two of five bytes')
  t.ok(short.closed, 'then closed: the client sees the truncation')

  const declared = await exchange(port, get('/declared') + get('/declared'), { responses: 2 })
  t.equal(declared.text, 'HTTP/1.1 200 OK\r\nVia: 1.1 rp4\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n'.repeat(2), 'Content-Length removed by the filter: chunked')
  t.notOk(declared.closed, 'kept alive')
  const old = await exchange(port, 'GET /declared HTTP/1.0\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(old.text, 'HTTP/1.1 200 OK\r\nVia: 1.1 rp4\r\nConnection: close\r\n\r\nhello world', 'to HTTP/1.0: until close')

  const bad = await exchange(port, get('/bad-length'), { responses: 1 })
  t.equal(bad.text, 'HTTP/1.1 200 OK\r\nX-Set-Length: abc\r\nVia: 1.1 rp4\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n', 'a Content-Length that is no length is dropped: chunked')
  const two = await exchange(port, get('/two-lengths'), { responses: 1 })
  t.equal(two.text, 'HTTP/1.1 200 OK\r\nVia: 1.1 rp4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', 'two different Content-Lengths: both dropped, chunked')
})
