/**
 * examples/balancing.yaml, the example the README's load-balancing section shows (verbatim: this
 * spec checks that too), loads into the model it describes.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { loadConfig, parseOptions } from '../../lib/config/load.js'
import { buildModel } from '../../lib/config/build.js'
import { ROOT } from '../helpers/proxy.js'
import { DEFAULT_BALANCE } from '../../lib/config/schema.js'

const file = path.join(ROOT, 'examples/balancing.yaml')

t.test('the README shows the file as it is', async t => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  t.ok(readme.includes('```yaml\n' + readFileSync(file, 'utf8') + '```'), 'README holds examples/balancing.yaml verbatim')
})

t.test('the README\'s policy table marks the default policy, and only it', async t => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const marked = [...readme.matchAll(/^\| `([^`]+)` \(default\) \|/gm)].map(m => m[1])
  t.same(marked, [DEFAULT_BALANCE])
})

t.test('examples/balancing.yaml → Model', async t => {
  const { model } = loadConfig(file)
  const api = model.upstreams.get('api')!
  t.same(api.targets.map(x => [x.authority, x.weight, x.backup]), [['10.0.0.11:8000', 3, false], ['10.0.0.12:8000', 1, false], ['10.0.0.99:8000', 1, true]])
  t.same(api.policy, { kind: 'p2c', latency: false })
  t.equal(api.slowStart, 30_000)
  t.equal(api.panicThreshold, 50)
  t.same(api.healthCheck, {
    kind: 'http', method: 'GET', path: '/healthz', host: null, statuses: [[200, 299]], body: '"status":"ok"', tls: null,
    interval: 2000, timeout: 1000, jitter: 0.1, rise: 2, fall: 3,
  })
  t.same(api.outlier, { consecutiveFailures: 5, consecutive5xx: 5, successRate: null, baseEjection: 30_000, maxEjection: 300_000, maxEjectedPercent: 34 })
  t.same(api.retries, { count: 2, statuses: [502, 503, 504], perTryTimeout: 2000, budgetPercent: 20, budgetMinConcurrency: 3, nonIdempotent: false, markDownAfter: 3 })
  t.same(api.limits, { maxRequests: 10_000, maxPending: 0 })
  const web = model.upstreams.get('web')!
  t.same(web.policy, { kind: 'hash', by: 'cookie', name: 'session', loadFactor: 1.25 })
  t.equal(web.healthCheck, null)
  t.equal(web.retries.count, 0, 'no retries unless asked')
  const cache = model.upstreams.get('cache')!
  t.same(cache.policy, { kind: 'least-conn' })
  t.match(cache.healthCheck, { kind: 'tcp', interval: 1000 })
  t.equal(model.listeners[1].upstream, 'cache')
})

t.test('mistakes in the balancing keys are named by file:line:col', async t => {
  const text = 'listeners: [{ listen: ":0" }]\nroutes: [{ proxy: app }]\nupstreams:\n  app:\n    targets: ["a:1"]\n    policy: \"hash:header:\"\n    healthCheck: { expectStatus: "200-99", rise: 0 }\n    retries: { count: 20 }\n'
  let message = ''
  try {
    parseOptions(text, 'bad.yaml')
  } catch (err) {
    message = (err as Error).message
  }
  t.match(message, /bad\.yaml:6:13: upstreams\.app\.policy: "hash:header:" names no header/)
  t.match(message, /bad\.yaml:7:34: upstreams\.app\.healthCheck\.expectStatus: "200-99" in "200-99" is not a status or a range of them \(200-399\)/)
  t.match(message, /bad\.yaml:7:50: upstreams\.app\.healthCheck\.rise: 0: at least 1/)
  t.match(message, /bad\.yaml:8:23: upstreams\.app\.retries\.count: 20: at most 10/)
})

t.test('discovery: the README example loads; srv:// targets turn it on; bad names are refused', async t => {
  const { model } = loadConfig(path.join(ROOT, 'examples/balancing.yaml'))
  t.equal(model.upstreams.get('api')!.discovery, null, 'addresses only: no discovery')
  const text = 'listeners: [{ listen: ":0" }]\nroutes: [{ proxy: api }]\nupstreams:\n  api:\n    targets: ["api.internal:8080", "srv://_http._tcp.search.internal"]\n    discovery: { minTtl: 5s, maxTtl: 1m, keepStale: 10m }\n'
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  t.ok(readme.includes(text.slice(text.indexOf('upstreams:'))), 'the README shows this example')
  const group = buildModel(parseOptions(text, 'discovery.yaml')).upstreams.get('api')!
  t.same(group.discovery, { minTtl: 5000, maxTtl: 60_000, keepStale: 600_000, servers: [] })
  t.same(group.targets.map(x => [x.authority, x.srv]), [['api.internal:8080', false], ['srv://_http._tcp.search.internal', true]])
  const auto = buildModel(parseOptions('listeners: [{ listen: ":0" }]\nroutes: [{ proxy: a }]\nupstreams:\n  a: { targets: ["srv://_x._tcp.example.com"] }\n', 'srv.yaml')).upstreams.get('a')!
  t.match(auto.discovery, { minTtl: 1000, maxTtl: 300_000, keepStale: 300_000 })
  let message = ''
  try {
    parseOptions('listeners: [{ listen: ":0" }]\nroutes: [{ proxy: a }]\nupstreams:\n  a: { targets: ["srv://nodots"] }\n', 'bad.yaml')
  } catch (err) {
    message = (err as Error).message
  }
  t.match(message, /bad\.yaml:4:18: upstreams\.a\.targets\[0\]: "srv:\/\/nodots": write srv:\/\/_service\._proto\.example\.com/)
})

t.test('markDownAfter: the README example loads; 3 by default; a bad value names the key', async t => {
  const text = 'listeners: [{ listen: ":0" }]\nroutes: [{ proxy: api }]\nupstreams:\n  api:\n    targets: ["10.0.0.11:8000", "10.0.0.12:8000", "10.0.0.13:8000"]\n    policy: least-conn\n    retries: { count: 1, markDownAfter: 3 }   # a 503 goes to another; three in a row: skipped for 10 s\n'
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  t.ok(readme.includes(text.slice(text.indexOf('upstreams:'))), 'the README shows this example')
  const group = buildModel(parseOptions(text, 'failing.yaml')).upstreams.get('api')!
  t.match(group.retries, { count: 1, markDownAfter: 3 })
  t.equal(group.timeouts.failedTarget, 10_000, 'skipped for the failed-target time')
  const plain = buildModel(parseOptions('listeners: [{ listen: ":0" }]\nroutes: [{ proxy: a }]\nupstreams:\n  a: { targets: ["10.0.0.1:80"] }\n', 'plain.yaml')).upstreams.get('a')!
  t.equal(plain.retries.markDownAfter, 3)
  const off = buildModel(parseOptions('listeners: [{ listen: ":0" }]\nroutes: [{ proxy: a }]\nupstreams:\n  a: { targets: ["10.0.0.1:80"], retries: { count: 1, markDownAfter: 0 } }\n', 'off.yaml')).upstreams.get('a')!
  t.equal(off.retries.markDownAfter, 0)
  let message = ''
  try {
    parseOptions('listeners: [{ listen: ":0" }]\nroutes: [{ proxy: a }]\nupstreams:\n  a: { targets: ["10.0.0.1:80"], retries: { markDownAfter: -1 } }\n', 'bad.yaml')
  } catch (err) {
    message = (err as Error).message
  }
  t.match(message, /bad\.yaml:4:\d+: upstreams\.a\.retries\.markDownAfter/)
})
