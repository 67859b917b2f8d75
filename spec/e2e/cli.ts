/**
 * The rp4 command, run from the build (`npm test` builds first): help and version, a proxy that
 * starts and forwards, errors that name what is wrong, and a graceful exit on SIGTERM / SIGINT.
 */
import { readFileSync } from 'node:fs'
import t from 'tap'
import { RawClient, exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { checkBuilt, hasIPv6 } from '../helpers/proxy.js'
import { VERSION, run } from '../helpers/cli.js'
import { connectRaw, startTcpBackend } from '../helpers/tls-backends.js'
import { undated } from '../helpers/dates.js'

t.test('--help: usage on stdout, exit 0', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const r = await run(t, ['--help']).finished()
  t.equal(r.exit, 0)
  t.match(r.stdout, /listen \[HOST\]:PORT --to HOST:PORT/)
  t.match(r.stdout, /--to/)
  for (const flag of ['--intercept-errors', '--backend-error-pages', '--allow-underscores-in-headers', '--max-connections-per-ip']) t.match(r.stdout, flag)
  t.match(r.stdout, /Exit status:\n  0 [^]*\n  1 +a runtime failure[^]*\n  2 +a usage or configuration error/, 'the exit codes')
})

t.test('--version: the package version, exit 0', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const r = await run(t, ['--version']).finished()
  t.equal(r.exit, 0)
  t.equal(r.stdout.trim(), VERSION)
})

t.test('listen and forward; SIGTERM: a request in flight finishes, exit 0', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, req => req.url === '/slow' ? { bytes: ok('slow done'), delay: 300 } : ok('via cli'))
  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target])
  const { host, port } = await r.listening()
  t.equal(host, '127.0.0.1')
  const res = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(res.responses[0]?.body.toString(), 'via cli')
  t.equal(origin.requests[0]?.raw.toString('latin1').includes('\r\nVia: 1.1 rp4\r\n'), true)

  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write('GET /slow HTTP/1.1\r\nHost: h\r\n\r\n')
  await origin.until(() => origin.requests.some(q => q.url === '/slow'), 5000, '/slow at the origin')
  r.child.kill('SIGTERM')
  const slow = await client.response(0)
  t.equal(slow.body.toString(), 'slow done', 'the request in flight was answered')
  await r.finished()
  t.equal(r.exit, 0, `exit 0 (stderr: ${r.stderr})`)
})

t.test('SIGINT: graceful exit 0', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok())
  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target])
  await r.listening()
  r.child.kill('SIGINT')
  await r.finished()
  t.equal(r.exit, 0)
})

t.test('listen :0 accepts IPv4 and IPv6; several --to are balanced', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const a = await startOrigin(t, () => ok('A'))
  const b = await startOrigin(t, () => ok('B'))
  const r = run(t, ['listen', ':0', '--to', a.target, '--to', b.target])
  const { port } = await r.listening()
  const bodies: string[] = []
  for (let i = 0; i < 2; i++) bodies.push((await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })).responses[0]?.body.toString() ?? '?')
  t.same(bodies.sort(), ['A', 'B'])
  if (await hasIPv6()) {
    const v6 = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { host: '::1', responses: 1 })
    t.equal(v6.responses[0]?.head.line[1], '200', 'reachable over IPv6')
  }
  r.child.kill('SIGTERM')
  await r.finished()
  t.equal(r.exit, 0)
})

/** The serving process under a launcher's PID, from /proc: its argv, environment, and the environment's bytes. */
function servingProcess (launcher: number): { pid: number, argv: string[], env: Map<string, string>, rawEnv: string } | null {
  const children = readFileSync(`/proc/${launcher}/task/${launcher}/children`, 'utf8').trim()
  if (children === '') return null
  const pid = Number(children.split(' ')[0])
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter(a => a !== '')
  const rawEnv = readFileSync(`/proc/${pid}/environ`, 'latin1')
  const env = new Map(rawEnv.split('\0').filter(e => e !== '').map(e => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)] as [string, string]))
  return { pid, argv, env, rawEnv }
}

t.test('listen serves from a child with the heap flags and malloc tunables; the user\'s own are kept; RP4_NO_HEAP_FLAG serves in-process', { skip: process.platform !== 'linux' && 'reads /proc' }, async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok('served'))
  const cases: Array<[string, NodeJS.ProcessEnv, string | null]> = [
    ['default', {}, 'glibc.malloc.arena_max=1'],
    ['GLIBC_TUNABLES of the user', { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }, 'glibc.malloc.arena_max=2'],
    ['RP4_NO_HEAP_FLAG=1', { RP4_NO_HEAP_FLAG: '1' }, null],
  ]
  for (const [name, extra, tunables] of cases) {
    const env = { ...process.env, ...extra }
    delete env.GLIBC_TUNABLES
    Object.assign(env, extra)
    const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--workers', '1'], undefined, env)
    const { port } = await r.listening()
    const res = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
    t.equal(res.responses[0]?.body.toString(), 'served', `${name}: serves`)
    const serving = servingProcess(r.child.pid!)
    if (tunables === null) {
      t.equal(serving, null, `${name}: no child process`)
    } else {
      t.not(serving, null, `${name}: a child serves`)
      t.ok(serving?.argv.includes('--initial-heap-size=128'), `${name}: the heap flag (${serving?.argv.join(' ')})`)
      t.ok(serving?.argv.includes('--max-semi-space-size=8'), `${name}: the young generation's cap (${serving?.argv.join(' ')})`)
      // glibc ends each tunable it reads with a NUL written over the `:` in the process's own copy
      // of its environment, which is what /proc shows: the value is found with those NULs
      t.ok(('\0' + (serving?.rawEnv ?? '')).includes('\0GLIBC_TUNABLES=' + tunables.replaceAll(':', '\0') + '\0'), `${name}: GLIBC_TUNABLES=${tunables}`)
    }
    r.child.kill('SIGTERM')
    await r.finished()
    t.equal(r.exit, 0, `${name}: exit 0`)
  }
})

const BAD: Array<[string, string[], string]> = [
  ['unknown flag', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--bogus'], '--bogus'],
  ['bad listen port', ['listen', '127.0.0.1:99999', '--to', '127.0.0.1:1'], '99999'],
  ['listen port not a number', ['listen', '127.0.0.1:http', '--to', '127.0.0.1:1'], 'http'],
  ['bad listen address', ['listen', 'not_a host!:80', '--to', '127.0.0.1:1'], 'not_a host!'],
  ['bad target', ['listen', '127.0.0.1:0', '--to', 'bad_host!:80'], 'bad_host!'],
  ['target without port', ['listen', '127.0.0.1:0', '--to', '127.0.0.1'], '127.0.0.1'],
  ['target port 0', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:0'], '127.0.0.1:0'],
  ['IPv6 target without brackets', ['listen', '127.0.0.1:0', '--to', '::1:80'], '::1:80'],
  ['missing --to', ['listen', '127.0.0.1:0'], '--to'],
  ['bad duration', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--timeout', 'soon'], 'soon'],
  ['bad --allow range', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--allow', '10.0.0.0/40'], '--allow: "10.0.0.0/40"'],
  ['bad --deny address', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--deny', 'nope'], '--deny: "nope"'],
  ['missing --access-file', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--access-file', '/nonexistent/rp4-access'], '--access-file: cannot read "/nonexistent/rp4-access"'],
  ['missing --cert', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--cert', '/nonexistent/c.pem', '--key', '/nonexistent/k.pem'], '--cert: cannot read "/nonexistent/c.pem"'],
  ['missing --ca', ['listen', '127.0.0.1:0', '--to', 'https://127.0.0.1:1', '--ca', '/nonexistent/ca.pem'], '--ca: cannot read "/nonexistent/ca.pem"'],
  ['--tcp-idle-timeout over its range', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--tcp-idle-timeout', '25h'], '--tcp-idle-timeout 25h: at most 24h'],
  ['a size without a known unit', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--max-body-size', '1x'], '--max-body-size 1x: not a size'],
  ['bad --max-connections-per-ip', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--max-connections-per-ip', 'few'], '--max-connections-per-ip'],
  ['--max-connections 0', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--max-connections', '0'], '--max-connections'],
  ['--intercept-errors with --backend-error-pages', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--intercept-errors', '--backend-error-pages'], '--intercept-errors and --backend-error-pages contradict each other'],
  ['bad --max-connections', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--max-connections', 'many'], '--max-connections'],
  ['bad --tcp-to', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--tcp-to', 'nowhere'], '--tcp-to'],
  ['--tcp-to and --no-tcp-fallback', ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--tcp-to', '127.0.0.1:2', '--no-tcp-fallback'], '--tcp-to and --no-tcp-fallback'],
]

t.test('protocols other than HTTP: closed by default (--no-tcp-fallback says so too), relayed with --tcp-to', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok('http'))
  const ssh = await startTcpBackend(t, conn => conn.socket.write('SSH-2.0-test\r\n'))
  for (const flags of [[], ['--no-tcp-fallback']]) {
    const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--detect-timeout', '50ms', ...flags])
    const { port } = await r.listening()
    t.notMatch(r.stderr, /other protocols/, `${flags.join(' ') || 'no flag'}: no fallback on the startup line`)
    // a PostgreSQL SSLRequest: binary from its first byte
    const other = await exchange(port, Buffer.from([0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f]))
    t.equal(other.raw.length, 0, `${flags.join(' ') || 'no flag'}: closed`)
    await r.until(() => r.stderr.includes('unknown_protocol'), 5000, 'the refusal on stderr')
    const http = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
    t.equal(http.responses[0]?.body.toString(), 'http')
    r.child.kill('SIGTERM')
    await r.finished()
  }
  t.equal(ssh.conns.length, 0, 'nothing relayed without --tcp-to')

  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--tcp-to', ssh.target, '--detect-timeout', '50ms'])
  const { port } = await r.listening()
  t.match(r.stderr, `other protocols relayed to ${ssh.target}`)
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  await client.watch.until(() => client.conn.data.length > 0, 5000, 'the server-first greeting through the fallback')
  t.equal(client.conn.data.toString(), 'SSH-2.0-test\r\n')
  const http = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(http.responses[0]?.body.toString(), 'http', 'HTTP still proxied')
})

t.test('--deny and --max-connections-per-ip: a refused connection is closed and logged', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok())
  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--deny', '127.0.0.3', '--allow', '127.0.0.0/8', '--max-connections-per-ip', '1', '--max-connections', '5'])
  const { port } = await r.listening()
  const refused = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { localAddress: '127.0.0.3' })
  t.equal(refused.raw.length, 0, 'the denied client gets nothing')
  await r.until(() => r.stderr.includes('access_denied'), 5000, 'the refusal on stderr')
  t.match(r.stderr, /client 127\.0\.0\.3:\d+: access_denied/)
  const held = await RawClient.connect(port, { localAddress: '127.0.0.2' })
  t.teardown(() => held.destroy())
  await held.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n')
  await held.waitResponses(1)
  const second = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { localAddress: '127.0.0.2' })
  t.equal(second.raw.length, 0, 'a second connection from the same client is closed')
  await r.until(() => r.stderr.includes('too_many_connections'), 5000, 'the cap on stderr')
})

t.test('--max-connections over what the open-file limit allows: lowered, and the startup line says so', { skip: process.platform === 'linux' ? false : 'the open-file limit is read on Linux only' }, async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok())
  // 1000 descriptors: 64 kept aside, two per connection
  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--max-connections', '5000'], 1000)
  await r.listening()
  t.match(r.stderr, /listening on 127\.0\.0\.1:\d+, forwarding to 127\.0\.0\.1:\d+; --max-connections 5000 limited to 468 by the open-file limit \(ulimit -n 1000\)\n/)
  const fits = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--max-connections', '468'], 1000)
  await fits.listening()
  t.notMatch(fits.stderr, /limited/, 'nothing to say when it fits')
})

t.test('--intercept-errors, --backend-error-pages, --allow-underscores-in-headers', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, req => req.url === '/busy'
    ? 'HTTP/1.1 503 Busy\r\nRetry-After: 5\r\nContent-Length: 4\r\n\r\nbusy'
    : ok(req.raw.toString('latin1').includes('X_Team: a') ? 'underscore passed' : 'underscore dropped'))
  const request = 'GET /busy HTTP/1.1\r\nHost: h\r\n\r\nGET /u HTTP/1.1\r\nHost: h\r\nX_Team: a\r\n\r\n'
  const answers: Record<string, string[]> = {}
  for (const flags of [[], ['--backend-error-pages'], ['--intercept-errors', '--allow-underscores-in-headers']]) {
    const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, ...flags])
    const { port } = await r.listening()
    const res = await exchange(port, request, { responses: 2 })
    answers[flags.join(' ') || 'defaults'] = res.responses.map(m => m.raw.toString('latin1'))
  }
  const passed = 'HTTP/1.1 503 Busy\r\nRetry-After: 5\r\nContent-Length: 4\r\nVia: 1.1 rp4\r\n\r\nbusy'
  t.equal(answers.defaults[0], passed, 'by default the backend\'s 503 passes')
  t.match(answers.defaults[1], /underscore dropped$/)
  t.same(answers['--backend-error-pages'], answers.defaults, '--backend-error-pages says what the default does')
  t.equal(undated(answers['--intercept-errors --allow-underscores-in-headers'][0]),
    'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\n\r\n503 Service Unavailable\n', 'rp4\'s page')
  t.match(answers['--intercept-errors --allow-underscores-in-headers'][1], /underscore passed$/)
})

t.test('bad arguments: a message naming the problem, exit 2, nothing listening', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  // a few at a time: each `listen` is two Node processes (the launcher and the proxy), and a
  // loaded 2-core machine starts two dozen of them slowly
  for (let i = 0; i < BAD.length; i += 6) {
    const runs = BAD.slice(i, i + 6).map(([name, args, named]) => ({ name, named, r: run(t, args) }))
    for (const { name, named, r } of runs) {
      await r.finished(20_000)
      t.equal(r.exit, 2, `${name}: exit 2`)
      t.ok(r.stderr.includes(named), `${name}: stderr names ${JSON.stringify(named)}: ${JSON.stringify(r.stderr)}`)
      t.notMatch(r.stderr, /listening on/, `${name}: did not start`)
    }
  }
})
