/**
 * Client certificates (mutual TLS) on a listener: required (a clean handshake failure without a
 * verified one, or 403 by configuration), or requested; the verified subject and fingerprint seen
 * by filters and forwarded in headers rp4 sets itself, the client's own copies removed first
 * (cleartext included); a route that requires a certificate; resumption keeps the identity.
 */
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import tls from 'node:tls'
import { promisify } from 'node:util'
import { buildModel } from '../../lib/config/build.js'
import { flagsToOptions, parseCommandLine } from '../../lib/config/flags.js'
import type { Filter } from '../../lib/session/filter.js'
import { exchange } from '../helpers/client.js'
import { header, headerCount } from '../helpers/framing.js'
import { ok, startOrigin, type OriginRequest } from '../helpers/origin.js'
import { startProxy, type TestProxyOptions } from '../helpers/proxy.js'
import { fingerprint, makeCertificates, type Pair } from '../helpers/tls-certs.js'
import { within } from '../helpers/wait.js'

const run = promisify(execFile)
const certs = await makeCertificates(t)
const a = await certs.issue('a', ['a.test'])
const client = await certs.issue('client', ['client.test'])
const strangers = await makeCertificates(t)
const stranger = await strangers.issue('stranger', ['client.test'])
const ca = readFileSync(certs.ca.cert)

const HEADERS = { subjectHeader: 'X-Client-Subject', fingerprintHeader: 'X-Client-Fingerprint' }

/** What the origin saw of the identity headers: each value, and how many of each arrived. */
function identity (req: OriginRequest): string {
  return `${header(req, 'x-client-subject') ?? '-'}|${header(req, 'x-client-fingerprint') ?? '-'}|${headerCount(req, 'x-client-subject')}${headerCount(req, 'x-client-fingerprint')}`
}

async function serving (t: Test, clientCertificates: Record<string, unknown>, extra: Partial<TestProxyOptions> = {}) {
  const origin = await startOrigin(t, req => ok(identity(req)))
  const started = await startProxy(t, { targets: [origin.target], tls: { certificates: [a], clientCertificates: { ca: [certs.ca.cert], ...clientCertificates } }, ...extra } as TestProxyOptions)
  return { origin, ...started }
}

interface Outcome { status: number | null, body: string, error: string | null, reused: boolean }

/** A TLS connection with this client certificate (or none), one request with a forged identity header; what came back. */
async function request (port: number, pair: Pair | null, path = '/', options: tls.ConnectionOptions = {}): Promise<Outcome> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca, ...(pair === null ? {} : { cert: readFileSync(pair.cert), key: readFileSync(pair.key) }), ...options })
  let text = ''
  let error: string | null = null
  socket.on('data', (chunk: Buffer) => { text += chunk.toString('latin1') })
  socket.on('error', (err: NodeJS.ErrnoException) => { error = err.code ?? err.message })
  // events.once would reject on the 'error' a refused handshake emits: these only resolve
  const closed = new Promise(resolve => socket.once('close', resolve))
  let reused = false
  await within(Promise.race([new Promise(resolve => socket.once('secureConnect', resolve)), closed]), 5000, 'handshake')
  if (!socket.destroyed) reused = socket.isSessionReused()
  if (!socket.destroyed) socket.write(`GET ${path} HTTP/1.1\r\nHost: a.test\r\nX-Client-Subject: CN=admin\r\nX-Client-Fingerprint: forged\r\nConnection: close\r\n\r\n`)
  await within(closed, 5000, 'connection closed')
  const status = /^HTTP\/1\.1 (\d{3}) /.exec(text)
  return { status: status === null ? null : Number(status[1]), body: text.slice(text.indexOf('\r\n\r\n') + 4), error, reused }
}

t.test('required (the default): verified certificate served and forwarded; none or a stranger\'s is a handshake failure', async t => {
  const { port, events } = await serving(t, HEADERS)
  const good = await request(port, client)
  t.equal(good.status, 200)
  t.equal(good.body, `CN=client.test|${fingerprint(client.cert)}|11`, 'rp4\'s own headers, the forged ones gone')
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    const none = await request(port, null, '/', { maxVersion })
    t.equal(none.status, null, `no certificate, ${maxVersion}: no HTTP answer`)
    t.match(none.error, /ERR_SSL_|ECONNRESET/, `no certificate, ${maxVersion}: OpenSSL's handshake failure alert (${String(none.error)})`)
    // OpenSSL completes a handshake whose certificate does not verify (Node decides afterwards):
    // the connection is closed before a byte of HTTP is read
    const strange = await request(port, stranger, '/', { maxVersion })
    t.equal(strange.status, null, `a certificate of another CA, ${maxVersion}: no HTTP answer`)
  }
  await events.until(() => events.clientErrors.filter(e => e.error.code === 'tls_handshake_failed').length >= 2, 5000, 'the missing certificates reported')
  await events.until(() => events.clientErrors.filter(e => e.error.code === 'tls_client_certificate_refused').length >= 2, 5000, 'the strangers reported')
  t.match(events.clientErrors.find(e => e.error.code === 'tls_client_certificate_refused')?.error.message ?? '', /client certificate not verified: UNABLE_TO_VERIFY_LEAF_SIGNATURE$/)
  // curl with and without a certificate
  const url = `https://a.test:${port}/`
  const curl = ['-sS', '--max-time', '5', '--resolve', `a.test:${port}:127.0.0.1`, '--cacert', certs.ca.cert]
  const { stdout } = await run('curl', [...curl, '--cert', client.cert, '--key', client.key, '-H', 'X-Client-Subject: CN=root', url])
  t.equal(stdout, `CN=client.test|${fingerprint(client.cert)}|11`, 'curl with its certificate')
  const without = await run('curl', [...curl, url]).then(() => 0, (err: { code: number }) => err.code)
  t.ok(without !== 0, `curl without one fails (exit ${without})`)
})

t.test('cleartext on the same port: redirected where a certificate is required; the client\'s identity headers never pass', async t => {
  const forged = 'GET / HTTP/1.1\r\nHost: a.test\r\nX-Client-Subject: CN=admin\r\nx-client-subject: CN=root\r\nX-CLIENT-FINGERPRINT: AA:BB\r\nConnection: close\r\n\r\n'
  const required = await serving(t, HEADERS)
  const redirected = await exchange(required.port, forged)
  t.equal(redirected.responses[0].head.line[1], '308', 'required: plain HTTP would walk around it, so it is redirected')
  t.equal(required.origin.requests.length, 0)
  const requested = await serving(t, { ...HEADERS, mode: 'request' })
  const clear = await exchange(requested.port, forged)
  t.equal(clear.responses[0].head.line[1], '200', 'requested: cleartext served as the flat form always did')
  t.equal(clear.responses[0].body.toString(), '-|-|00', 'every spelling of the client\'s headers removed, nothing set')
  // the full form says cleartext itself: serve beside a required certificate is refused at load
  t.throws(() => buildModel({
    listeners: [{ listen: ':0', tls: { certificates: [a], cleartext: 'serve', clientCertificates: { ca: [certs.ca.cert] } } }],
    routes: [{ proxy: 'b' }],
    upstreams: { b: { targets: ['127.0.0.1:1'] } },
  }), /^option listeners\[0\]\.tls\.cleartext: serve beside listeners\[0\]\.tls\.clientCertificates \(mode require\): cleartext requests would be served without a certificate; use redirect or refuse$/)
})

t.test('requested: served without a certificate (no identity), with one (identity); filters see it; a route can require it', async t => {
  const seen: Array<string | null> = []
  const who: Filter = {
    name: 'who',
    onRequest (session) {
      seen.push(session.client.tls?.certificate?.subject ?? null)
      return 'continue'
    },
  }
  const origin = await startOrigin(t, req => ok(identity(req)))
  const { port, events } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0', tls: { certificates: [a], clientCertificates: { ca: [certs.ca.cert], mode: 'request', ...HEADERS } } }],
    routes: [
      { match: { path: '/admin' }, proxy: 'app', requireClientCertificate: true, filters: ['who'] },
      { proxy: 'app', filters: ['who'] },
    ],
    upstreams: { app: { targets: [origin.target] } },
    filters: [who],
  })
  const anonymous = await request(port, null)
  t.equal(anonymous.status, 200)
  t.equal(anonymous.body, '-|-|00', 'no certificate: no identity, the forged one removed')
  const named = await request(port, client)
  t.equal(named.body, `CN=client.test|${fingerprint(client.cert)}|11`)
  const admin = await request(port, null, '/admin')
  t.equal(admin.status, 403, 'a route that requires one: 403 without')
  t.equal((await request(port, client, '/admin')).status, 200, 'served with one')
  t.same(seen, [null, 'CN=client.test', 'CN=client.test'], 'filters see the verified subject (the refused request reaches none)')
  t.ok(events.clientErrors.some(e => e.error.code === 'client_certificate_required'), 'the 403 reported')
  // a certificate that does not verify, asked for only: refused right after the handshake
  const strange = await request(port, stranger)
  t.equal(strange.status, null, 'a stranger\'s certificate: no HTTP answer')
  await events.until(() => events.clientErrors.some(e => e.error.code === 'tls_client_certificate_refused'), 5000, 'reported')
})

t.test('onFailure: forbidden answers 403 instead of failing the handshake', async t => {
  const { port, origin, events } = await serving(t, { onFailure: 'forbidden' })
  const none = await request(port, null)
  t.equal(none.status, 403, 'no certificate: 403')
  t.equal((await request(port, stranger)).status, 403, 'a stranger\'s certificate: 403')
  t.equal((await request(port, client)).status, 200, 'a verified one: served')
  t.equal(origin.requests.length, 1, 'only the verified client reached the backend')
  t.match(events.clientErrors.find(e => e.error.code === 'client_certificate_refused')?.error.message ?? '', /no verified client certificate: no client certificate/)
})

t.test('resumption keeps the verified identity', async t => {
  const { port } = await serving(t, HEADERS)
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    const first = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca, cert: readFileSync(client.cert), key: readFileSync(client.key), maxVersion })
    const session = once(first, 'session')
    let text = ''
    first.on('data', (chunk: Buffer) => { text += chunk.toString() })
    await within(once(first, 'secureConnect'), 5000, 'first handshake')
    first.write('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')
    const [ticket] = await within(session, 5000, 'a ticket') as [Buffer]
    await within(once(first, 'close'), 5000, 'first response')
    t.match(text, /CN=client\.test/)
    const second = await request(port, client, '/', { session: ticket, maxVersion })
    t.ok(second.reused, `${maxVersion}: resumed`)
    t.equal(second.body, `CN=client.test|${fingerprint(client.cert)}|11`, `${maxVersion}: the identity after resumption`)
  }
})

t.test('--client-ca and --client-ca-optional', async t => {
  const options = (...argv: string[]): unknown => flagsToOptions(':0', parseCommandLine(['listen', ':0', '--to', '127.0.0.1:1', '--cert', a.cert, '--key', a.key, ...argv]))
  t.same((options('--client-ca', certs.ca.cert) as { tls: { clientCertificates: unknown } }).tls.clientCertificates, { ca: [certs.ca.cert] })
  t.same((options('--client-ca', certs.ca.cert, '--client-ca-optional') as { tls: { clientCertificates: unknown } }).tls.clientCertificates, { ca: [certs.ca.cert], mode: 'request' })
  const started = await startProxy(t, options('--client-ca', certs.ca.cert) as TestProxyOptions)
  t.equal((await request(started.port, client)).status, 502, 'required and verified (the backend is down)')
  t.equal((await request(started.port, null)).status, null, 'refused without')
})
