/**
 * What `rp4 run` hands today's runtime: the flat options in numbers, from a flat file, or from a
 * full-form file that says no more than the flat form can; for any other file, why not.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import t from 'tap'
import { inLibraryUnits, runtimeOptions } from '../../lib/config/collapse.js'
import { flagsToOptions, parseCommandLine, toYaml } from '../../lib/config/flags.js'
import { parseOptions } from '../../lib/config/load.js'
import { buildModel } from '../../lib/config/build.js'
import { resolveConfig } from '../../lib/config/resolve.js'
import type { Options } from '../../lib/config/schema.js'

t.test('a flat file: units become numbers, a port a string', async t => {
  const options = parseOptions('listen: 8080\ntargets: [127.0.0.1:3000]\ntimeouts: { connect: 2s, tcpIdle: 90m }\nmaxBodySize: 10m\nrateLimit: { rate: 2.5 }\n', 'x.yaml')
  const runtime = runtimeOptions(options)
  t.same(runtime, { listen: '8080', targets: ['127.0.0.1:3000'], timeouts: { connect: 2000, tcpIdle: 5_400_000 }, maxBodySize: 10_485_760, rateLimit: { rate: 2.5 } })
  t.doesNotThrow(() => resolveConfig(inLibraryUnits(options)), 'the runtime takes it')
})

t.test('the full form a command line prints runs as that command line', async t => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rp4-collapse-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const pem = path.join(dir, 'a.pem')
  writeFileSync(pem, 'PEM')
  const lines = [
    ['listen', ':8080', '--to', '127.0.0.1:3000', '--to', 'https://api.internal:8443', '--timeout', '5s', '--tcp-to', '127.0.0.1:22',
      '--sni', 'db.example.com=10.0.0.9:443', '--cert', pem, '--key', pem, '--ca', pem, '--connect-timeout', '1500', '--allow', '10.0.0.0/8',
      '--max-body-size', '1m', '--rate-limit', '3', '--intercept-errors', '--allow-underscores-in-headers', '--max-connections-per-ip', '9'],
    ['listen', '5432', '--to', '10.0.0.7:5432', '--tcp', '--tcp-idle-timeout', '10m'],
  ]
  for (const argv of lines) {
    const line = parseCommandLine(argv)
    const flat = flagsToOptions(line.positionals[1], line)
    const full = parseOptions(toYaml(flat), 'generated.yaml')
    const runtime = runtimeOptions(full)
    t.type(runtime, 'object', argv.join(' '))
    t.same(runtime, inLibraryUnits(flat), 'the same options as the command line')
  }
})

t.test('a full form saying more than the flat form can: why not, no options', async t => {
  const base = { upstreams: { web: { targets: ['127.0.0.1:1'] } } }
  const cases: Array<[Options, string]> = [
    [{ ...base, listeners: [{ listen: ':1' }, { listen: ':2' }], routes: [{ proxy: 'web' }] }, '2 listeners (one only)'],
    [{ ...base, listeners: [{ listen: ':1' }], routes: [{ proxy: 'web' }, { match: { path: '/x' }, respond: {} }] }, '2 routes (one only, matching every request)'],
    [{ ...base, listeners: [{ listen: ':1' }], routes: [{ match: { host: 'a.example.com' }, proxy: 'web' }] }, 'a route with a match, path rewriting, header edits or filters'],
    [{ ...base, listeners: [{ listen: ':1' }], routes: [{ respond: {} }] }, 'a route that does not proxy'],
    [{ ...base, listeners: [{ listen: ':1', redirectToHttps: true }] }, 'a redirectToHttps listener'],
    [{ upstreams: { web: { targets: ['127.0.0.1:1'] }, spare: { targets: ['127.0.0.1:2'] } }, listeners: [{ listen: ':1' }], routes: [{ proxy: 'web' }] }, 'upstream group spare, which the flat form has no place for'],
    [{ upstreams: { web: { targets: ['127.0.0.1:1', { address: '127.0.0.1:2', weight: 3 }] } }, listeners: [{ listen: ':1' }], routes: [{ proxy: 'web' }] },
      'it says more than one listener, one catch-all route and one upstream group can (TLS cleartext other than serve, several fallback or connect timeouts, weights, ...)'],
  ]
  for (const [options, reason] of cases) t.equal(runtimeOptions(options), reason, reason)
  const plain = runtimeOptions({ ...base, listeners: [{ name: 'web', listen: ':1' }], routes: [{ name: 'all', proxy: 'web', maxBodySize: '1k' }], http: { via: 'edge' } })
  t.same(plain, { listen: ':1', targets: ['127.0.0.1:1'], maxBodySize: 1024, via: 'edge' }, 'names aside, this is the flat form')
  t.ok(isDeepStrictEqual(buildModel(plain as Options).http, buildModel({ listen: ':1', targets: ['127.0.0.1:1'], via: 'edge' }).http))
})
