/**
 * Header rewriting, both directions: hop-by-hop headers removed, X-Forwarded-* and Via added or
 * extended in place, everything else passed with the sender's names, case, order and duplicates.
 * Every assertion is on the exact head bytes.
 */
import t from 'tap'
import { exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { hasIPv6, startProxy } from '../helpers/proxy.js'

const CRLF = '\r\n'
const lines = (...l: string[]): string => l.map(x => x + CRLF).join('') + CRLF

t.test('request: hop-by-hop headers and client X-Forwarded-Proto/Host are removed', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target] })
  await exchange(port, lines(
    'GET /h HTTP/1.1',
    'Host: h.test',
    'Connection: keep-alive, X-Custom-Hop, x-other',
    'X-Custom-Hop: 1',
    'Keep-Alive: timeout=5',
    'X-Keep-1: yes',
    'Proxy-Connection: keep-alive',
    'TE: trailers',
    'Trailer: X-T',
    'Upgrade: h2c',
    'X-Other: 2',
    'x-forwarded-proto: https',
    'X-Forwarded-Host: spoofed.test',
    'X-Keep-2: yes',
  ), { responses: 1 })
  t.equal(origin.connections[0]?.raw().toString('latin1'), lines(
    'GET /h HTTP/1.1',
    'Host: h.test',
    'X-Keep-1: yes',
    'X-Keep-2: yes',
    'X-Forwarded-For: 127.0.0.1',
    'X-Forwarded-Proto: http',
    'X-Forwarded-Host: h.test',
    'Via: 1.1 rp4',
  ))
})

t.test('request: names, case, order and duplicates pass unchanged', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target] })
  await exchange(port, lines(
    'PUT /x HTTP/1.1',
    'x-first: 1',
    'hOsT: MiXeD.test:8080',
    'X-Dup: a',
    'content-TYPE: text/plain',
    'X-Dup: b',
    'Cookie: a=1',
    'Cookie: b=2',
    'content-length: 0',
  ), { responses: 1 })
  t.equal(origin.connections[0]?.raw().toString('latin1'), lines(
    'PUT /x HTTP/1.1',
    'x-first: 1',
    'hOsT: MiXeD.test:8080',
    'X-Dup: a',
    'content-TYPE: text/plain',
    'X-Dup: b',
    'Cookie: a=1',
    'Cookie: b=2',
    'content-length: 0',
    'X-Forwarded-For: 127.0.0.1',
    'X-Forwarded-Proto: http',
    'X-Forwarded-Host: MiXeD.test:8080',
    'Via: 1.1 rp4',
  ))
})

t.test('request: an existing X-Forwarded-For and Via are extended in place (the last one)', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target] })
  await exchange(port, lines(
    'GET / HTTP/1.1',
    'x-forwarded-for: 10.0.0.1',
    'Via: 1.0 fred',
    'Host: h',
    'X-Forwarded-For: 10.0.0.2, 10.0.0.3',
    'via: 1.1 p.example (Apache/1.1)',
    'Accept: */*',
  ), { responses: 1 })
  t.equal(origin.connections[0]?.raw().toString('latin1'), lines(
    'GET / HTTP/1.1',
    'x-forwarded-for: 10.0.0.1',
    'Via: 1.0 fred',
    'Host: h',
    'X-Forwarded-For: 10.0.0.2, 10.0.0.3, 127.0.0.1',
    'via: 1.1 p.example (Apache/1.1), 1.1 rp4',
    'Accept: */*',
    'X-Forwarded-Proto: http',
    'X-Forwarded-Host: h',
  ))
})

t.test('request: HTTP/1.0 without Host gets the target as Host; with Host, keeps it', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { targets: [origin.target] })
  await exchange(port, lines('GET /old HTTP/1.0', 'User-Agent: old'))
  t.equal(origin.requests[0]?.raw.toString('latin1'), lines(
    'GET /old HTTP/1.1',
    'User-Agent: old',
    `Host: 127.0.0.1:${origin.port}`,
    'X-Forwarded-For: 127.0.0.1',
    'X-Forwarded-Proto: http',
    'Via: 1.1 rp4',
  ))
  await exchange(port, lines('GET /old HTTP/1.0', 'Host: named.test'))
  t.equal(origin.requests[1]?.raw.toString('latin1'), lines(
    'GET /old HTTP/1.1',
    'Host: named.test',
    'X-Forwarded-For: 127.0.0.1',
    'X-Forwarded-Proto: http',
    'X-Forwarded-Host: named.test',
    'Via: 1.1 rp4',
  ))
})

t.test('request and response: the via option names the hop', async t => {
  const origin = await startOrigin(t, () => 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
  const { port } = await startProxy(t, { targets: [origin.target], via: 'edge-7' })
  const res = await exchange(port, lines('GET / HTTP/1.1', 'Host: h'), { responses: 1 })
  t.match(origin.requests[0]?.raw.toString('latin1'), /\r\nVia: 1\.1 edge-7\r\n\r\n$/)
  t.equal(res.text, lines('HTTP/1.1 200 OK', 'Content-Length: 0', 'Via: 1.1 edge-7'))
})

t.test('response: hop-by-hop headers removed, the rest in order, Via extended in place', async t => {
  const origin = await startOrigin(t, () => lines(
    'HTTP/1.1 200 OK',
    'Connection: X-Resp-Hop, keep-alive',
    'X-Resp-Hop: 1',
    'set-cookie: a=1',
    'Keep-Alive: timeout=5',
    'Proxy-Connection: keep-alive',
    'Via: 1.0 backend-cache',
    'TE: trailers',
    'Upgrade: h2c',
    'Set-Cookie: b=2',
    'X-CaSe: Kept',
    'Content-Length: 2',
  ) + 'ok')
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, lines('GET / HTTP/1.1', 'Host: h'), { responses: 1 })
  t.equal(res.text, lines(
    'HTTP/1.1 200 OK',
    'set-cookie: a=1',
    'Via: 1.0 backend-cache, 1.1 rp4',
    'Set-Cookie: b=2',
    'X-CaSe: Kept',
    'Content-Length: 2',
  ) + 'ok')
})

t.test('response: a Trailer header is removed and the body still ends cleanly', async t => {
  const origin = await startOrigin(t, () =>
    lines('HTTP/1.1 200 OK', 'Trailer: X-Sum', 'Transfer-Encoding: chunked') + '4\r\nbody\r\n0\r\nX-Sum: 1\r\n\r\n')
  const { port } = await startProxy(t, { targets: [origin.target] })
  const c = await exchange(port, lines('GET / HTTP/1.1', 'Host: h'), { responses: 1 })
  const res = c.responses[0]
  t.equal(res?.head.text, lines('HTTP/1.1 200 OK', 'Transfer-Encoding: chunked', 'Via: 1.1 rp4'))
  t.equal(res?.body.toString(), 'body')
  t.equal(res?.complete, true)
})

t.test('IPv6: client address ::1 in X-Forwarded-For, IPv6 target', async t => {
  if (!(await hasIPv6())) {
    t.comment('no IPv6 loopback on this machine')
    return
  }
  const origin = await startOrigin(t, () => ok(), { host: '::1' })
  const { port } = await startProxy(t, { listen: '[::1]:0', targets: [origin.target] })
  t.equal(origin.target, `[::1]:${origin.port}`)
  await exchange(port, lines('GET / HTTP/1.1', 'Host: [::1]'), { host: '::1', responses: 1 })
  t.equal(origin.requests[0]?.raw.toString('latin1'), lines(
    'GET / HTTP/1.1',
    'Host: [::1]',
    'X-Forwarded-For: ::1',
    'X-Forwarded-Proto: http',
    'X-Forwarded-Host: [::1]',
    'Via: 1.1 rp4',
  ))
  // HTTP/1.0 with no Host: the bracketed target authority becomes the Host
  await exchange(port, lines('GET / HTTP/1.0'), { host: '::1' })
  t.equal(origin.requests[1]?.raw.toString('latin1').split(CRLF)[1], `Host: [::1]:${origin.port}`)
})

t.test('listening on every interface: IPv4 clients are shown as IPv4, IPv6 ones as IPv6', async t => {
  const origin = await startOrigin(t, () => ok())
  const { port } = await startProxy(t, { listen: ':0', targets: [origin.target] })
  await exchange(port, lines('GET /v4 HTTP/1.1', 'Host: h'), { host: '127.0.0.1', responses: 1 })
  t.match(origin.requests[0]?.raw.toString('latin1'), /\r\nX-Forwarded-For: 127\.0\.0\.1\r\n/)
  if (await hasIPv6()) {
    await exchange(port, lines('GET /v6 HTTP/1.1', 'Host: h'), { host: '::1', responses: 1 })
    t.match(origin.requests[1]?.raw.toString('latin1'), /\r\nX-Forwarded-For: ::1\r\n/)
  }
})
