/**
 * One port, the protocol detected per connection from the first bytes: HTTP to the engine, TLS by
 * its ClientHello, anything else to the TCP fallback when one is configured (none by default).
 * Every split of the first bytes into writes gives the same verdict, no byte read while deciding
 * is lost, and no pause turns the start of an HTTP request into a raw relay: the detect timeout
 * applies to silence only, a request line is held under the HTTP head timeout and data rate.
 */
import t, { type Test } from 'tap'
import tls from 'node:tls'
import { Sniffer, sniff, Verdict } from '../../lib/listener/sniff.js'
import { HelloStatus, parseClientHello } from '../../lib/tls/client-hello.js'
import { RawClient, exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { hasIPv6, startProxy } from '../helpers/proxy.js'
import { connectRaw, echo, startTcpBackend } from '../helpers/tls-backends.js'
import { tick } from '../helpers/wait.js'
import { undated } from '../helpers/dates.js'

t.test('sniff: an HTTP request line is decided at its end; other protocols as early as their bytes allow', async t => {
  for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'M-SEARCH', 'PROPPATCH', 'PRI']) {
    const line = Buffer.from(method + ' / HTTP/1.1\r\n')
    const end = line.length - 2
    for (let n = 1; n <= end; n++) t.equal(sniff(line.subarray(0, n)), Verdict.HTTP_PREFIX, `${method}: ${n} bytes, still a request line's prefix`)
    t.equal(sniff(line.subarray(0, end + 1)), Verdict.HTTP, `${method}: HTTP at the end of the line`)
  }
  t.equal(sniff(Buffer.from('GET / HTTP/1.0\n')), Verdict.HTTP, 'a bare LF ends the line too (the engine judges it)')
  t.equal(sniff(Buffer.from('HELLO THERE HTTP/1.1\r\n')), Verdict.HTTP, 'an unknown method on a line that ends like HTTP: HTTP (the engine answers 400)')
  t.equal(sniff(Buffer.from('GET http://a.test/x?y=1 HTTP/1.1\r\n')), Verdict.HTTP, 'absolute form')
  t.equal(sniff(Buffer.from('OPTIONS * HTTP/1.1\r\n')), Verdict.HTTP, 'asterisk form')
  t.equal(sniff(Buffer.from('GET /\xe9 HTTP/1.1\r\n', 'latin1')), Verdict.HTTP, 'bytes over 0x7f in the target: the engine judges them')

  // text protocols whose first word looks like a method: only the rest of the line tells
  t.equal(sniff(Buffer.from('SET k ')), Verdict.HTTP_PREFIX, 'Redis inline, undecided while it could still be HTTP')
  t.equal(sniff(Buffer.from('SET k v')), Verdict.OTHER, 'Redis inline: decided at the first byte that cannot start "HTTP/1."')
  t.equal(sniff(Buffer.from('SET k v\r\n')), Verdict.OTHER)
  t.equal(sniff(Buffer.from('HELO x')), Verdict.HTTP_PREFIX, 'SMTP HELO, undecided until its line ends')
  t.equal(sniff(Buffer.from('HELO x\r\n')), Verdict.OTHER, 'SMTP HELO: a line ending without a version')
  t.equal(sniff(Buffer.from('QUIT\r\n')), Verdict.OTHER, 'a bare command')
  t.equal(sniff(Buffer.from('GET /\r\n')), Verdict.OTHER, 'no version (HTTP/0.9 form)')
  t.equal(sniff(Buffer.from('GET / HTTP/2.0\r\n')), Verdict.OTHER, 'not HTTP/1.x')
  t.equal(sniff(Buffer.from('GET / HTTP/1.1 \r\n')), Verdict.OTHER, 'something after the version')
  t.equal(sniff(Buffer.from('GET  / HTTP/1.1\r\n')), Verdict.OTHER, 'an empty target')
  t.equal(sniff(Buffer.from('GET /\x00 HTTP/1.1\r\n')), Verdict.OTHER, 'a control byte in the target')

  // bounded: a target longer than the request-line limit is the engine's (its 414)
  t.equal(sniff(Buffer.from('GET /' + 'a'.repeat(15)), 16), Verdict.HTTP_PREFIX, 'a target of the limit: undecided')
  t.equal(sniff(Buffer.from('GET /' + 'a'.repeat(16)), 16), Verdict.HTTP, 'one byte over: HTTP, never a relay')
  t.equal(sniff(Buffer.from('A'.repeat(32))), Verdict.HTTP_PREFIX, 'a method of 32 characters is waited for')
  t.equal(sniff(Buffer.from('A'.repeat(33))), Verdict.OTHER, 'no method is that long')

  // decided at the first byte
  t.equal(sniff(Buffer.from('get / HTTP/1.1\r\n')), Verdict.OTHER, 'lowercase (methods are case-sensitive; memcached\'s get): not HTTP')
  t.equal(sniff(Buffer.from('g')), Verdict.OTHER, 'decided at the first byte that no method starts with')
  t.equal(sniff(Buffer.from('*1\r\n$4\r\nPING\r\n')), Verdict.OTHER, 'RESP')
  t.equal(sniff(Buffer.from('SSH-2.0-OpenSSH_9.6\r\n')), Verdict.OTHER)
  t.equal(sniff(Buffer.from([0x16])), Verdict.MORE, 'a handshake byte alone: undecided')
  t.equal(sniff(Buffer.from([0x16, 0x03])), Verdict.TLS)
  t.equal(sniff(Buffer.from([0x16, 0x00])), Verdict.OTHER)
  t.equal(sniff(Buffer.from([0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f])), Verdict.OTHER, 'a PostgreSQL SSLRequest')
  t.equal(sniff(Buffer.alloc(0)), Verdict.MORE, 'nothing yet')

  // without a fallback to choose, the first byte of a method is final
  const first = new Sniffer(16, false)
  t.equal(first.feed(Buffer.from('SET k v\r\n')), Verdict.HTTP_PREFIX, 'no fallback: the engine\'s from the first byte, whatever follows')
  t.equal(new Sniffer(16, false).feed(Buffer.from('g')), Verdict.OTHER)
  t.equal(new Sniffer(16, false).feed(Buffer.from([0x16, 0x03])), Verdict.TLS)
})

t.test('sniff: fed one byte at a time or in one piece, the same verdict', async t => {
  const inputs = ['GET / HTTP/1.1\r\n', 'SET k v\r\n', 'HELO x\r\n', 'GET /' + 'a'.repeat(20), 'get x', '\x16\x03\x01', 'POST /x HTTP/1.', 'A'.repeat(40)]
  for (const input of inputs) {
    const bytes = Buffer.from(input, 'latin1')
    const sniffer = new Sniffer(16)
    for (let i = 0; i < bytes.length; i++) sniffer.feed(bytes.subarray(i, i + 1))
    t.equal(sniffer.verdict, sniff(bytes, 16), JSON.stringify(input))
  }
})

t.test('sniff: a method with bytes outside a token is HTTP when the rest of the line is (the engine answers 400)', async t => {
  for (const line of ['GE(T / HTTP/1.1\r\n', 'G@T * HTTP/1.1\r\n', 'GE.T http://h/ HTTP/1.1\r\n', 'G"T https://h/ HTTP/1.1\r\n']) {
    const bytes = Buffer.from(line)
    const space = line.indexOf(' ')
    t.equal(sniff(bytes.subarray(0, space + 1)), Verdict.HTTP_PREFIX, `${JSON.stringify(line)}: still a possible request line at the space`)
    t.equal(sniff(bytes), Verdict.HTTP, JSON.stringify(line))
  }
  t.equal(sniff(Buffer.from('SSH-2.0-OpenSSH_8.9p1 Ubuntu-3\r\n')), Verdict.OTHER, 'an SSH banner with a comment')
  t.equal(sniff(Buffer.from('GE(T x')), Verdict.OTHER, 'no request target after the space')
  t.equal(sniff(Buffer.from('GE(T htt')), Verdict.HTTP_PREFIX, 'may still become http://')
  t.equal(sniff(Buffer.from('GE(T / HELLO\r\n')), Verdict.OTHER, 'a line that does not end like HTTP')
  t.equal(sniff(Buffer.from('G\u0001T / HTTP/1.1')), Verdict.OTHER, 'a control byte: not text')
})

const REQUEST = 'GET /split HTTP/1.1\r\nHost: h\r\n\r\n'

t.test('sniff: empty lines (CRLF) before a request line are HTTP (RFC 9112 2.2), up to 32 bytes of them', async t => {
  t.equal(sniff(Buffer.from('\r')), Verdict.MORE, 'a CR: undecided until its LF')
  t.equal(sniff(Buffer.from('\r\n')), Verdict.HTTP_PREFIX, 'one CRLF: a request line may follow')
  t.equal(sniff(Buffer.from('\r\nGET / HTTP/1.1\r\n')), Verdict.HTTP, 'CRLF, then a request line')
  t.equal(sniff(Buffer.from('\r\n\r\nGET / HTTP/1.1\r\n')), Verdict.HTTP, 'two CRLFs, then a request line')
  t.equal(sniff(Buffer.from('\r\n'.repeat(16) + 'GET / HTTP/1.1\r\n')), Verdict.HTTP, '32 bytes of empty lines')
  t.equal(sniff(Buffer.from('\r\n'.repeat(16) + '\r')), Verdict.OTHER, 'a 33rd byte of them: not waited for')
  t.equal(sniff(Buffer.from('\rGET / HTTP/1.1\r\n')), Verdict.OTHER, 'a CR without its LF is no empty line')
  t.equal(sniff(Buffer.from('\nGET / HTTP/1.1\r\n')), Verdict.OTHER, 'nor is a bare LF')
  t.equal(sniff(Buffer.from('\r\nSSH-2.0-x\r\n')), Verdict.OTHER, 'the line after them is judged as a first line')
  t.equal(sniff(Buffer.from('\r\nget k\r\n')), Verdict.OTHER, 'lowercase after them: another protocol')
  t.equal(sniff(Buffer.from([0x0d, 0x0a, 0x16, 0x03, 0x01])), Verdict.OTHER, 'a TLS record only at the very first byte')
})

t.test('empty lines before the request line: served, with and without a fallback, however the writes cut them', async t => {
  const origin = await startOrigin(t, () => ok('after empty lines'))
  const backend = await startTcpBackend(t, echo)
  const plain = await startProxy(t, { targets: [origin.target] })
  const withFallback = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target] })
  for (const [name, port] of [['no fallback', plain.port], ['fallback', withFallback.port]] as const) {
    for (const lead of ['\r\n', '\r\n\r\n']) {
      const bytes = Buffer.from(`${lead}GET /lead HTTP/1.1\r\nHost: h\r\n\r\n`)
      // cut at every offset (between a CR and its LF, after the empty lines, inside the method),
      // then one byte at a time with a pause between each
      const splits: Array<number[] | 'byte'> = [[], ...Array.from({ length: bytes.length - 1 }, (_, i) => [i + 1]), 'byte']
      for (const split of splits) {
        const res = await exchange(port, bytes, { split, responses: 1 })
        t.equal(res.responses[0]?.head.line[1], '200', `${name}, ${JSON.stringify(lead)}, split at ${Array.isArray(split) ? split.join() || 'none' : split}`)
        t.equal(res.responses[0]?.body.toString(), 'after empty lines')
      }
    }
  }
  t.equal(origin.requests.length, 2 * ((33 + 1) + (35 + 1)), 'every request reached the origin')
  t.ok(origin.requests.every(r => r.method === 'GET' && r.url === '/lead'), 'as GET /lead, the empty lines not forwarded')
})

t.test('a CR without its LF, or a bare LF, before a request line: not HTTP (closed, or relayed to the fallback)', async t => {
  const origin = await startOrigin(t, () => ok('never'))
  const backend = await startTcpBackend(t, echo)
  const plain = await startProxy(t, { targets: [origin.target] })
  for (const bytes of ['\rGET / HTTP/1.1\r\nHost: h\r\n\r\n', '\nGET / HTTP/1.1\r\nHost: h\r\n\r\n']) {
    for (const split of [[], [1]]) {
      const res = await exchange(plain.port, bytes, { split, ms: 5000 })
      t.equal(res.raw.length, 0, `${JSON.stringify(bytes.slice(0, 2))}, split at ${split.join() || 'none'}: closed, nothing answered`)
    }
  }
  t.equal(origin.requests.length, 0, 'nothing reached the origin')
  t.equal(plain.events.clientErrors.filter(e => e.error.code === 'unknown_protocol').length, 4, 'four unknown_protocol errors')
  const withFallback = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target] })
  const client = await connectRaw(withFallback.port)
  t.teardown(() => client.socket.destroy())
  client.socket.write('\r')
  await tick()
  client.socket.write('SSH-2.0-x\r\n')
  await client.watch.until(() => client.conn.data.length >= 12, 5000, 'the echo')
  t.equal(client.conn.data.toString(), '\rSSH-2.0-x\r\n', 'relayed whole to the fallback')
  t.equal(origin.requests.length, 0)
})

t.test('a CR, then silence or the FIN: not HTTP (closed under the detect timeout, or relayed); more than 32 bytes of empty lines: the engine\'s without a fallback, relayed with one', async t => {
  const origin = await startOrigin(t, () => ok('served'))
  const backend = await startTcpBackend(t, echo)
  const plain = await startProxy(t, { targets: [origin.target], timeouts: { detect: 100 } })
  const paused = await connectRaw(plain.port)
  t.teardown(() => paused.socket.destroy())
  paused.socket.write('\r')
  await paused.watch.until(() => paused.conn.ended || paused.conn.closed, 5000, 'closed after the detect timeout')
  const ended = await connectRaw(plain.port)
  t.teardown(() => ended.socket.destroy())
  ended.socket.end('\r')
  await ended.watch.until(() => ended.conn.ended || ended.conn.closed, 5000, 'closed after the FIN')
  t.equal(paused.conn.data.length + ended.conn.data.length, 0, 'nothing answered')
  t.equal(plain.events.clientErrors.filter(e => e.error.code === 'unknown_protocol').length, 2, 'two unknown_protocol errors')
  t.equal(origin.requests.length, 0, 'nothing reached the origin')
  // without a fallback the engine has a connection from its first CRLF on (its parser skips empty
  // lines, its head timeout bounds them), as it has one from a method's first letter
  const many = '\r\n'.repeat(17) + 'GET /many HTTP/1.1\r\nHost: h\r\n\r\n'
  const served = await exchange(plain.port, many, { responses: 1 })
  t.equal(served.responses[0]?.body.toString(), 'served', '34 bytes of empty lines, no fallback: the engine serves the request')
  t.equal(origin.requests.at(-1)?.url, '/many')

  const withFallback = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target], timeouts: { detect: 100 } })
  const relayed = await connectRaw(withFallback.port)
  t.teardown(() => relayed.socket.destroy())
  relayed.socket.write('\r')
  await relayed.watch.until(() => relayed.conn.data.length >= 1, 5000, 'the echo of the CR')
  t.equal(relayed.conn.data.toString(), '\r', 'with a fallback, a silent CR is relayed to it')
  const long = await connectRaw(withFallback.port)
  t.teardown(() => long.socket.destroy())
  long.socket.write(many)
  await long.watch.until(() => long.conn.data.length >= many.length, 5000, 'the echo of the empty lines')
  t.equal(long.conn.data.toString(), many, 'with a fallback, more than 32 bytes of empty lines are not waited on: relayed whole')
  t.equal(origin.requests.length, 1, 'only the request without a fallback reached the origin')
})

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

t.test('server-first protocol, with a fallback: nothing from the client within the detect timeout → relayed', async t => {
  const backend = await startTcpBackend(t, conn => {
    conn.socket.write('* OK IMAP4rev1 ready\r\n')
    conn.socket.on('data', () => { if (conn.data.toString().endsWith('\r\n')) conn.socket.end('* BYE\r\n') })
  })
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target], timeouts: { detect: 100 } })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  await client.watch.until(() => client.conn.data.length > 0, 5000, 'the greeting')
  t.equal(client.conn.data.toString(), '* OK IMAP4rev1 ready\r\n', 'the backend spoke first')
  client.socket.write('a1 LOGOUT\r\n')
  await client.watch.until(() => client.conn.ended, 5000, 'the end of the conversation')
  t.equal(client.conn.data.toString(), '* OK IMAP4rev1 ready\r\n* BYE\r\n')
  t.equal(backend.conns[0].data.toString(), 'a1 LOGOUT\r\n')
  t.equal(origin.connections.length, 0)
})

t.test('server-first protocol, with a fallback: every one of many clients at once gets its greeting, under load', async t => {
  const GREETING = '220 ready\r\n'
  const backend = await startTcpBackend(t, conn => conn.socket.write(GREETING))
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target], timeouts: { detect: 50 } })
  // the event loop blocked for stretches longer than the detect timeout, as on a busy machine:
  // sweeps of the clock come late, in bursts with reads, FINs and connects
  const blocker = setInterval(() => { const until = Date.now() + 20 + Math.random() * 80; while (Date.now() < until); }, 40)
  t.teardown(() => clearInterval(blocker))
  const ROUNDS = 4
  const CLIENTS = 50
  let greeted = 0
  for (let round = 0; round < ROUNDS; round++) {
    const clients = await Promise.all(Array.from({ length: CLIENTS }, () => connectRaw(port)))
    clients.forEach((client, i) => {
      // a quarter half-close at once ("nothing to say"): the FIN races the detect timeout; a
      // quarter send a binary hello first: decided by their bytes or by the timeout, the same place
      if (i % 4 === 1) client.socket.end()
      if (i % 4 === 2) client.socket.write('\x00\x01')
    })
    for (const [i, client] of clients.entries()) {
      await client.watch.until(() => client.conn.data.length >= GREETING.length || client.conn.closed, 10_000, `round ${round}, client ${i}: the greeting`)
      if (client.conn.data.toString() === GREETING) greeted++
      else t.fail(`round ${round}, client ${i} (${['silent', 'FIN', 'bytes', 'silent'][i % 4]}): got ${JSON.stringify(client.conn.data.toString())}, closed ${client.conn.closed}`)
      client.socket.destroy()
    }
  }
  clearInterval(blocker)
  t.equal(greeted, ROUNDS * CLIENTS, 'every client got the greeting')
  t.equal(backend.conns.length, ROUNDS * CLIENTS, 'one fallback connection per client')
  t.equal(origin.connections.length, 0, 'none was taken for HTTP')
})

t.test('with a fallback: bytes that came before the detect timeout decide, even when read after it', async t => {
  const backend = await startTcpBackend(t, conn => conn.socket.write('220 ready\r\n'))
  const origin = await startOrigin(t, () => ok('http'))
  const { port, proxy } = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target], timeouts: { detect: 50 } })
  for (let i = 0; i < 5; i++) {
    // one connection at a time, so that the count below is this one's (polled: no event for it)
    for (let n = 0; n < 1000 && proxy.stats().connections > 0; n++) await pause(2)
    const client = await RawClient.connect(port)
    t.teardown(() => client.destroy())
    for (let n = 0; n < 1000 && proxy.stats().connections === 0; n++) await pause(2)
    t.equal(proxy.stats().connections, 1, `${i}: accepted, its detect timeout running`)
    client.socket.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n')
    // the process is busy past the detect timeout: the request sits unread in the kernel, and
    // the next turn of the event loop runs the timers before the reads
    const until = Date.now() + 200
    while (Date.now() < until);
    const res = await client.response()
    t.equal(res.body.toString(), 'http', `${i}: served as HTTP, not relayed as a silent client`)
    client.destroy()
  }
  t.equal(backend.conns.length, 0, 'no client was taken for silent')
})

t.test('with a fallback: bytes of another protocol then the FIN, both reach the fallback', async t => {
  const backend = await startTcpBackend(t)
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target] })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  client.socket.end('SET k v') // decided at the "v", the FIN right behind it
  const conn = await backend.conn(0, c => c.ended, 5000, 'bytes and FIN at the backend')
  t.equal(conn.data.toString(), 'SET k v')
})

t.test('with a fallback: a FIN before any byte is relayed at once (the backend may still speak first)', async t => {
  const backend = await startTcpBackend(t, conn => conn.socket.end('220 ready\r\n'))
  const origin = await startOrigin(t, () => ok())
  // a detect timeout that a spec never waits out: the FIN alone decides
  const { port } = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target], timeouts: { detect: 60_000 } })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  client.socket.end()
  await client.watch.until(() => client.conn.ended, 5000, 'the greeting and the FIN')
  t.equal(client.conn.data.toString(), '220 ready\r\n')
  t.equal((await backend.conn(0, c => c.ended, 5000, 'the FIN at the backend')).data.length, 0)
})

t.test('with a fallback: the start of a request line then the FIN goes to the HTTP engine, not the fallback', async t => {
  const backend = await startTcpBackend(t)
  const origin = await startOrigin(t, () => ok())
  const { port, events } = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target] })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  client.socket.end('GE')
  await client.watch.until(() => client.conn.closed, 5000, 'the proxy closing')
  t.equal(client.conn.data.length, 0, 'closed at the FIN, as the engine closes a truncated head (not a 408 later)')
  t.equal(events.clientErrors.length, 0)
  t.equal(backend.conns.length, 0, 'nothing relayed raw')
  t.equal(origin.connections.length, 0)
})

t.test('default (no fallback): other bytes close the connection, HTTP still served', async t => {
  const origin = await startOrigin(t, () => ok('fine'))
  const { port, events } = await startProxy(t, { targets: [origin.target] })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  client.socket.write('\x00\x01binary')
  await client.watch.until(() => client.conn.ended || client.conn.closed, 5000, 'the proxy closing')
  t.equal(client.conn.data.length, 0, 'nothing answered')
  t.equal(events.clientErrors[0]?.error.code, 'unknown_protocol')
  t.equal(events.clientErrors[0]?.error.source, 'downstream')
  const res = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  t.equal(res.responses[0]?.body.toString(), 'fine')
  t.equal(origin.connections.length, 1, 'the origin saw only the HTTP request')
})

t.test('tcpFallback: false is the default spelled out; text that is no request gets the engine\'s 400, binary is closed on', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port, events } = await startProxy(t, { targets: [origin.target], tcpFallback: false })
  for (const text of ['get key\r\n', 'get / HTTP/1.1\r\nHost: h\r\n\r\n', '*1\r\n$4\r\nPING\r\n', '{"jsonrpc":"2.0"}\n']) {
    const res = await exchange(port, text)
    t.equal(undated(res.text), 'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n', `${JSON.stringify(text)}: 400 and close`)
  }
  const binary = await exchange(port, Buffer.from([0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f]))
  t.equal(binary.raw.length, 0, 'binary: closed, nothing answered')
  t.ok(events.clientErrors.some(e => e.error.code === 'unknown_protocol'), 'binary: unknown_protocol')
  t.equal(origin.connections.length, 0, 'nothing reached the backend')
})

t.test('default (no fallback): a line like Redis\'s SET gets the HTTP engine\'s 400 however it is cut', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target] })
  const line = 'SET k v\r\n'
  for (let at = 0; at < line.length; at++) {
    const res = await exchange(port, line, at === 0 ? {} : { split: [at] })
    t.equal(undated(res.text), rp4Error(400, 'Bad Request'), at === 0 ? 'whole' : `cut at ${at}`)
  }
  t.equal(origin.connections.length, 0)
})

t.test('default (no fallback): a client silent past the detect timeout is still served HTTP', async t => {
  const origin = await startOrigin(t, () => ok('late'))
  const { port, proxy } = await startProxy(t, { targets: [origin.target], timeouts: { detect: 50 } })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  // no event marks the hand-over: poll the stats, bounded
  for (let i = 0; i < 200 && proxy.stats().clients === 0; i++) await pause(10)
  t.equal(proxy.stats().clients, 1, 'the silent client was handed to the HTTP engine')
  client.socket.write('GET /late HTTP/1.1\r\nHost: h\r\n\r\n')
  await client.watch.until(() => client.conn.data.toString().endsWith('late'), 5000, 'the response')
  t.match(client.conn.data.toString(), /^HTTP\/1\.1 200 OK/)
})

/** rp4's own error response, closing the connection. */
function rp4Error (status: number, reason: string): string {
  const body = `${status} ${reason}\n`
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`
}

/** A client's pause: what some of these specs test is what happens while the client says nothing. */
function pause (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

const SLOW_REQUEST = 'GET /echo HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n'
/** What the origin must see: the client's X-Forwarded-For extended with its real address, rp4's headers added. */
const SLOW_FORWARDED = 'GET /echo HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6, 127.0.0.1\r\n' +
  'X-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nVia: 1.1 rp4\r\n\r\n'
const IDENTIFYING = ['Server: origin/1.0', 'X-Powered-By: PHP/8']

for (const fallback of [false, true]) {
  const name = fallback ? 'with a fallback' : 'default (no fallback)'

  t.test(`${name}: "G", a pause past the detect timeout, then the rest: proxied as HTTP, never relayed raw`, async t => {
    const origin = await startOrigin(t, () => ok('ok', IDENTIFYING))
    const backend = await startTcpBackend(t, echo)
    const { port, events } = await startProxy(t, {
      targets: [origin.target],
      ...(fallback ? { tcpFallback: [backend.target] } : {}),
      timeouts: { detect: 50 },
    })
    const client = await RawClient.connect(port)
    t.teardown(() => client.destroy())
    await client.write('G')
    await pause(300) // six detect timeouts
    await client.write(SLOW_REQUEST.slice(1))
    const res = await client.response()
    t.equal(origin.connections[0]?.raw().toString('latin1'), SLOW_FORWARDED, 'X-Forwarded-For extended, rp4\'s headers added')
    t.equal(client.text(), 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 rp4\r\n\r\nok', 'Server and X-Powered-By removed')
    t.equal(res.body.toString(), 'ok')
    t.equal(backend.conns.length, 0, 'nothing reached the fallback')
    t.equal(events.responses[0]?.status, 200, 'an exchange of the HTTP engine')
  })

  t.test(`${name}: a request line with a pause after every byte: still HTTP`, async t => {
    const origin = await startOrigin(t, () => ok())
    const backend = await startTcpBackend(t, echo)
    const { port } = await startProxy(t, {
      targets: [origin.target],
      ...(fallback ? { tcpFallback: [backend.target] } : {}),
      timeouts: { detect: 20 },
    })
    const client = await RawClient.connect(port)
    t.teardown(() => client.destroy())
    const line = 'GET / HTTP/1.1\r\n'
    for (const byte of line) {
      await client.write(byte)
      await pause(30) // longer than the detect timeout, every time
    }
    await client.write('Host: h\r\n\r\n')
    await client.response()
    t.equal(origin.connections[0]?.raw().toString('latin1'), 'GET / HTTP/1.1\r\nHost: h\r\n' +
      'X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nVia: 1.1 rp4\r\n\r\n', 'forwarded by the HTTP engine')
    t.equal(backend.conns.length, 0, 'nothing reached the fallback')
  })

  t.test(`${name}: a head trickled one byte at a time is answered 408 by the HTTP engine, before it completes`, async t => {
    const origin = await startOrigin(t, () => ok())
    const backend = await startTcpBackend(t, echo)
    const { port, events } = await startProxy(t, {
      targets: [origin.target],
      ...(fallback ? { tcpFallback: [backend.target] } : {}),
      timeouts: { detect: 50, requestHead: 400 },
    })
    const client = await RawClient.connect(port)
    t.teardown(() => client.destroy())
    // the request line alone takes 2 s at this pace: the head timeout falls inside it
    const head = 'GET /' + 'a'.repeat(20) + ' HTTP/1.1\r\nHost: h\r\n\r\n'
    let sent = 0
    for (; sent < head.length && !client.closed && client.raw().length === 0; sent++) {
      await client.write(head[sent])
      await pause(60)
    }
    await client.waitResponses(1)
    t.equal(undated(client.text()), rp4Error(408, 'Request Timeout'))
    t.ok(sent < 'GET /'.length + 20, `refused inside the request line (after ${sent} bytes)`)
    t.ok(events.clientErrors.some(e => e.error.code === 'request_head_timeout'), 'the engine\'s request_head_timeout')
    t.equal(backend.conns.length, 0, 'nothing reached the fallback')
    t.equal(origin.connections.length, 0)
  })

  t.test(`${name}: the start of a request line, then silence: the HTTP engine's 408 at the head timeout, no relay`, async t => {
    const origin = await startOrigin(t, () => ok())
    const backend = await startTcpBackend(t, echo)
    const { port, events } = await startProxy(t, {
      targets: [origin.target],
      ...(fallback ? { tcpFallback: [backend.target] } : {}),
      timeouts: { detect: 50, requestHead: 300 },
    })
    for (const start of ['G', 'GET /', 'GET / HTTP/1.1\r\nHost: h\r\n']) {
      const client = await RawClient.connect(port)
      t.teardown(() => client.destroy())
      await client.write(start)
      await client.waitResponses(1)
      t.equal(undated(client.text()), rp4Error(408, 'Request Timeout'), JSON.stringify(start))
    }
    t.equal(events.clientErrors.filter(e => e.error.code === 'request_head_timeout').length, 3, 'the engine\'s request_head_timeout, each time')
    t.equal(backend.conns.length, 0, 'nothing reached the fallback')
    t.equal(origin.connections.length, 0)
  })
}

t.test('with a fallback: the minimum data rate applies while the request line is still undecided', async t => {
  const origin = await startOrigin(t, () => ok())
  const backend = await startTcpBackend(t, echo)
  const { port, events } = await startProxy(t, {
    targets: [origin.target],
    tcpFallback: [backend.target],
    minDataRate: 100,
    timeouts: { detect: 50, requestHead: 60_000 },
  })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  // about 20 bytes/s: the 2 s grace ends while the 130-byte request line is still coming
  const line = 'GET /' + 'a'.repeat(120) + ' HTTP/1.1\r\nHost: h\r\n\r\n'
  let sent = 0
  for (; sent < line.length && !client.closed && client.raw().length === 0; sent++) {
    await client.write(line[sent])
    await pause(50)
  }
  await client.waitResponses(1)
  t.equal(undated(client.text()), rp4Error(408, 'Request Timeout'))
  t.ok(sent < 125, `refused inside the request line (after ${sent} bytes), not after the 60 s head timeout`)
  t.ok(events.clientErrors.some(e => e.error.code === 'request_head_timeout' && /slower than 100/.test(e.error.message)))
  t.equal(backend.conns.length, 0)
})

t.test('with a fallback: text protocols whose first word looks like a method go to the fallback', async t => {
  const backend = await startTcpBackend(t, echo)
  const origin = await startOrigin(t, () => ok())
  const { port, events } = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target] })
  for (const line of ['SET k v\r\n', 'HELO x\r\n', 'QUIT\r\n', 'GET /nothing-after\r\n']) {
    const client = await connectRaw(port)
    t.teardown(() => client.socket.destroy())
    client.socket.write(line)
    await client.watch.until(() => client.conn.data.length >= line.length, 5000, `the echo of ${JSON.stringify(line)}`)
    t.equal(client.conn.data.toString(), line, `${JSON.stringify(line)} relayed and echoed`)
  }
  t.equal(origin.connections.length, 0, 'the HTTP engine answered none of them')
  t.equal(events.clientErrors.length, 0)
})

t.test('with a fallback: a request target past the request-line limit is the engine\'s 414', async t => {
  const backend = await startTcpBackend(t, echo)
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target], maxRequestLine: 64 })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  // no space nor version ever comes: the limit decides
  await client.write('GET /' + 'a'.repeat(100))
  await client.waitResponses(1)
  t.equal(undated(client.text()), rp4Error(414, 'URI Too Long'))
  t.equal(backend.conns.length, 0)
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
  // no certificate: relayed raw, to the fallback. Each relay stays half-open (the backend never
  // ends its side): one per split offset, more than the default per-IP cap of 256
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target], tcpFallback: [backend.target], limits: { maxConnectionsPerIp: 4096 } })
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
