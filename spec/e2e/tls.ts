/**
 * TLS: termination with certificates chosen by SNI (exact names, wildcards, the first as
 * default), ALPN and the version floor, session resumption, reloading certificates from disk;
 * passthrough by SNI to backends that terminate TLS themselves; TLS to backends (`https://`),
 * verified against a private CA. Certificates are made with openssl for this run.
 */
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { once, type EventEmitter } from 'node:events'
import { copyFile, rename } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import tls from 'node:tls'
import { promisify } from 'node:util'
import { createProxy } from '../../lib/index.js'
import { HelloStatus, parseClientHello } from '../../lib/tls/client-hello.js'
import { exchange } from '../helpers/client.js'
import { header } from '../helpers/framing.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import { connectRaw, echo, startTcpBackend, startTlsBackend } from '../helpers/tls-backends.js'
import { fingerprint, makeCertificates, type Pair } from '../helpers/tls-certs.js'
import { event, poll, within } from '../helpers/wait.js'

const run = promisify(execFile)
const certs = await makeCertificates(t)
const a = await certs.issue('a', ['a.test'])
const wild = await certs.issue('wild', ['*.b.test'])
const backendPair = await certs.issue('backend', ['backend.test', 'x.pass.test', 'localhost', '127.0.0.1'])
const ca = readFileSync(certs.ca.cert)

function tlsOptions (pair: Pair): tls.TlsOptions {
  return { cert: readFileSync(pair.cert), key: readFileSync(pair.key) }
}

/** A TLS client connection to the proxy, once its handshake is done (or failed). */
async function connect (port: number, options: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca, ...options })
  await within(Promise.race([once(socket, 'secureConnect'), once(socket, 'error').then(([err]) => { throw err })]), 5000, 'TLS handshake')
  return socket
}

/** One GET on an established connection; the body of its (Content-Length) response. */
async function get (socket: tls.TLSSocket, url: string, host = 'a.test'): Promise<string> {
  let text = ''
  const done = new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1')
      const end = text.indexOf('\r\n\r\n')
      const length = /content-length: (\d+)/i.exec(text)
      if (end !== -1 && length !== null && text.length >= end + 4 + Number(length[1])) {
        socket.removeListener('data', onData)
        resolve(text.slice(end + 4))
      }
    }
    socket.on('data', onData)
    socket.once('error', reject)
  })
  socket.write(`GET ${url} HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
  return await within(done, 5000, `response to ${url}`)
}

async function terminating (t: Test, extra: { reloadInterval?: number, certificates?: Pair[] } = {}) {
  const origin = await startOrigin(t, req => ok(`${req.url} ${header(req, 'x-forwarded-proto')}`))
  const started = await startProxy(t, { targets: [origin.target], tls: { certificates: extra.certificates ?? [a, wild], reloadInterval: extra.reloadInterval } })
  return { origin, ...started }
}

t.test('curl: certificate chosen by SNI, exact and wildcard; X-Forwarded-Proto https', async t => {
  const { port } = await terminating(t)
  for (const name of ['a.test', 'x.b.test']) {
    const { stdout } = await run('curl', ['-sS', '--max-time', '5', '--resolve', `${name}:${port}:127.0.0.1`, '--cacert', certs.ca.cert, `https://${name}:${port}/via-curl`])
    t.equal(stdout, '/via-curl https', `${name}: verified by curl, served as https`)
  }
  // a wildcard stands for one label only: this name gets the default certificate, which curl refuses
  const deep = await run('curl', ['-sS', '--max-time', '5', '--resolve', `y.x.b.test:${port}:127.0.0.1`, '--cacert', certs.ca.cert, `https://y.x.b.test:${port}/`])
    .then(() => 0, (err: { code: number }) => err.code)
  t.equal(deep, 60, 'y.x.b.test: no matching certificate (curl exit 60)')
})

t.test('certificate selection, ALPN http/1.1, TLS 1.2 minimum', async t => {
  const { port, events } = await terminating(t)
  const cases: Array<[string | undefined, string]> = [['a.test', a.cert], ['x.b.test', wild.cert], [undefined, a.cert], ['unknown.test', a.cert]]
  for (const [servername, cert] of cases) {
    const socket = await connect(port, { servername, rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] })
    t.equal(socket.getPeerCertificate().fingerprint256, fingerprint(cert), `${servername ?? 'no SNI'}: ${path.basename(cert)}`)
    t.equal(socket.alpnProtocol, 'http/1.1', 'ALPN picks http/1.1 over h2')
    t.equal(await get(socket, '/x'), '/x https')
    socket.destroy()
  }
  const tls12 = await connect(port, { servername: 'a.test', maxVersion: 'TLSv1.2' })
  t.equal(tls12.getProtocol(), 'TLSv1.2', 'TLS 1.2 accepted')
  tls12.destroy()
  const old = await connect(port, { servername: 'a.test', minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' }).then(() => null, (err: Error) => err)
  t.ok(old !== null, 'TLS 1.1 refused')
  await events.until(() => events.clientErrors.some(e => e.error.code === 'tls_handshake_failed'), 5000, 'the failed handshake reported')
  const failed = events.clientErrors.find(e => e.error.code === 'tls_handshake_failed')?.error.message ?? ''
  t.match(failed, /^TLS handshake for a\.test failed: [a-z][^\n]* \(ERR_SSL_\w+\)$/, 'OpenSSL\'s reason and code')
  t.notMatch(failed, /\n|\s$/, `one line, no trailing newline: ${JSON.stringify(failed)}`)
  const after = await connect(port, { servername: 'a.test' })
  t.equal(await get(after, '/still'), '/still https', 'other connections unaffected')
  after.destroy()
})

t.test('session resumption with tickets', async t => {
  const { port } = await terminating(t)
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    // TLS 1.2 delivers the ticket during the handshake, TLS 1.3 after it: listen from the start
    const first = tls.connect({ host: '127.0.0.1', port, ca, servername: 'a.test', maxVersion })
    const session = once(first, 'session')
    await within(once(first, 'secureConnect'), 5000, 'first handshake')
    await get(first, '/one')
    const [ticket] = await within(session, 5000, 'a session ticket') as [Buffer]
    t.notOk(first.isSessionReused(), `${maxVersion}: the first connection made a full handshake`)
    first.destroy()
    const second = await connect(port, { servername: 'a.test', maxVersion, session: ticket })
    t.ok(second.isSessionReused(), `${maxVersion}: the second connection resumed`)
    t.equal(await get(second, '/two'), '/two https')
    second.destroy()
  }
})

t.test('unusable ClientHello, handshake timeout: reported, that connection closed only', async t => {
  const origin = await startOrigin(t, () => ok('fine'))
  const { port, events } = await startProxy(t, { targets: [origin.target], tls: { certificates: [a] }, timeouts: { tlsHandshake: 200 } })
  // a handshake record whose message is a ServerHello
  const bad = await connectRaw(port)
  bad.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x06, 0x02, 0x00, 0x00, 0x02, 0x03, 0x03]))
  await bad.watch.until(() => bad.conn.ended || bad.conn.closed, 5000, 'the bad connection closed')
  t.equal(events.clientErrors[0]?.error.code, 'tls_bad_client_hello')
  t.equal(events.clientErrors[0]?.error.source, 'downstream')
  bad.socket.destroy()
  // half a ClientHello, then silence
  const slow = await connectRaw(port)
  slow.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00]))
  await slow.watch.until(() => slow.conn.ended || slow.conn.closed, 5000, 'the slow connection closed')
  t.equal(events.clientErrors[1]?.error.code, 'tls_hello_timeout')
  slow.socket.destroy()
  const good = await connect(port, { servername: 'a.test' })
  t.equal(await get(good, '/'), 'fine', 'the proxy still serves')
  good.destroy()
})

t.test('a client that ends during the handshake: closed at once and counted aborted, not held until the handshake timeout', async t => {
  const origin = await startOrigin(t, () => ok('fine'))
  // a timeout far beyond the waits below: only the client's FIN can close these connections in time
  const { proxy, port, events } = await startProxy(t, { targets: [origin.target], tls: { certificates: [a] }, timeouts: { tlsHandshake: 60_000 } })
  const capture = await startTcpBackend(t)
  const probe = tls.connect({ port: capture.port, host: '127.0.0.1', servername: 'a.test' })
  probe.on('error', () => {})
  const hello = (await capture.conn(0, c => parseClientHello(c.data).status === HelloStatus.OK, 5000, 'a ClientHello')).data
  probe.destroy()
  const aborted = (): number => proxy.stats().tls.failures.find(f => f.reason === 'aborted')?.count ?? 0

  // the ClientHello and the FIN together, and the FIN after the server's first flight
  const together = await connectRaw(port)
  together.socket.end(hello)
  await together.watch.until(() => together.conn.ended, 5000, 'rp4 ending a connection whose hello came with a FIN')
  t.equal(together.conn.data[0], 0x16, 'its ServerHello was sent first')
  const after = await connectRaw(port)
  after.socket.write(hello)
  await after.watch.until(() => after.conn.data.length > 0, 5000, 'the ServerHello')
  after.socket.end()
  await after.watch.until(() => after.conn.ended, 5000, 'rp4 ending a connection whose FIN came mid-handshake')
  await events.until(() => events.clientErrors.length === 2, 5000, 'two reports')
  t.same(events.clientErrors.map(e => e.error.code), ['tls_handshake_aborted', 'tls_handshake_aborted'])
  t.equal(events.clientErrors[0].error.message, 'client closed the connection during the TLS handshake for a.test')
  together.socket.destroy()
  after.socket.destroy()
  await poll(() => aborted() === 2, 'two aborted handshakes counted')

  // Node's client destroyed as its handshake completes: its Finished never leaves
  const hasty = tls.connect({ host: '127.0.0.1', port, ca, servername: 'a.test' })
  hasty.on('error', () => {})
  hasty.once('secureConnect', () => hasty.destroy())
  await within(once(hasty, 'close'), 5000, 'the hasty client closed')
  await poll(() => aborted() === 3, 'the hasty client\'s handshake counted aborted')
  await poll(() => proxy.stats().connections === 0, 'no connection left open')

  // a client that completes its handshake, then ends without a request: closed, and no error
  const quiet = await connect(port, { servername: 'a.test' })
  quiet.end()
  quiet.resume()
  await within(once(quiet, 'close'), 5000, 'rp4 closing after the client\'s end')
  // one whose request comes with its FIN: answered
  const last = await connect(port, { servername: 'a.test' })
  last.end('GET /last HTTP/1.1\r\nHost: a.test\r\n\r\n')
  let text = ''
  last.on('data', (chunk: Buffer) => { text += chunk.toString('latin1') })
  await within(once(last, 'close'), 5000, 'the answered connection closed')
  t.match(text, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nfine$/, 'the request sent with the FIN answered')
  await poll(() => proxy.stats().connections === 0, 'no connection left open')
  t.equal(events.clientErrors.length, 3, 'nothing reported for the clients that completed their handshakes')
  t.equal(aborted(), 3)
})

t.test('the ClientHello parser never throws: truncations and random corruption', async t => {
  const capture = await startTcpBackend(t)
  const client = tls.connect({ port: capture.port, host: '127.0.0.1', servername: 'fuzz.test' })
  client.on('error', () => {})
  const hello = (await capture.conn(0, c => parseClientHello(c.data).status === HelloStatus.OK, 5000, 'a ClientHello')).data
  client.destroy()
  let invalid = 0
  let more = 0
  for (let n = 0; n < hello.length; n++) if (parseClientHello(hello.subarray(0, n)).status === HelloStatus.MORE) more++
  t.equal(more, hello.length, 'every truncation of a valid hello asks for more')
  for (let i = 0; i < 3000; i++) {
    const copy = Buffer.from(hello)
    for (let k = 0; k < 1 + (i % 4); k++) copy[Math.floor(Math.random() * copy.length)] = Math.floor(Math.random() * 256)
    const result = parseClientHello(copy.subarray(0, 1 + Math.floor(Math.random() * copy.length)))
    if (result.status === HelloStatus.INVALID) invalid++
  }
  t.ok(invalid > 0, `corrupted hellos handled (${invalid} refused)`)
  t.equal(parseClientHello(Buffer.alloc(40_000, 0x16)).status, HelloStatus.INVALID, 'a flood of handshake bytes is refused, not buffered')
})

t.test('the ClientHello parser tells a TLS-ALPN-01 validation (ALPN acme-tls/1) from other ALPN offers', async t => {
  const cases: Array<[string[] | undefined, boolean]> = [[['acme-tls/1'], true], [['h2', 'acme-tls/1'], true], [['http/1.1'], false], [['acme-tls/10'], false], [undefined, false]]
  for (const [i, [alpn, acme]] of cases.entries()) {
    const capture = await startTcpBackend(t)
    const client = tls.connect({ port: capture.port, host: '127.0.0.1', servername: 'acme.test', ALPNProtocols: alpn })
    client.on('error', () => {})
    const hello = parseClientHello((await capture.conn(0, c => parseClientHello(c.data).status === HelloStatus.OK, 5000, `ClientHello ${i}`)).data)
    client.destroy()
    t.same([hello.serverName, hello.acme], ['acme.test', acme], JSON.stringify(alpn ?? 'no ALPN'))
  }
})

/**
 * Where extension `type` starts (its type field) in a ClientHello record, found by walking the
 * hello's fields: searching for its two bytes could land in the random session ID or a key share.
 */
function extensionAt (record: Buffer, type: number): number {
  let at = 5 + 4 + 2 + 32 // record header, handshake header, version, random
  at += 1 + record[at] // session ID
  at += 2 + record.readUInt16BE(at) // cipher suites
  at += 1 + record[at] // compression methods
  const end = at + 2 + record.readUInt16BE(at)
  for (at += 2; at + 4 <= end; at += 4 + record.readUInt16BE(at + 2)) {
    if (record.readUInt16BE(at) === type) return at
  }
  return -1
}

t.test('the ClientHello parser tells a client offering TLS 1.3 (supported_versions) from one that does not', async t => {
  const offers: Array<[string, tls.ConnectionOptions, boolean]> = [
    ['default', {}, true],
    ['TLS 1.3 only', { minVersion: 'TLSv1.3' }, true],
    ['TLS 1.2 at most', { maxVersion: 'TLSv1.2' }, false],
  ]
  for (const [name, options, tls13] of offers) {
    const capture = await startTcpBackend(t)
    const client = tls.connect({ port: capture.port, host: '127.0.0.1', servername: 'v.test', ...options })
    client.on('error', () => {})
    const data = (await capture.conn(0, c => parseClientHello(c.data).status === HelloStatus.OK, 5000, `ClientHello (${name})`)).data
    client.destroy()
    const hello = parseClientHello(data)
    t.same([hello.serverName, hello.tls13], ['v.test', tls13], name)
    if (!tls13) continue
    // the same hello with its supported_versions list made unreadable: still a hello, not a 1.3 offer
    const at = extensionAt(data, 0x002b)
    t.ok(at > 0, 'the extension found')
    for (const size of [data[at + 4] - 1, data[at + 4] + 2, 0]) {
      const copy = Buffer.from(data)
      copy[at + 4] = size
      const odd = parseClientHello(copy)
      t.same([odd.status, odd.serverName, odd.tls13], [HelloStatus.OK, 'v.test', false], `list length ${size}`)
    }
  }
})

t.test('passthrough by SNI: the backend terminates the client\'s own handshake', async t => {
  const backend = await startTlsBackend(t, tlsOptions(backendPair), echo)
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, {
    targets: [origin.target],
    tls: { certificates: [a], passthrough: { 'backend.test': backend.target, '*.pass.test': backend.target } },
  })
  for (const servername of ['backend.test', 'x.pass.test']) {
    const socket = await connect(port, { servername })
    t.ok(socket.authorized, `${servername}: the client verified the backend's certificate`)
    t.equal(socket.getPeerCertificate().fingerprint256, fingerprint(backendPair.cert))
    socket.write('through')
    await within(once(socket, 'data'), 5000, 'echo')
    socket.destroy()
  }
  t.same(backend.conns.map(c => c.servername), ['backend.test', 'x.pass.test'], 'the backend saw the SNI each client sent')
  const own = await connect(port, { servername: 'a.test' })
  t.equal(own.getPeerCertificate().fingerprint256, fingerprint(a.cert), 'a name with a certificate is still terminated')
  own.destroy()
})

t.test('no certificate, with a TCP fallback: TLS relayed untouched to the fallback', async t => {
  const backend = await startTlsBackend(t, tlsOptions(backendPair), echo)
  const origin = await startOrigin(t, () => ok())
  const { port, proxy } = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target] })
  const socket = await connect(port, { servername: 'backend.test' })
  t.ok(socket.authorized, 'the client verified the backend\'s certificate through the proxy')
  t.equal(proxy.stats().tcp, 1, 'relayed as TCP')
  socket.end('half-closed')
  let text = ''
  socket.on('data', (chunk: Buffer) => { text += chunk.toString() })
  await within(once(socket, 'end'), 5000, 'the backend\'s close_notify and FIN')
  t.equal(text, 'half-closed', 'bytes and half-close both ways')
  t.equal(backend.conns[0].servername, 'backend.test')
})

t.test('no certificate, no passthrough route, no fallback (the default): TLS refused with a handshake_failure alert', async t => {
  const backend = await startTlsBackend(t, tlsOptions(backendPair), echo)
  const origin = await startOrigin(t, () => ok())
  const { port, proxy, events } = await startProxy(t, { targets: [origin.target], tls: { passthrough: { 'x.pass.test': backend.target } } })
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'backend.test' })
  const failed = event<[NodeJS.ErrnoException]>(socket, 'error')
  socket.on('error', () => {})
  const [err] = await failed
  t.match(err.message, /alert handshake failure/, 'the client is told why, not just closed')
  t.equal(events.clientErrors[0]?.error.code, 'tls_no_certificate')
  t.match(events.clientErrors[0]?.error.message, /"backend\.test".*tls\.certificates.*tls\.passthrough.*tcpFallback/)
  t.equal(proxy.stats().tcp, 0, 'nothing relayed')
  t.equal(origin.connections.length, 0, 'the targets got nothing')
  t.equal(backend.conns.length, 0, 'the passthrough route is for its own name only')
  const routed = await connect(port, { servername: 'x.pass.test' })
  t.ok(routed.authorized, 'a routed name is still relayed to its backend')
  routed.write('through')
  await within(once(routed, 'data'), 5000, 'echo')
  routed.destroy()
})

t.test('certificates reloaded from disk: the next handshake gets the new one, open connections go on', async t => {
  const live = { cert: path.join(certs.dir, 'live.pem'), key: path.join(certs.dir, 'live.key') }
  await copyFile(a.cert, live.cert)
  await copyFile(a.key, live.key)
  const origin = await startOrigin(t, req => ok(req.url))
  const { port, proxy } = await startProxy(t, { targets: [origin.target], tls: { certificates: [live], reloadInterval: 50 } })
  const before = await connect(port, { servername: 'a.test' })
  t.teardown(() => before.destroy())
  t.equal(before.getPeerCertificate().fingerprint256, fingerprint(a.cert))
  t.equal(await get(before, '/before'), '/before')

  const renewed = await certs.issue('renewed', ['a.test', 'www.a.test'])
  const reloaded = event<[string[]]>(proxy as unknown as EventEmitter, 'certificates', 5000)
  // as a renewal tool does it: new files moved into place
  await copyFile(renewed.key, live.key + '.tmp')
  await copyFile(renewed.cert, live.cert + '.tmp')
  await rename(live.key + '.tmp', live.key)
  await rename(live.cert + '.tmp', live.cert)
  let names = (await reloaded)[0]
  // the two files may be seen one at a time: a key without its certificate fails and is retried
  for (let i = 0; i < 5 && !names.includes('www.a.test'); i++) names = (await event<[string[]]>(proxy as unknown as EventEmitter, 'certificates', 5000))[0]
  t.same(names, ['a.test', 'www.a.test'], 'the new names announced')

  const after = await connect(port, { servername: 'a.test' })
  t.equal(after.getPeerCertificate().fingerprint256, fingerprint(renewed.cert), 'a new handshake gets the new certificate')
  after.destroy()
  t.equal(await get(before, '/after'), '/after', 'the connection opened before the reload still works')
  t.equal(before.getPeerCertificate().fingerprint256, fingerprint(a.cert))
})

t.test('certificate files that cannot be used are named at startup', async t => {
  t.throws(() => createProxy({ listen: '127.0.0.1:0', targets: ['127.0.0.1:1'], tls: { certificates: [{ cert: '/nonexistent.pem', key: a.key }] } }),
    { name: 'ConfigError', message: /tls\.certificates\[0\]\.cert: cannot read/ })
  t.throws(() => createProxy({ listen: '127.0.0.1:0', targets: ['127.0.0.1:1'], tls: { certificates: [{ cert: a.cert, key: wild.key }] } }),
    { name: 'TypeError', message: /tls\.certificates\[0\]/ })
})

/** An HTTPS origin that tells which SNI it was reached with. */
async function httpsOrigin (t: Test, host = '127.0.0.1'): Promise<number> {
  const server = https.createServer(tlsOptions(backendPair), (req, res) => {
    res.end(`${(req.socket as tls.TLSSocket).servername || 'no-sni'} ${req.headers['x-forwarded-proto']}`)
  })
  server.listen(0, host)
  await within(once(server, 'listening'), 5000, 'https origin')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return (server.address() as AddressInfo).port
}

t.test('TLS to backends: verified against --ca, 502 without it, opt-out', async t => {
  const port = await httpsOrigin(t)
  const target = `https://127.0.0.1:${port}`
  const verified = await startProxy(t, { targets: [target], upstreamTls: { ca: [certs.ca.cert] } })
  const res = await exchange(verified.port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(res.responses[0]?.head.line[1], '200')
  t.equal(res.responses[0]?.body.toString(), 'no-sni http', 'no SNI for an IP address; the client came over plain HTTP')

  const unverified = await startProxy(t, { targets: [target] })
  const refused = await exchange(unverified.port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(refused.responses[0]?.head.line[1], '502', 'a certificate from an unknown CA: 502')
  t.match(unverified.events.upstreamErrors[0]?.error.message ?? '', /certificate|UNABLE_TO_VERIFY/i, 'the reason is reported')

  const insecure = await startProxy(t, { targets: [target], upstreamTls: { verify: false } })
  const accepted = await exchange(insecure.port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(accepted.responses[0]?.head.line[1], '200', 'verification off: accepted')
})

t.test('TLS to a backend by name: SNI sent, certificate checked against the name', async t => {
  const port = await httpsOrigin(t)
  const { port: proxyPort } = await startProxy(t, { targets: [`https://localhost:${port}`], upstreamTls: { ca: [certs.ca.cert] } })
  const res = await exchange(proxyPort, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(res.responses[0]?.body.toString(), 'localhost http')
})

t.test('terminated TLS to a TLS backend: https both hops', async t => {
  const port = await httpsOrigin(t)
  const { port: proxyPort } = await startProxy(t, { targets: [`https://127.0.0.1:${port}`], upstreamTls: { ca: [certs.ca.cert] }, tls: { certificates: [a] } })
  const socket = await connect(proxyPort, { servername: 'a.test' })
  t.equal(await get(socket, '/'), 'no-sni https')
  socket.destroy()
})

t.test('upstream group TLS: the name sent and checked, a wrong name refused, a client certificate for mutual TLS', async t => {
  // an origin that asks for a client certificate signed by the test CA and says whose it got
  const server = https.createServer({ ...tlsOptions(backendPair), ca: readFileSync(certs.ca.cert), requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const socket = req.socket as tls.TLSSocket
    const peer = socket.authorized ? socket.getPeerCertificate().subject.CN : 'anonymous'
    res.end(`${socket.servername || 'no-sni'} ${peer}`)
  })
  server.listen(0, '127.0.0.1')
  await within(once(server, 'listening'), 5000, 'https origin')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  const client = await certs.issue('client', ['client.test'])
  const options = (tlsOptions: Record<string, unknown>) => ({
    listeners: [{ listen: '127.0.0.1:0', timeouts: { detect: '30s' } }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [origin], tls: { ca: [certs.ca.cert], ...tlsOptions } } },
  })
  const body = async (started: { port: number }): Promise<string> =>
    (await exchange(started.port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })).responses[0]?.body.toString() ?? '?'

  t.equal(await body(await startProxy(t, options({ servername: 'backend.test' }) as never)), 'backend.test anonymous',
    'an IP target reached under a name: SNI sent, the certificate checked against it')
  const wrong = await startProxy(t, options({ servername: 'other.test' }) as never)
  t.equal(await body(wrong), '502 Bad Gateway\n', 'a certificate not valid for the name: 502')
  t.match(wrong.events.upstreamErrors[0]?.error.message ?? '', /other\.test|altnames|ERR_TLS_CERT_ALTNAME_INVALID/i)
  t.equal(await body(await startProxy(t, options({ servername: 'backend.test', cert: client.cert, key: client.key }) as never)), 'backend.test client.test',
    'the client certificate is presented')
})

t.test('cleartext HTTP on a port with certificates: redirected to https by default, refused or served when asked', async t => {
  const origin = await startOrigin(t, req => ok(`plain ${req.url}`))
  const options = (cleartext?: string): never => ({
    listeners: [{ listen: '127.0.0.1:0', timeouts: { detect: '30s' }, tls: { certificates: [a], ...(cleartext === undefined ? {} : { cleartext }) } }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [origin.target] } },
  }) as never
  const request = 'POST /form?x=1 HTTP/1.1\r\nHost: a.test:8443\r\nContent-Length: 2\r\n\r\nhi'
  const redirecting = await startProxy(t, options())
  const res = await exchange(redirecting.port, request, { responses: 1 })
  t.equal(res.responses[0]?.head.line[1], '308', 'a permanent redirect that keeps the method')
  t.equal(header(res.responses[0]!, 'location'), 'https://a.test:8443/form?x=1', 'same host and port, over https')
  const socket = await connect(redirecting.port, { servername: 'a.test' })
  t.equal(await get(socket, '/over-tls'), 'plain /over-tls', 'TLS on the same port is served')
  socket.destroy()

  const refusing = await startProxy(t, options('refuse'))
  const refused = await exchange(refusing.port, request)
  t.equal(refused.raw.length, 0, 'refused: closed without an answer')
  t.equal(refused.closed, true)
  t.ok(refusing.events.clientErrors.some(e => e.error.code === 'cleartext_refused'))

  const serving = await startProxy(t, options('serve'))
  t.equal((await exchange(serving.port, request, { responses: 1 })).responses[0]?.body.toString(), 'plain /form?x=1', 'served in the clear when asked')
  t.equal(origin.requests.length, 2, 'only the TLS request and the served one reached the origin')
})
