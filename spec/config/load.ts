/**
 * Configuration files as a hurried operator writes them, and the exact lines rp4 answers with:
 * every problem at once, each as `file:line:col: key.path: message`, pointing at what is wrong.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { ConfigSource, MAX_FILE_SIZE, loadConfig, parseOptions, sourceProblems } from '../../lib/config/load.js'
import { ConfigError } from '../../lib/config/problems.js'

function problems (text: string, filters?: string[]): string[] {
  return sourceProblems(new ConfigSource(text, 'rp4.yaml'), { filters })
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'rp4-config-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
function file (name: string, text: string): string {
  const full = path.join(dir, name)
  writeFileSync(full, text)
  return full
}

t.test('a reference to a name that does not exist: at the reference, with the names there are', async t => {
  const text = `listeners:
  - listen: ":8080"
upstreams:
  api:
    targets: ["10.0.0.5:8080"]
  web:
    targets: ["10.0.0.6:8080"]
routes:
  - name: api
    match: { host: api.example.com }
    proxy: api
  - name: www
    match: { path: /www }
    proxy: nosuch
`
  t.same(problems(text), ['rp4.yaml:14:12: routes[1].proxy: no upstream named "nosuch" (upstreams: api, web)'])
})

t.test('typos, wrong types, bad units and ranges: all of them, in file order', async t => {
  const text = `listeners:
  - listen: ":8080"
    protocl: auto
    timeouts: { tcpIdle: 25h, detect: -5 }
routes:
  - name: a
    match: { hots: www.example.com, path: api }
    proxy: web
    maxBodySize: -1k
    interceptErrors: yes
    rateLimit: { rate: "fast" }
upstreams:
  web:
    targets: [10.0.0.6:8080, "https://[::1]:8443", 10.0.0.7]
    maxConnections: 1.5
    timeouts: { connect: 0 }
http:
  maxHeaderSize: 2g
  hideHeaders: [Server, "X Powered By"]
  via: 3
`
  t.same(problems(text), [
    'rp4.yaml:3:5: listeners[0].protocl: unknown key (did you mean protocol?)',
    'rp4.yaml:4:26: listeners[0].timeouts.tcpIdle: 25h: at most 24h',
    'rp4.yaml:4:39: listeners[0].timeouts.detect: -5 (-5ms): at least 1ms',
    'rp4.yaml:7:14: routes[0].match.hots: unknown key (did you mean host?)',
    'rp4.yaml:7:43: routes[0].match.path: "api" must start with /',
    'rp4.yaml:9:18: routes[0].maxBodySize: -1k: not a size: 512, 64k, 1m, 1g (a number is bytes)',
    'rp4.yaml:10:22: routes[0].interceptErrors: must be true or false, got "yes" (a string in YAML 1.2: write true or false, unquoted)',
    'rp4.yaml:11:24: routes[0].rateLimit.rate: must be a number, got "fast"',
    'rp4.yaml:14:52: upstreams.web.targets[2]: "10.0.0.7" is not HOST:PORT',
    'rp4.yaml:15:21: upstreams.web.maxConnections: must be a whole number, got 1.5',
    'rp4.yaml:16:26: upstreams.web.timeouts.connect: 0: at least 1ms',
    'rp4.yaml:18:18: http.maxHeaderSize: 2g: at most 1m',
    'rp4.yaml:19:25: http.hideHeaders[1]: "X Powered By" is not a header name',
    'rp4.yaml:20:8: http.via: must be a string, got 3',
  ])
})

t.test('the flat shorthand: numbers are ms and bytes, strings carry units', async t => {
  t.same(problems('listen: 8080\ntargets: ["127.0.0.1:3000"]\ntimeouts: { connect: 90000000, clientIdle: 30s }\nmaxBodySize: 0\n'), [
    'rp4.yaml:3:22: timeouts.connect: 90000000 (25h): at most 24h',
  ])
  t.same(problems('listen: ":8080"\ntargets: []\ntcp: true\ntls: { certificates: [{ cert: a.pem, key: a.key }] }\nownErrorPages: false\n'), [
    'rp4.yaml:2:10: targets: must not be empty',
    'rp4.yaml:4:1: tls: cannot be combined with tcp: a raw TCP relay neither terminates nor routes TLS',
    "rp4.yaml:5:1: ownErrorPages: now interceptErrors, off by default (a backend's 502/503/504 passes as it is)",
  ])
  t.same(problems('listen: ":8080"\n'), ['rp4.yaml:1:1: missing targets (the backend to forward to)'])
})

t.test('flat keys beside the full form are refused, each saying where it belongs', async t => {
  const text = `listen: ":8080"
targets: ["127.0.0.1:3000"]
maxHeaderSize: 8k
listeners:
  - listen: ":9090"
routes:
  - proxy: default
upstreams:
  default: { targets: ["127.0.0.1:3000"] }
`
  t.same(problems(text), [
    'rp4.yaml:1:1: listen: the flat shorthand cannot be mixed with the full form (listeners, routes, upstreams): there it is listeners[].listen',
    'rp4.yaml:2:1: targets: the flat shorthand cannot be mixed with the full form (listeners, routes, upstreams): there it is upstreams.NAME.targets',
    'rp4.yaml:3:1: maxHeaderSize: the flat shorthand cannot be mixed with the full form (listeners, routes, upstreams): there it is http.maxHeaderSize',
  ])
})

t.test('routes: one action each, names unique, settings that do not apply, filters the library did not register', async t => {
  const text = `listeners:
  - listen: ":8080"
    routes: [a, b, nope, b]
  - name: db
    listen: "5432"
    protocol: tcp
    tls: { certificates: [] }
  - listen: "127.0.0.1:8080"
    upstream: web
  - listen: ":8443"
    tls: { certificates: [{ cert: a.pem, key: a.key }], passthrough: { "*": web } }
routes:
  - name: a
    match: { path: /a, pathExact: /a/b }
  - name: b
    proxy: web
    respond: { body: hi }
  - name: a
    redirect: { to: "https://$host$path$query", status: 307 }
    stripPrefix: /x
    filters: [auth, audit]
  - redirect: { to: "$scheme://example.com$uri" }
  - respond: { status: 204, headers: { Content-Length: "5", x-ok: "1" } }
    requestHeaders: { set: { Transfer-Encoding: chunked } }
    responseHeaders: { remove: [Connection] }
upstreams:
  web: { targets: ["127.0.0.1:1"], tls: { verify: false } }
`
  t.same(problems(text, ['audit']), [
    'rp4.yaml:3:20: listeners[0].routes[2]: no route named "nope" (routes: a, b, route-4, route-5)',
    'rp4.yaml:3:26: listeners[0].routes[3]: "b" is listed twice',
    'rp4.yaml:4:5: listeners[1]: missing upstream (protocol tcp relays every connection to this upstream group)',
    'rp4.yaml:7:5: listeners[1].tls: does not apply to protocol tcp: every connection is relayed raw to upstream',
    'rp4.yaml:8:13: listeners[2].listen: "127.0.0.1:8080" is already listened on by listeners[0]',
    'rp4.yaml:9:5: listeners[2].upstream: only for protocol: tcp (here HTTP goes by routes, other bytes to tcpFallback)',
    'rp4.yaml:11:72: listeners[3].tls.passthrough["*"]: "*" relays every name the others do not: the certificates would never be used',
    'rp4.yaml:13:5: routes[0]: no action: give one of proxy (an upstream group), respond, redirect or static',
    'rp4.yaml:14:24: routes[0].match.pathExact: give path (a prefix) or pathExact, not both',
    'rp4.yaml:17:5: routes[1].respond: a second action beside proxy: a route has exactly one of proxy, respond, redirect, static',
    'rp4.yaml:18:11: routes[2].name: duplicate route name "a" (also routes[0])',
    'rp4.yaml:20:5: routes[2].stripPrefix: applies to proxy routes only (this one has redirect)',
    'rp4.yaml:21:15: routes[2].filters[0]: no filter named "auth" (registered: audit)',
    'rp4.yaml:22:21: routes[3].redirect.to: unknown variable $uri (known: $scheme, $host, $hostname, $path, $query)',
    'rp4.yaml:23:40: routes[4].respond.headers.Content-Length: "Content-Length" frames the message or belongs to one hop: rp4 writes it itself',
    'rp4.yaml:24:5: routes[4].requestHeaders: applies to proxy routes only (this one has respond)',
    'rp4.yaml:24:30: routes[4].requestHeaders.set.Transfer-Encoding: "Transfer-Encoding" frames the message or belongs to one hop: rp4 writes it itself',
    'rp4.yaml:25:33: routes[4].responseHeaders.remove[0]: "Connection" frames the message or belongs to one hop: rp4 writes it itself',
    'rp4.yaml:27:36: upstreams.web.tls: no target of this group uses TLS: write them as https://HOST[:PORT]',
  ])
})

t.test('YAML itself: tabs, duplicate keys, syntax, several documents, tags, an empty file, a list', async t => {
  t.same(problems('listeners:\n\t- listen: ":80"\n'), ['rp4.yaml:2:1: a tab in the indentation: YAML indents with spaces'])
  t.same(problems('listen: ":8080"\ntargets: [a:1]\nlisten: ":9090"\n'), ['rp4.yaml:3:1: duplicate key listen: each key may appear once in a mapping'])
  t.same(problems('listen: ":80"\ntargets: [a:1\n'), ['rp4.yaml:3:1: Flow sequence in block collection must be sufficiently indented and end with a ]'])
  t.same(problems('listen: ":80"\ntargets: [a:1]\n---\nlisten: ":81"\n'), ['rp4.yaml:3:1: a second YAML document (---): a configuration is one document'])
  t.same(problems('listen: ":80"\ntargets: [a:1]\nvia: !custom rp4\n'), ['rp4.yaml:3:6: Unresolved tag: !custom: rp4 reads plain YAML values (no tags)'])
  t.same(problems(''), ['rp4.yaml:1:1: nothing to run: give listen and targets (one proxy), or listeners, routes and upstreams'])
  t.same(problems('# only a comment\n'), ['rp4.yaml:1:1: nothing to run: give listen and targets (one proxy), or listeners, routes and upstreams'])
  t.same(problems('- listen: ":80"\n'), ['rp4.yaml:1:1: the options must be a mapping (key: value), got a list'])
  t.same(problems('listen: ":80"\ntargets: [a:1]\n<<: { via: x }\n'), ['rp4.yaml:3:1: ["<<"]: unknown key (YAML merge keys are not supported: repeat the keys, or use an alias for the whole value)'])
})

t.test('aliases: reuse is fine, a billion laughs is refused before it expands', async t => {
  const reuse = `listeners:
  - listen: ":8080"
upstreams:
  a: &pool { targets: ["127.0.0.1:1"], maxConnections: 8 }
  b: *pool
routes:
  - { match: { path: /a }, proxy: a }
  - { match: { path: /b }, proxy: b }
`
  t.same(problems(reuse), [])
  let laughs = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
  let previous = 'a'
  for (const name of 'bcdefghi') {
    laughs += `${name}: &${name} [${Array(9).fill('*' + previous).join(',')}]\n`
    previous = name
  }
  const started = Date.now()
  t.same(problems(laughs), ['rp4.yaml:2:8: aliases expand to too much (more than 1000 copies): refused'])
  t.ok(Date.now() - started < 5000, 'refused without expanding 9^9 strings')
  // a bad value reached through an alias is reported where the alias is used
  t.same(problems('listeners:\n  - listen: ":8080"\nupstreams:\n  a: &pool { targets: [nohost] }\n  b: *pool\nroutes: [{ proxy: a }, { proxy: b }]\n'), [
    'rp4.yaml:4:24: upstreams.a.targets[0]: "nohost" is not HOST:PORT',
    'rp4.yaml:5:6: upstreams.b.targets[0]: "nohost" is not HOST:PORT',
  ])
})

t.test('sizes: a file over 1m is refused unread; a large valid file loads; nesting is bounded', async t => {
  const huge = file('huge.yaml', 'listen: ":8080"\ntargets: [a:1]\n' + '# padding\n'.repeat(120_000))
  t.throws(() => loadConfig(huge), { message: `${huge}: over ${MAX_FILE_SIZE} bytes: a configuration file is at most 1m (${MAX_FILE_SIZE} bytes)` })
  t.same(problems('x'.repeat(MAX_FILE_SIZE + 1)), [`rp4.yaml: ${MAX_FILE_SIZE + 1} bytes: a configuration file is at most 1m (${MAX_FILE_SIZE} bytes)`])

  const lines = ['listeners:', '  - listen: ":0"', 'upstreams:', '  web: { targets: ["127.0.0.1:1"] }', 'routes:']
  for (let i = 0; i < 5000; i++) lines.push(`  - { name: r${i}, match: { host: "h${i}.example.com", path: /p${i} }, proxy: web }`)
  const big = file('big.yaml', lines.join('\n') + '\n')
  const { model } = loadConfig(big)
  t.equal(model.routes.length, 5000)
  t.equal(model.routes[4999].name, 'r4999')

  // bounded before values are built from it: the stack never gets near its end, however often
  for (const depth of [100, 10_000, 100_000]) {
    t.same(problems('listen: ' + '['.repeat(depth) + ']'.repeat(depth) + '\n'), ['rp4.yaml:1:72: nested more than 64 levels deep'])
  }
  const indented = 'a:\n' + Array.from({ length: 1000 }, (_, i) => ' '.repeat(i + 1) + `k${i}:`).join('\n') + ' x\n'
  t.same(problems(indented), ['rp4.yaml:65:65: nested more than 64 levels deep'])
})

t.test('every problem is listed; past 100 the rest are counted', async t => {
  const lines = ['listeners:', '  - listen: ":0"', 'upstreams:', '  web: { targets: ["127.0.0.1:1"] }', 'routes:']
  for (let i = 0; i < 150; i++) lines.push(`  - { proxy: nope${i} }`)
  const path = file('many.yaml', lines.join('\n') + '\n')
  const error = t.throws(() => loadConfig(path)) as ConfigError
  t.equal(error.lines.length, 150)
  const shown = error.message.split('\n')
  t.equal(shown.length, 101)
  t.equal(shown[100], '... and 50 more problems')
  t.equal(shown[0], `${path}:6:14: routes[0].proxy: no upstream named "nope0" (upstreams: web)`)
})

t.test('files the model needs are read, and named by the key and position that gave them', async t => {
  const text = `listeners:
  - listen: ":0"
    tls:
      certificates: [{ cert: /nonexistent/site.pem, key: /nonexistent/site.key }]
    access: { file: /nonexistent/access }
upstreams:
  api:
    targets: ["https://api.internal:8443"]
    tls: { ca: [/nonexistent/ca.pem] }
routes:
  - proxy: api
`
  const error = t.throws(() => loadConfig(file('files.yaml', text))) as ConfigError
  t.same(error.lines.map(line => line.slice(line.indexOf('files.yaml'))), [
    'files.yaml:4:30: listeners[0].tls.certificates[0].cert: cannot read "/nonexistent/site.pem": ENOENT',
    'files.yaml:4:58: listeners[0].tls.certificates[0].key: cannot read "/nonexistent/site.key": ENOENT',
    'files.yaml:5:21: listeners[0].access.file: cannot read "/nonexistent/access": ENOENT',
    'files.yaml:9:17: upstreams.api.tls.ca[0]: cannot read "/nonexistent/ca.pem": ENOENT',
  ])
  t.throws(() => loadConfig(path.join(dir, 'missing.yaml')), { message: `${path.join(dir, 'missing.yaml')}: cannot read it (ENOENT)` })
})

t.test('parseOptions: the options of a text, or a ConfigError', async t => {
  t.same(parseOptions('listen: ":8080"\ntargets: [127.0.0.1:3000]\n', 'x.yaml'), { listen: ':8080', targets: ['127.0.0.1:3000'] })
  t.throws(() => parseOptions('listen: ":8080"\n', 'x.yaml'), { name: 'ConfigError', message: 'x.yaml:1:1: missing targets (the backend to forward to)' })
})

t.test('route paths are written as requests are matched: no ;parameters, no %2F, no dot segments', async t => {
  const text = `listeners: [{ listen: ":8080" }]
routes:
  - { match: { path: "/a;b" }, respond: { body: x } }
  - { match: { pathExact: /a%2Fb }, respond: { body: x } }
  - { match: { path: /x/../a }, respond: { body: x } }
  - { match: { path: /ok/path }, respond: { body: x } }
`
  t.same(problems(text), [
    'rp4.yaml:3:22: routes[0].match.path: "/a;b": a path without spaces, query (?), fragment (#) or parameters (;)',
    'rp4.yaml:4:27: routes[1].match.pathExact: "/a%2Fb" would never match a normalized request path: write "/a/b"',
    'rp4.yaml:5:22: routes[2].match.path: "/x/../a" would never match a normalized request path: write "/a"',
  ])
})
