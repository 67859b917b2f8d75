/**
 * One port, the protocol detected per connection from the first bytes: HTTP to the engine, TLS by
 * its ClientHello, anything else (or silence: a server-first protocol) relayed as TCP. Every split
 * of the first bytes into two writes gives the same verdict, and no byte read while deciding is
 * lost.
 */
import t, { type Test } from 'tap'
import tls from 'node:tls'
import { sniff, Verdict } from '../../lib/listener/sniff.js'
import { HelloStatus, parseClientHello } from '../../lib/tls/client-hello.js'
import { exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { hasIPv6, startProxy } from '../helpers/proxy.js'
import { connectRaw, echo, startTcpBackend } from '../helpers/tls-backends.js'
import { tick } from '../helpers/wait.js'

t.test('sniff: decided from as few bytes as the protocols allow', async t => {
  for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'M-SEARCH', 'PROPPATCH', 'PRI']) {
    const line = Buffer.from(method + ' /')
    for (let n = 1; n <= method.length; n++) t.equal(sniff(line.subarray(0, n)), Verdict.MORE, `${method}: ${n} bytes undecided`)
    t.equal(sniff(line.subarray(0, method.length + 1)), Verdict.HTTP, `${method}: HTTP at the space`)
  }
  t.equal(sniff(Buffer.from('HELLO THERE')), Verdict.HTTP, 'an unknown uppercase method: HTTP (the engine answers 400)')
  t.equal(sniff(Buffer.from('get key\r\n')), Verdict.OTHER, 'lowercase (memcached): not HTTP')
  t.equal(sniff(Buffer.from('g')), Verdict.OTHER, 'decided at the first byte that no method starts with')
  t.equal(sniff(Buffer.from('*1\r\n$4\r\nPING\r\n')), Verdict.OTHER, 'RESP')
  t.equal(sniff(Buffer.from('A'.repeat(33))), Verdict.OTHER, 'no method is that long')
  t.equal(sniff(Buffer.from('SSH-2.0-OpenSSH_9.6\r\n')), Verdict.OTHER)
  t.equal(sniff(Buffer.from([0x16])), Verdict.MORE, 'a handshake byte alone: undecided')
  t.equal(sniff(Buffer.from([0x16, 0x03])), Verdict.TLS)
  t.equal(sniff(Buffer.from([0x16, 0x00])), Verdict.OTHER)
  t.equal(sniff(Buffer.from([0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f])), Verdict.OTHER, 'a PostgreSQL SSLRequest')
})

t.test('sniff: a method with bytes outside a token is HTTP when a request target follows (the engine answers 400)', async t => {
  for (const line of ['GE(T / HTTP/1.1', 'G@T * HTTP/1.1', 'GE.T http://h/ HTTP/1.1', 'G"T https://h/ HTTP/1.1']) {
    const bytes = Buffer.from(line)
    const space = line.indexOf(' ')
    t.equal(sniff(bytes.subarray(0, space + 1)), Verdict.MORE, `${line}: undecided at the space`)
    t.equal(sniff(bytes), Verdict.HTTP, line)
  }
  t.equal(sniff(Buffer.from('SSH-2.0-OpenSSH_8.9p1 Ubuntu-3\r\n')), Verdict.OTHER, 'an SSH banner with a comment')
  t.equal(sniff(Buffer.from('GE(T x')), Verdict.OTHER, 'no request target after the space')
  t.equal(sniff(Buffer.from('GE(T htt')), Verdict.MORE, 'may still become http://')
  t.equal(sniff(Buffer.from('GE(T hx')), Verdict.OTHER)
  t.equal(sniff(Buffer.from('G\u0001T / HTTP/1.1')), Verdict.OTHER, 'a control byte: not text')
})

const REQUEST = 'GET /split HTTP/1.1\r\nHost: h\r\n\r\n'

t.test('HTTP: the first bytes in two writes, split at every offset', async t => {
  const origin = await startOrigin(t, () => ok('split ok'))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const bytes = Buffer.from(REQUEST)
  for (let at = 1; at < bytes.length; at++) {
    const res = await exchange(port, bytes, { split: [at], responses: 1 })
    t.equal(res.responses[0]?.body.toString(), 'split ok', `split at ${at}`)
  }
  t.equal(origin.requests.length, bytes.length - 1, 'every request reached the origin')
  t.ok(origin.requests.every(r => r.method === 'GET' && r.url === '/split'), 'each one whole')
})

t.test('another protocol: relayed to the TCP fallback, split at every offset, no byte lost', async t => {
  const backend = await startTcpBackend(t, echo)
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target] })
  const hello = Buffer.from('SSH-2.0-OpenSSH_9.6\r\n')
  for (let at = 1; at < hello.length; at++) {
    const client = await connectRaw(port)
    client.socket.write(hello.subarray(0, at))
    await tick()
    client.socket.write(hello.subarray(at))
    await client.watch.until(() => client.conn.data.length >= hello.length, 5000, `echo of split ${at}`)
    t.equal(client.conn.data.toString(), hello.toString(), `split at ${at}`)
    client.socket.destroy()
  }
  t.equal(origin.requests.length, 0, 'nothing went to the HTTP engine')
})

t.test('a text protocol that starts with a lowercase word and a space is not taken for HTTP', async t => {
  const backend = await startTcpBackend(t, conn => { conn.socket.on('data', () => conn.socket.write('END\r\n')) })
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target] })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  client.socket.write('get some:key\r\n')
  await client.watch.until(() => client.conn.data.length > 0, 5000, 'the answer')
  t.equal(client.conn.data.toString(), 'END\r\n')
  t.equal((await backend.conn(0)).data.toString(), 'get some:key\r\n')
})

t.test('server-first protocol: nothing from the client within the detect timeout → TCP fallback', async t => {
  const backend = await startTcpBackend(t, conn => {
    conn.socket.write('* OK IMAP4rev1 ready\r\n')
    conn.socket.on('data', () => { if (conn.data.toString().endsWith('\r\n')) conn.socket.end('* BYE\r\n') })
  })
  const { port } = await startProxy(t, { targets: [backend.target], timeouts: { detect: 100 } })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  await client.watch.until(() => client.conn.data.length > 0, 5000, 'the greeting')
  t.equal(client.conn.data.toString(), '* OK IMAP4rev1 ready\r\n', 'the backend spoke first')
  client.socket.write('a1 LOGOUT\r\n')
  await client.watch.until(() => client.conn.ended, 5000, 'the end of the conversation')
  t.equal(client.conn.data.toString(), '* OK IMAP4rev1 ready\r\n* BYE\r\n')
  t.equal(backend.conns[0].data.toString(), 'a1 LOGOUT\r\n')
})

t.test('a client that sends a few bytes then its FIN: the fallback gets both', async t => {
  const backend = await startTcpBackend(t)
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target] })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  client.socket.end('GE') // could still have become a GET: decided by the FIN
  const conn = await backend.conn(0, c => c.ended, 5000, 'bytes and FIN at the backend')
  t.equal(conn.data.toString(), 'GE')
})

t.test('TCP fallback disabled: such connections are closed, HTTP still served', async t => {
  const origin = await startOrigin(t, () => ok('fine'))
  const { port, events } = await startProxy(t, { targets: [origin.target], tcpFallback: false })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  client.socket.write('\x00\x01binary')
  await client.watch.until(() => client.conn.ended || client.conn.closed, 5000, 'the proxy closing')
  t.equal(client.conn.data.length, 0, 'nothing answered')
  t.equal(events.clientErrors[0]?.error.code, 'unknown_protocol')
  t.equal(events.clientErrors[0]?.error.source, 'downstream')
  const res = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(res.responses[0]?.body.toString(), 'fine')
})

t.test('TCP fallback disabled: a client silent past the detect timeout is still served HTTP', async t => {
  const origin = await startOrigin(t, () => ok('late'))
  const { port, proxy } = await startProxy(t, { targets: [origin.target], tcpFallback: false, timeouts: { detect: 50 } })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  // no event marks the hand-over: poll the stats, bounded
  for (let i = 0; i < 200 && proxy.stats().clients === 0; i++) await new Promise(resolve => setTimeout(resolve, 10))
  t.equal(proxy.stats().clients, 1, 'the silent client was handed to the HTTP engine')
  client.socket.write('GET /late HTTP/1.1\r\nHost: h\r\n\r\n')
  await client.watch.until(() => client.conn.data.toString().endsWith('late'), 5000, 'the response')
  t.match(client.conn.data.toString(), /^HTTP\/1\.1 200 OK/)
})

/** A real ClientHello, as Node's TLS client writes it for `servername`. */
async function captureClientHello (t: Test, servername: string): Promise<Buffer> {
  const capture = await startTcpBackend(t)
  const client = tls.connect({ port: capture.port, host: '127.0.0.1', servername })
  client.on('error', () => {})
  const conn = await capture.conn(0, c => parseClientHello(c.data).status === HelloStatus.OK, 5000, 'a ClientHello')
  client.destroy()
  return conn.data
}

t.test('TLS: the ClientHello split at every offset reaches the backend byte for byte', async t => {
  const hello = await captureClientHello(t, 'split.test')
  t.equal(parseClientHello(hello).serverName, 'split.test')
  const backend = await startTcpBackend(t)
  // each relay stays half-open (the backend never ends its side): one per split offset, more than
  // the default per-IP cap of 256
  const { port } = await startProxy(t, { targets: [backend.target], limits: { maxConnectionsPerIp: 4096 } })
  for (let at = 1; at < hello.length; at++) {
    const client = await connectRaw(port)
    client.socket.write(hello.subarray(0, at))
    await tick()
    client.socket.write(hello.subarray(at))
    const conn = await backend.conn(at - 1, c => c.data.length >= hello.length, 5000, `the hello split at ${at}`)
    if (!conn.data.equals(hello)) t.fail(`split at ${at}: different bytes`)
    client.socket.destroy()
  }
  t.equal(backend.conns.length, hello.length - 1, `every split (${hello.length - 1}) relayed intact`)
})

t.test('IPv6: detection on ::1', async t => {
  if (!await hasIPv6()) {
    t.plan(0, 'no IPv6 on this machine')
    return
  }
  const origin = await startOrigin(t, () => ok('v6'))
  const backend = await startTcpBackend(t, echo)
  const { port } = await startProxy(t, { listen: '[::1]:0', targets: [origin.target], tcpFallback: [backend.target] })
  const res = await exchange(port, REQUEST, { host: '::1', responses: 1 })
  t.equal(res.responses[0]?.body.toString(), 'v6')
  const client = await connectRaw(port, '::1')
  t.teardown(() => client.socket.destroy())
  client.socket.write('\x01\x02\x03')
  await client.watch.until(() => client.conn.data.length === 3, 5000, 'echo')
  t.same([...client.conn.data], [1, 2, 3])
})
