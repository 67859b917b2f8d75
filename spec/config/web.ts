/**
 * The web acceleration keys in the configuration: compress and static in both forms, the CLI
 * flags that set them, and the problems a hurried operator gets named.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { buildModel } from '../../lib/config/build.js'
import { flagsToOptions, parseCommandLine } from '../../lib/config/flags.js'
import type { ConfigError } from '../../lib/config/problems.js'

function flags (...argv: string[]): unknown {
  const line = parseCommandLine(argv)
  return flagsToOptions(line.positionals[1], line)
}

t.test('compress: true gives the defaults; a mapping overrides them', async t => {
  const on = buildModel({ listen: ':0', targets: ['a:1'], compress: true }).routes[0].compress!
  t.same(on.encodings, ['br', 'gzip'])
  t.ok(on.types.includes('text/*') && on.types.includes('application/json') && on.types.includes('application/wasm') && on.types.includes('image/svg+xml'))
  t.equal(on.minSize, 1024)
  t.equal(on.gzipLevel, 3)
  t.equal(on.brotliLevel, 4)
  t.equal(buildModel({ listen: ':0', targets: ['a:1'], compress: false }).routes[0].compress, null)
  t.equal(buildModel({ listen: ':0', targets: ['a:1'] }).routes[0].compress, null, 'off by default')
  const set = buildModel({
    listeners: [{ listen: ':0' }],
    routes: [{ proxy: 'app', compress: { encodings: ['gzip'], minSize: '2k', gzipLevel: 9, types: ['text/html'] } }],
    upstreams: { app: { targets: ['a:1'] } },
  }).routes[0].compress!
  t.same(set, { encodings: ['gzip'], types: ['text/html'], minSize: 2048, gzipLevel: 9, brotliLevel: 4 })
})

t.test('static: a directory, with the targets as fallback, or alone', async t => {
  const base = mkdtempSync(path.join(tmpdir(), 'rp4-web-'))
  t.teardown(() => rmSync(base, { recursive: true, force: true }))
  const www = path.join(base, 'www')
  const assets = path.join(base, 'assets')
  mkdirSync(www)
  mkdirSync(assets)
  const both = buildModel({ listen: ':0', targets: ['a:1'], static: www })
  const action = both.routes[0].action
  t.equal(action.kind, 'static')
  if (action.kind !== 'static') return
  t.equal(action.root, www)
  t.equal(action.fallback, 'default', 'a missing file goes to the targets')
  t.same(action.index, ['index.html'])
  t.equal(action.listing, false, 'no listing by default')
  t.equal(action.hidden, false, 'hidden files refused by default')
  t.equal(action.followSymlinks, false)
  t.equal(action.revalidate, 1000, 'what is learned of a path is used for 1 s')
  t.equal(action.memoryCache, 32 * 1024 * 1024)
  t.equal(action.memoryFileSize, 1024 * 1024, 'files up to 1 MiB kept in memory')
  t.ok(both.upstreams.has('default'))
  const alone = buildModel({ listen: ':0', static: { root: www, listing: true } })
  const a2 = alone.routes[0].action
  t.equal(a2.kind === 'static' && a2.fallback, null, 'no targets: 404 for what is missing')
  t.equal(a2.kind === 'static' && a2.listing, true)
  t.equal(alone.upstreams.size, 0, 'no empty group')
  const full = buildModel({
    listeners: [{ listen: ':0' }],
    routes: [{ match: { path: '/assets' }, static: { root: assets, fallback: 'app', cacheControl: 'public, max-age=31536000, immutable' } }, { proxy: 'app' }],
    upstreams: { app: { targets: ['a:1'] } },
  })
  const a3 = full.routes[0].action
  t.equal(a3.kind === 'static' && a3.cacheControl, 'public, max-age=31536000, immutable')
  t.equal(a3.kind === 'static' && a3.fallback, 'app')
  const tuned = buildModel({ listen: ':0', static: { root: www, revalidate: '250ms', memoryCache: '1m', memoryFileSize: 0 } }).routes[0].action
  t.same(tuned.kind === 'static' && [tuned.revalidate, tuned.memoryCache, tuned.memoryFileSize], [250, 1 << 20, 0])
  const every = buildModel({ listen: ':0', static: { root: www, revalidate: 0 } }).routes[0].action
  t.equal(every.kind === 'static' && every.revalidate, 0, '0: the file system asked on every request')
})

t.test('problems, named as written', async t => {
  const err = (options: unknown): string[] => (t.throws(() => buildModel(options as never)) as ConfigError).lines as string[]
  // a files root that is not there would answer every request with 404: said at once
  t.same(err({ listen: ':0', static: '/nonexistent/rp4-www' }), ['option static.root: cannot read the directory "/nonexistent/rp4-www": ENOENT'])
  t.same(err({ listeners: [{ listen: ':0' }], routes: [{ static: { root: '/etc/hostname' } }] }), ['option routes[0].static.root: "/etc/hostname" is not a directory'])
  t.same(err({ listen: ':0', targets: ['a:1'], compress: 'yes' }), ['option compress: must be true, false, or a mapping { encodings, types, minSize, gzipLevel, brotliLevel }, got "yes"'])
  t.same(err({ listen: ':0', targets: ['a:1'], compress: { gzipLevel: 10 } }), ['option compress.gzipLevel: 10: at most 9'])
  t.same(err({ listen: ':0', targets: ['a:1'], compress: { encodings: ['zstd'] } }), ['option compress.encodings[0]: must be one of br, gzip, got "zstd"'])
  t.same(err({ listen: ':0', targets: ['a:1'], compress: { minSize: '1x' } }).length, 1)
  t.same(err({ listeners: [{ listen: ':0' }], routes: [{ static: { root: '/x', fallback: 'nope' } }] }).length, 1)
  t.match(err({ listeners: [{ listen: ':0' }], routes: [{ static: { root: '/x', fallback: 'nope' } }] })[0], /^option routes\[0\]\.static\.fallback: /)
  t.match(err({ listeners: [{ listen: ':0' }], routes: [{ static: { root: '/x' }, proxy: 'a' }], upstreams: { a: { targets: ['a:1'] } } })[0], /a second action beside/)
  t.match(err({ listeners: [{ listen: ':0' }], routes: [{ static: { index: ['i.html'] } }] })[0], /static/)
  t.match(err({ listen: ':0', static: { root: '/x', revalidate: 'soon' } })[0], /^option static\.revalidate: soon: not a duration/)
  t.match(err({ listen: ':0', static: { root: '/x', revalidate: '2h' } })[0], /^option static\.revalidate: /)
  t.match(err({ listen: ':0', static: { root: '/x', memoryCache: '1k' } })[0], /^option static\.memoryCache: /)
  t.match(err({ listen: ':0', static: { root: '/x', memoryFileSize: '2g' } })[0], /^option static\.memoryFileSize: /)
  t.match(err({ listen: ':0' })[0], /targets/, 'neither targets nor static: still asks for the backend')
})

t.test('CLI: --compress and --static map onto the same keys', async t => {
  t.same(flags('listen', ':8080', '--to', '127.0.0.1:3000', '--compress'), { listen: ':8080', targets: ['127.0.0.1:3000'], compress: true })
  t.same(flags('listen', ':8080', '--static', './public'), { listen: ':8080', static: './public' })
  const model = buildModel(flags('listen', ':8080', '--static', tmpdir(), '--to', 'a:1', '--compress') as never)
  t.equal(model.routes[0].action.kind, 'static')
  t.ok(model.routes[0].compress !== null)
})

t.test('examples/web.yaml loads, and says what the README says', async t => {
  const { loadConfig } = await import('../../lib/config/load.js')
  const path = await import('node:path')
  const { ROOT } = await import('../helpers/proxy.js')
  const { model } = loadConfig(path.join(ROOT, 'examples/web.yaml'))
  const [assets, app] = model.routes
  t.equal(assets.action.kind, 'static')
  if (assets.action.kind === 'static') {
    t.equal(assets.action.root, path.join(ROOT, 'examples/public'), 'root relative to the file')
    t.equal(assets.action.fallback, 'app')
  }
  t.equal(assets.compress?.gzipLevel, 3, 'compress: true takes the default level')
  t.equal(app.compress?.minSize, 512)
})

t.test('cache: --cache SIZE, true, or the settings', async t => {
  t.same(flags('listen', ':8080', '--to', 'a:1', '--cache', '256MB'), { listen: ':8080', targets: ['a:1'], cache: { size: 268435456 } })
  const model = buildModel(flags('listen', ':8080', '--to', 'a:1', '--cache', '256MB') as never)
  t.same(model.routes[0].cache, { size: 268435456, maxEntrySize: 16 << 20, staleWhileRevalidate: 0, staleIfError: 0, dir: null })
  t.equal(buildModel({ listen: ':0', targets: ['a:1'], cache: true }).routes[0].cache?.size, 256 << 20)
  t.equal(buildModel({ listen: ':0', targets: ['a:1'] }).routes[0].cache, null, 'off by default')
  const full = buildModel({ listeners: [{ listen: ':0' }], routes: [{ proxy: 'a', cache: { size: '1m', staleIfError: '10m', staleWhileRevalidate: '30s' } }], upstreams: { a: { targets: ['a:1'] } } })
  t.same(full.routes[0].cache, { size: 1 << 20, maxEntrySize: 16 << 20, staleWhileRevalidate: 30_000, staleIfError: 600_000, dir: null })
  const line = parseCommandLine(['listen', ':0', '--to', 'a:1', '--cache', 'lots'])
  t.throws(() => flagsToOptions(':0', line), { message: /--cache lots: / })
  t.throws(() => buildModel({ listen: ':0', targets: ['a:1'], cache: { size: '1k' } }), { message: 'option cache.size: 1k: at least 64k' })
  t.throws(() => buildModel({ listen: ':0', targets: ['a:1'], cache: { sise: '1m' } }), { message: /option cache.sise: unknown key \(did you mean size\?\)/ })
})

t.test('--cache-dir: the disk store, with the default size when --cache is not given', async t => {
  const model = buildModel(flags('listen', ':8080', '--to', 'a:1', '--cache-dir', '/var/cache/rp4') as never)
  t.same(model.routes[0].cache, { size: 256 << 20, maxEntrySize: 16 << 20, staleWhileRevalidate: 0, staleIfError: 0, dir: '/var/cache/rp4' })
  const both = buildModel(flags('listen', ':8080', '--to', 'a:1', '--cache', '64m', '--cache-dir', '/var/cache/rp4') as never)
  t.equal(both.routes[0].cache?.size, 64 << 20)
})
