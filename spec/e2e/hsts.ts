/**
 * Strict-Transport-Security: off by default; per listener (tls.hsts, --hsts) on every response
 * over TLS (the backend's, rp4's own answers and errors), never over cleartext; per route instead
 * of the listener's; a backend's own header kept as it is; preload's requirements checked.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import tls from 'node:tls'
import { promisify } from 'node:util'
import { buildModel } from '../../lib/config/build.js'
import { flagsToOptions, parseCommandLine } from '../../lib/config/flags.js'
import { ConfigError } from '../../lib/config/problems.js'
import { exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import { makeCertificates } from '../helpers/tls-certs.js'
import { within } from '../helpers/wait.js'

const run = promisify(execFile)
const certs = await makeCertificates(t)
const a = await certs.issue('a', ['a.test'])
const ca = readFileSync(certs.ca.cert)

/** One request over TLS with Connection: close; the whole response as text. */
async function tlsRequest (port: number, path: string): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca })
  let text = ''
  socket.on('data', (chunk: Buffer) => { text += chunk.toString('latin1') })
  await within(once(socket, 'secureConnect'), 5000, 'handshake')
  socket.write(`GET ${path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n`)
  await within(once(socket, 'close'), 5000, `response to ${path}`)
  return text
}

/** The values of `name` in a response's head, in order. */
function values (response: string, name: string): string[] {
  const head = response.slice(0, response.indexOf('\r\n\r\n'))
  return head.split('\r\n').slice(1).filter(line => line.toLowerCase().startsWith(name.toLowerCase() + ':')).map(line => line.slice(name.length + 1).trim())
}

t.test('off by default', async t => {
  const origin = await startOrigin(t, () => ok('x'))
  const { port } = await startProxy(t, { targets: [origin.target], tls: { certificates: [a] } })
  t.same(values(await tlsRequest(port, '/'), 'strict-transport-security'), [])
})

t.test('a listener\'s policy: every response over TLS, none over cleartext; the backend\'s own header kept', async t => {
  const origin = await startOrigin(t, req => req.head.line[1] === '/own'
    ? ok('own', ['Strict-Transport-Security: max-age=60'])
    : ok('x'))
  const { port } = await startProxy(t, { targets: [origin.target], tls: { certificates: [a], hsts: { maxAge: 31_536_000, includeSubDomains: true } } })
  const proxied = await tlsRequest(port, '/')
  t.match(proxied, /^HTTP\/1\.1 200 OK\r\n/)
  t.same(values(proxied, 'strict-transport-security'), ['max-age=31536000; includeSubDomains'], 'a proxied response')
  t.same(values(await tlsRequest(port, '/own'), 'strict-transport-security'), ['max-age=60'], 'the backend\'s own policy, alone')
  // rp4's own answer: a bad request refused before any route
  const refused = await tlsRequest(port, '/%zz bad')
  t.match(refused, /^HTTP\/1\.1 400 /)
  t.same(values(refused, 'strict-transport-security'), ['max-age=31536000; includeSubDomains'], 'rp4\'s own 400')
  // the flat form serves cleartext on the same port: RFC 6797 §7.2, no policy over http
  const clear = await exchange(port, 'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')
  t.match(clear.text, /^HTTP\/1\.1 200 OK\r\n/)
  t.same(values(clear.text, 'strict-transport-security'), [], 'none over cleartext')
  // curl, as a browser would see it
  const { stdout } = await run('curl', ['-sS', '-o', '/dev/null', '-D', '-', '--max-time', '5', '--resolve', `a.test:${port}:127.0.0.1`, '--cacert', certs.ca.cert, `https://a.test:${port}/`])
  t.same(values(stdout, 'strict-transport-security'), ['max-age=31536000; includeSubDomains'], 'curl sees it')
})

t.test('per route: a route\'s policy instead of the listener\'s, on its 502 too', async t => {
  const origin = await startOrigin(t, () => ok('x'))
  const { port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0', tls: { certificates: [a], hsts: { maxAge: 600 } } }],
    routes: [
      { match: { path: '/preload' }, respond: { body: 'p' }, hsts: { maxAge: 63_072_000, includeSubDomains: true, preload: true } },
      { match: { path: '/down' }, proxy: 'down', hsts: { maxAge: 0 } },
      { proxy: 'app' },
    ],
    upstreams: { app: { targets: [origin.target] }, down: { targets: ['127.0.0.1:1'] } },
  })
  t.same(values(await tlsRequest(port, '/preload'), 'strict-transport-security'), ['max-age=63072000; includeSubDomains; preload'])
  const down = await tlsRequest(port, '/down')
  t.match(down, /^HTTP\/1\.1 502 /)
  t.same(values(down, 'strict-transport-security'), ['max-age=0'], 'rp4\'s 502 carries the route\'s')
  t.same(values(await tlsRequest(port, '/app'), 'strict-transport-security'), ['max-age=600'], 'the listener\'s elsewhere')
  // cleartext is redirected on the full form: the redirect carries no policy either
  const clear = await exchange(port, 'GET /preload HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')
  t.match(clear.text, /^HTTP\/1\.1 308 /)
  t.same(values(clear.text, 'strict-transport-security'), [])
})

t.test('--hsts SECONDS, and what a hurried operator gets wrong', async t => {
  const line = parseCommandLine(['listen', ':0', '--to', '127.0.0.1:1', '--cert', a.cert, '--key', a.key, '--hsts', '31536000'])
  const options = flagsToOptions(':0', line)
  t.same((options as { tls: unknown }).tls, { certificates: [{ cert: a.cert, key: a.key }], hsts: { maxAge: 31_536_000 } })
  t.equal(buildModel(options).listeners[0].tls?.hsts, 'max-age=31536000')
  const bad = (...argv: string[]): string[] => {
    try {
      flagsToOptions(':0', parseCommandLine(['listen', ':0', '--to', '127.0.0.1:1', '--cert', a.cert, '--key', a.key, ...argv]))
    } catch (err) {
      return (err as { lines: string[] }).lines
    }
    return []
  }
  t.same(bad('--hsts', '1y'), ['--hsts 1y: not a whole number'])
  t.same(bad('--hsts=-5'), ['--hsts -5: at least 0'])
  const problem = (options: unknown): string => {
    try {
      buildModel(options)
    } catch (err) {
      if (err instanceof ConfigError) return err.message
      throw err
    }
    return ''
  }
  t.match(problem({ listen: ':0', targets: ['127.0.0.1:1'], tls: { certificates: [a], hsts: { maxAge: 600, preload: true } } }),
    /tls\.hsts\.preload: preload needs includeSubDomains: true and a maxAge of at least 31536000/)
  t.match(problem({ listen: ':0', targets: ['127.0.0.1:1'], tls: { certificates: [a], hsts: { includeSubDomains: true } } }), /tls\.hsts.*maxAge/)
})
