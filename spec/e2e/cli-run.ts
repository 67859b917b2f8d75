/**
 * The rp4 command from the build, part 2 (spec/e2e/cli.ts ran past its time budget on a loaded
 * machine): runtime failures on stderr, configuration files (rp4 config, check, run), and --help
 * against the README.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { RawClient, exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { ROOT, checkBuilt } from '../helpers/proxy.js'
import { run } from '../helpers/cli.js'


t.test('a listen address already in use: one line naming it and the reason, exit 1 (a runtime failure)', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok())
  const r = run(t, ['listen', `127.0.0.1:${origin.port}`, '--to', origin.target])
  await r.finished()
  t.equal(r.exit, 1)
  t.equal(r.stderr, `rp4: cannot listen on 127.0.0.1:${origin.port}: address already in use (EADDRINUSE)\n`)
})

t.test('an access file reload that fails: one line of its own, no client prefix', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'access')
  writeFileSync(file, 'deny 10.0.0.0/8\n')
  const r = run(t, ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--access-file', file])
  await r.listening()
  // another size, so that the change shows even where the modification time is coarse
  writeFileSync(file, 'deny 10.0.0.0/8\nallow what\n')
  await r.until(() => r.stderr.includes('not reloaded'), 10_000, 'the reload failure on stderr')
  const lines = r.stderr.split('\n').filter(line => line !== '' && !line.includes('listening on'))
  t.same(lines, [`rp4: access file not reloaded, the previous lists stay: "${file}" line 2: "what" is not an IP address or CIDR range (e.g. 10.0.0.0/8, 2001:db8::/32)`])
})

t.test('--access-log: a refused request is logged as the client sent it (combined, on stderr)', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok())
  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--access-log'])
  const { port } = await r.listening()
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(`DELETE /${'a'.repeat(9000)} HTTP/1.1\r\nHost: h\r\n\r\n`)
  await client.waitResponses(1)
  const local = `127.0.0.1:${client.socket.localPort}`
  await r.until(() => r.stderr.includes(`client=${local} `), 5000, 'the access log line')
  t.match(r.stderr, new RegExp(`^127\\.0\\.0\\.1 - - \\[[^\\]]+\\] "DELETE /a{255}\\.\\.\\. HTTP/1\\.1" 414 \\d+ "-" "-" client=${local} route=- target=- in=0 time=\\d+\\.\\d connect=- first_byte=- retries=0 cache=- tls=- sni=-\n`, 'm'))
})

t.test('rp4 config --from-flags → a file; rp4 check accepts it; rp4 run serves what the command line did', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok('from a file'))
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const printed = await run(t, ['config', '--from-flags', '127.0.0.1:0', '--to', origin.target, '--timeout', '5s']).finished()
  t.equal(printed.exit, 0, printed.stderr)
  t.match(printed.stdout, /^# rp4 config --from-flags 127\.0\.0\.1:0 --to \S+ --timeout 5s\n\nlisteners:\n {2}- name: default\n {4}listen: 127\.0\.0\.1:0\n/)
  t.match(printed.stdout, /\n {6}response: 5s\n/)
  const file = path.join(dir, 'rp4.yaml')
  writeFileSync(file, printed.stdout)

  const checked = await run(t, ['check', file]).finished()
  t.equal(checked.exit, 0, checked.stderr)
  t.equal(checked.stdout, `${file}: ok: 1 listener, 1 route, 1 upstream group\n`)

  const r = run(t, ['run', file])
  const { port } = await r.listening()
  const res = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(res.responses[0]?.body.toString(), 'from a file')
  r.child.kill('SIGTERM')
  await r.finished()
  t.equal(r.exit, 0)
})

t.test('rp4 run: a flat file with units; option flags beside a file are refused', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, req => req.url === '/slow' ? { bytes: ok('late'), delay: 1000 } : ok('flat'))
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'flat.yaml')
  writeFileSync(file, `listen: "127.0.0.1:0"\ntargets: ["${origin.target}"]\ntimeouts: { response: 200ms }\n`)
  const r = run(t, ['run', file])
  const { port } = await r.listening()
  t.equal((await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })).responses[0]?.body.toString(), 'flat')
  const slow = await exchange(port, 'GET /slow HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(slow.responses[0]?.head.line[1], '504', 'timeouts.response: 200ms reached the runtime as 200')
  r.child.kill('SIGTERM')
  await r.finished()

  const flags = await run(t, ['run', file, '--timeout', '5s', '--tcp']).finished()
  t.equal(flags.exit, 2)
  t.equal(flags.stderr, 'rp4: rp4 run takes its options from the file: --tcp, --timeout do not apply (write it in the file)\nTry "rp4 --help".\n')
})

t.test('rp4 check and rp4 run on files with problems: every one as FILE:LINE:COL, exit 2', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const bad = path.join(dir, 'bad.yaml')
  writeFileSync(bad, 'listeners:\n  - listen: ":0"\n    protocl: auto\nroutes:\n  - proxy: nosuch\nupstreams:\n  web: { targets: ["127.0.0.1:1"], timeouts: { connect: 25h } }\n')
  const lines = [
    `${bad}:3:5: listeners[0].protocl: unknown key (did you mean protocol?)`,
    `${bad}:5:12: routes[0].proxy: no upstream named "nosuch" (upstreams: web)`,
    `${bad}:7:57: upstreams.web.timeouts.connect: 25h: at most 24h`,
  ]
  const checked = await run(t, ['check', bad]).finished()
  t.equal(checked.exit, 2)
  t.equal(checked.stdout, '')
  t.equal(checked.stderr, lines.join('\n') + `\nrp4: ${bad}: 3 problems\n`)
  const ran = await run(t, ['run', bad]).finished()
  t.equal(ran.exit, 2)
  t.equal(ran.stderr, lines.join('\n') + '\n')

  const missing = await run(t, ['check', path.join(dir, 'nope.yaml')]).finished()
  t.equal(missing.exit, 2)
  t.equal(missing.stderr, `${path.join(dir, 'nope.yaml')}: cannot read it (ENOENT)\nrp4: ${path.join(dir, 'nope.yaml')}: 1 problem\n`)

})

t.test('rp4 run: a full-form file with two listeners and routes by path', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const api = await startOrigin(t, () => ok('api'))
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'full.yaml')
  writeFileSync(file, `listeners:
  - { name: one, listen: "127.0.0.1:0" }
  - { name: two, listen: "127.0.0.1:0", routes: [health] }
routes:
  - { name: health, match: { pathExact: /healthz }, respond: { body: "ok\\n" } }
  - { name: api, match: { path: /api }, proxy: api }
upstreams:
  api: { targets: ["${api.target}"] }
`)
  const checked = await run(t, ['check', file]).finished()
  t.equal(checked.exit, 0, checked.stderr)
  t.equal(checked.stdout, `${file}: ok: 2 listeners, 2 routes, 1 upstream group\n`)
  const r = run(t, ['run', file])
  await r.until(() => /listening on/.test(r.stderr) || r.done, 10_000, 'the startup line')
  const m = /listening on 127\.0\.0\.1:(\d+) \(one\), 127\.0\.0\.1:(\d+) \(two\)\n/.exec(r.stderr)
  t.ok(m !== null, r.stderr)
  const [one, two] = [Number(m?.[1]), Number(m?.[2])]
  t.equal((await exchange(one, 'GET /api/x HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })).responses[0]?.body.toString(), 'api')
  t.equal((await exchange(one, 'GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })).responses[0]?.body.toString(), 'ok\n')
  t.equal((await exchange(two, 'GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })).responses[0]?.body.toString(), 'ok\n')
  t.equal((await exchange(two, 'GET /api/x HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })).responses[0]?.head.line[1], '404', 'not a route of this listener')
  r.child.kill('SIGTERM')
  await r.finished()
  t.equal(r.exit, 0)
})

t.test('rp4 --help lists every flag the README lists', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const help = (await run(t, ['--help']).finished()).stdout
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const table = readme.slice(readme.indexOf('<!-- rp4:flags:begin'), readme.indexOf('<!-- rp4:flags:end'))
  const flags = [...table.matchAll(/^\| `(-[^`]+)`/gm)].map(m => m[1])
  t.ok(flags.length > 40, `${flags.length} flags in the README`)
  for (const flag of flags) t.match(help, flag)
})
