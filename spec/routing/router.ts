import t from 'tap'
import { HeaderList } from '../../lib/http/headers.js'
import { RequestHead } from '../../lib/http/message.js'
import { matchesPrefix, matchingPath, normalizePath } from '../../lib/http/path.js'
import type { RouteMatch } from '../../lib/model/model.js'
import { Router } from '../../lib/routing/router.js'

const request = (host: string, target: string, method = 'GET', headers: string[] = []): RequestHead =>
  new RequestHead(method, target, 1, 1, new HeaderList(['Host', host, ...headers]))

t.test('normalizePath: what a backend would take the path to be', async t => {
  const cases: Array<[string, string]> = [
    ['/', '/'], ['/a/b', '/a/b'], ['/./admin', '/admin'], ['//admin', '/admin'], ['/%61dmin', '/admin'],
    ['/a/../admin', '/admin'], ['/a/b/', '/a/b/'], ['/a/./', '/a/'], ['/..', '/'], ['/a%2fb', '/a%2Fb'],
    ['/%2e%2e/admin', '/admin'], ['/a//b//', '/a/b/'], ['/%7euser', '/~user'], ['/x/..', '/'], ['/100%', '/100%'],
  ]
  for (const [input, output] of cases) t.equal(normalizePath(input), output, input)
})

t.test('matchingPath: the widest reading a backend may give the path (%2F decoded, ;parameters dropped)', async t => {
  const cases: Array<[string, string]> = [
    ['/', '/'], ['/a/b', '/a/b'], ['/a%2fb', '/a/b'], ['/a%2Fb', '/a/b'], ['/%2F%2Fadmin', '/admin'], ['/x%2f..%2fadmin', '/admin'],
    ['/admin;x', '/admin'], ['/a;b/c;d', '/a/c'], ['/x/..;/admin', '/admin'], ['/x/.;/y', '/x/y'], [';', '/'], ['/a%3bb', '/a%3Bb'],
    ['/%61dmin', '/admin'], ['/a/b/', '/a/b/'], ['/a;x/', '/a/'], ['/100%', '/100%'],
  ]
  for (const [input, output] of cases) t.equal(matchingPath(input), output, input)
})

t.test('prefixes match whole segments', async t => {
  t.ok(matchesPrefix('/api', '/api'))
  t.ok(matchesPrefix('/api/x', '/api'))
  t.notOk(matchesPrefix('/apix', '/api'))
  t.ok(matchesPrefix('/api/x', '/api/'))
  t.notOk(matchesPrefix('/api', '/api/'))
  t.ok(matchesPrefix('/anything', '/'))
})

t.test('host classes: exact, then the longest wildcard, then any host; configuration order within', async t => {
  const routes: Array<{ match: RouteMatch, route: string }> = [
    { match: { path: { prefix: '/static' } }, route: 'any-static' },
    { match: { hosts: ['*.example.com'], path: { prefix: '/' } }, route: 'wild' },
    { match: { hosts: ['*.api.example.com'] }, route: 'wild-api' },
    { match: { hosts: ['www.example.com'], path: { prefix: '/admin' } }, route: 'www-admin' },
    { match: { hosts: ['www.example.com'], methods: ['POST'] }, route: 'www-post' },
    { match: {}, route: 'default' },
  ]
  const router = new Router(routes)
  t.equal(router.find(request('www.example.com', '/admin/x')), 'www-admin')
  t.equal(router.find(request('WWW.example.com:443', '/./admin')), 'www-admin', 'host and path normalized')
  t.equal(router.find(request('www.example.com', '/x', 'POST')), 'www-post')
  t.equal(router.find(request('www.example.com', '/x')), 'wild', 'no exact route matched: the wildcard')
  t.equal(router.find(request('v1.api.example.com', '/x')), 'wild-api', 'the longest wildcard first')
  t.equal(router.find(request('a.b.c.example.com', '/x')), 'wild', 'a wildcard covers any depth')
  t.equal(router.find(request('example.com', '/static/a')), 'any-static', '*.example.com does not cover example.com')
  t.equal(router.find(request('other.test', '/x')), 'default')
  t.equal(router.find(request('other.test', '/x?static')), 'default', 'the query is not the path')
})

t.test('methods and headers; no route: null', async t => {
  const router = new Router([
    { match: { headers: [{ name: 'X-Canary', value: '1' }] }, route: 'canary' },
    { match: { headers: [{ name: 'authorization' }], methods: ['GET', 'HEAD'] }, route: 'authed-read' },
    { match: { path: { exact: '/healthz' } }, route: 'health' },
  ])
  t.equal(router.find(request('h', '/x', 'GET', ['x-canary', ' 1 '])), 'canary')
  t.equal(router.find(request('h', '/x', 'GET', ['X-Canary', '2', 'Authorization', 'b'])), 'authed-read')
  t.equal(router.find(request('h', '/x', 'POST', ['Authorization', 'b'])), null)
  t.equal(router.find(request('h', '/healthz')), 'health')
  t.equal(router.find(request('h', '/healthz/')), null, 'exact is exact')
})
