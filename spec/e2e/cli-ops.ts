/**
 * The rp4 command's operations, run from the build (`npm test` builds first): the access log to
 * a file and its reopening on SIGUSR1, the drain on SIGTERM and a second signal, the admin
 * endpoint, and reloading a file on SIGHUP and with rp4 reload.
 */
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { RawClient, exchange } from '../helpers/client.js'
import { run } from '../helpers/cli.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { checkBuilt } from '../helpers/proxy.js'
import { poll } from '../helpers/wait.js'

t.test('SIGTERM drains for --drain-timeout, then cuts what is left (exit 0); a second SIGTERM exits at once (130)', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ({ bytes: ok('late'), delay: 30_000 }))
  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--drain-timeout', '300ms'])
  const { port } = await r.listening()
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n')
  await origin.until(() => origin.requests.length === 1, 5000, 'the request at the origin')
  r.child.kill('SIGTERM')
  await r.finished()
  t.equal(r.exit, 0)
  t.match(r.stderr, /rp4: SIGTERM: draining: not accepting, waiting up to 0\.3s for requests in flight \(a second SIGTERM exits at once\)\nrp4: client 127\.0\.0\.1:\d+: drain_timeout: closed by rp4 with a request in flight: the drain time \(drainTimeout\) ran out\nrp4: 1 connection still open after 0\.3s \(drainTimeout\): closed\n/)

  const second = run(t, ['listen', '127.0.0.1:0', '--to', origin.target])
  const address = await second.listening()
  const held = await RawClient.connect(address.port)
  t.teardown(() => held.destroy())
  await held.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n')
  await origin.until(() => origin.requests.length === 2, 5000, 'the second request at the origin')
  second.child.kill('SIGTERM')
  await second.until(() => second.stderr.includes('draining'), 5000, 'the drain to begin')
  second.child.kill('SIGTERM')
  await second.finished(3000)
  t.equal(second.exit, 130, 'the second signal: exit 130 without waiting the 10s drain')
})


t.test('--admin PORT: loopback; /readyz, /metrics with --admin-token-file; POST /drain ends the process with exit 0', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok())
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const tokenFile = path.join(dir, 'token')
  writeFileSync(tokenFile, 'sixteen-chars-or-more\n')
  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--admin', '0', '--admin-token-file', tokenFile])
  await r.listening()
  const m = /; admin endpoint on 127\.0\.0\.1:(\d+)\n/.exec(r.stderr)
  t.ok(m !== null, `the startup line names the admin endpoint on 127.0.0.1 (${r.stderr})`)
  const admin = Number(m?.[1])
  const ask = async (request: string): Promise<string> => (await exchange(admin, request, { responses: 1 })).responses[0]?.raw.toString('latin1') ?? ''
  t.match(await ask('GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nready\n$/)
  t.match(await ask('GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 401 /)
  t.match(await ask('GET /metrics HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer sixteen-chars-or-more\r\nConnection: close\r\n\r\n'), /\nrp4_ready 1\n/)
  t.match(await ask('POST /drain HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer sixteen-chars-or-more\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 202 /)
  await r.finished()
  t.equal(r.exit, 0)
})


t.test('rp4 run FILE: SIGHUP and rp4 reload read FILE again; a bad file keeps the running configuration and says why', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok())
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'rp4.yaml')
  const config = (body: string): string => `listeners:\n  - listen: 127.0.0.1:0\nroutes:\n  - match: { pathExact: /v }\n    respond: { body: ${body} }\n  - proxy: web\nupstreams:\n  web: { targets: ["${origin.target}"] }\nadmin:\n  listen: 0\n`
  writeFileSync(file, config('one'))
  const r = run(t, ['run', file])
  const { port } = await r.listening()
  const admin = Number(/admin endpoint on 127\.0\.0\.1:(\d+)/.exec(r.stderr)?.[1])
  const body = async (): Promise<string> => (await exchange(port, 'GET /v HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n', { responses: 1 })).responses[0]?.body.toString() ?? ''
  t.equal(await body(), 'one')

  writeFileSync(file, config('two'))
  r.child.kill('SIGHUP')
  await r.until(() => r.stderr.includes(`rp4: ${file} reloaded\n`), 5000, 'the reload line')
  t.equal(await body(), 'two', 'SIGHUP: the new file serves')

  writeFileSync(file, config('three').replace('proxy: web', 'proxy: nowhere'))
  r.child.kill('SIGHUP')
  await r.until(() => /not reloaded[^]*proxy/.test(r.stderr), 5000, 'the refusal and its problem')
  t.match(r.stderr, new RegExp(`rp4: ${file} not reloaded, the running configuration stays:\nrp4: {3}${file}:6:12: routes\\[1\\]\\.proxy`))
  t.equal(await body(), 'two', 'the running configuration stayed')

  writeFileSync(file, config('four'))
  const reload = await run(t, ['reload', String(admin)]).finished()
  t.same([reload.exit, reload.stdout], [0, 'reloaded\n'], 'rp4 reload PORT')
  t.equal(await body(), 'four')
  writeFileSync(file, 'listeners: [')
  const refused = await run(t, ['reload', String(admin)]).finished()
  t.equal(refused.exit, 1)
  t.match(refused.stderr, /^not reloaded, the running configuration stays:\n/)
  r.child.kill('SIGTERM')
  await r.finished()
  t.equal(r.exit, 0)
})


t.test('--access-log FILE --log-format json; SIGUSR1 reopens the file after logrotate moved it', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok())
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'access.log')
  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--access-log', file, '--log-format', 'json'])
  const { port } = await r.listening()
  const read = (name: string): string => { try { return readFileSync(name, 'utf8') } catch { return '' } }
  await exchange(port, 'GET /before HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  // the file is written asynchronously and no event says when: looked at again until the line is there (bounded)
  await poll(() => read(file).includes('/before'), 'the first line')
  t.match(read(file), /"url":"\/before"/)
  renameSync(file, file + '.1')
  r.child.kill('SIGUSR1')
  await poll(() => existsSync(file), 'SIGUSR1 to create the file again')
  await exchange(port, 'GET /after HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  await poll(() => read(file).includes('/after'), 'the line after the reopen')
  t.match(read(file), /^\{"time":"[^"]+","type":"http".*"url":"\/after"/, 'the new file has the new line')
  t.notMatch(read(file + '.1'), /\/after/, 'the moved file does not')
  r.child.kill('SIGTERM')
  await r.finished()
  t.equal(r.exit, 0)
})
