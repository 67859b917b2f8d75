/**
 * The PROXY protocol end to end: headers accepted only from trusted senders, the client they
 * name used for access lists, X-Forwarded-For and the events; headers sent to targets (TCP and
 * HTTP); and HAProxy as a real peer on loopback on both sides (send-proxy-v2 in front of rp4,
 * accept-proxy behind it).
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { encodeProxyHeader } from '../../lib/http/proxy-header.js'
import { RawClient } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy, unusedPort } from '../helpers/proxy.js'
import { connectRaw, startTcpBackend } from '../helpers/tls-backends.js'
import { tick, within } from '../helpers/wait.js'

const GET = 'GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'

function xff (raw: Buffer | undefined): string | undefined {
  return /\r\nX-Forwarded-For: ([^\r]*)\r\n/i.exec(raw?.toString('latin1') ?? '')?.[1]
}

t.test('a trusted sender\'s v1 and v2 headers name the client: X-Forwarded-For, events, access lists', async t => {
  const origin = await startOrigin(t, () => ok('hi'))
  const { port, events } = await startProxy(t, {
    targets: [origin.target], acceptProxy: { from: ['127.0.0.1/32'] }, access: { deny: ['203.0.113.0/24'] },
  })
  const v1 = await RawClient.connect(port)
  t.teardown(() => v1.destroy())
  await v1.write('PROXY TCP4 198.51.100.7 127.0.0.1 40001 80\r\n' + GET)
  t.equal((await v1.response(0)).body.toString(), 'hi')
  t.equal(xff(origin.requests[0]?.raw), '198.51.100.7', 'X-Forwarded-For: the client the header named')

  // the header alone first (a balancer sends it on connect, before the client's first byte)
  const alone = await RawClient.connect(port)
  t.teardown(() => alone.destroy())
  await alone.write('PROXY TCP4 198.51.100.8 127.0.0.1 40009 80\r\n')
  await tick()
  await alone.write(GET)
  t.equal((await alone.response(0)).body.toString(), 'hi', 'a header alone, the request later')
  origin.requests.splice(1)
  events.responses.splice(1)

  const v2 = await RawClient.connect(port)
  t.teardown(() => v2.destroy())
  // the header and the request cut anywhere: the header in pieces, then the request
  const header = encodeProxyHeader(2, { ip: '2001:db8::9', port: 40002 }, { ip: '::1', port: 80 })
  await v2.write(header.subarray(0, 7))
  await v2.write(Buffer.concat([header.subarray(7), Buffer.from(GET)]))
  await v2.response(0)
  t.equal(xff(origin.requests[1]?.raw), '2001:db8::9')
  await events.until(() => events.responses.length === 2, 5000, 'two response events')
  t.same(events.responses.map(r => r.client), ['198.51.100.7:40001', '[2001:db8::9]:40002'], 'the events show the named clients')

  const denied = await RawClient.connect(port)
  t.teardown(() => denied.destroy())
  await denied.write('PROXY TCP4 203.0.113.9 127.0.0.1 40003 80\r\n' + GET)
  await denied.waitClose()
  t.equal(denied.responses.length, 0, 'a client the access lists deny is refused, though its balancer is trusted')
  await events.until(() => events.clientErrors.some(e => e.error.code === 'access_denied'), 5000, 'the refusal')
  t.equal(events.clientErrors.find(e => e.error.code === 'access_denied')?.client, '203.0.113.9:40003')

  const local = await RawClient.connect(port)
  t.teardown(() => local.destroy())
  const health = encodeProxyHeader(2, { ip: '127.0.0.1', port: 1 }, { ip: '127.0.0.1', port: 2 })
  health[12] = 0x20 // LOCAL: the balancer's own health check
  await local.write(Buffer.concat([health, Buffer.from(GET)]))
  await local.response(0)
  t.equal(xff(origin.requests[2]?.raw), '127.0.0.1', 'LOCAL: the connection\'s own address')
})

t.test('a trusted sender without a header, a bad header, a silent one: closed; an untrusted header is never honoured', async t => {
  const origin = await startOrigin(t, () => ok())
  const backend = await startTcpBackend(t)
  const trusted = await startProxy(t, { targets: [origin.target], acceptProxy: { from: ['127.0.0.1'], timeout: '200ms' } })
  for (const [bytes, code] of [[GET, 'proxy_header_invalid'], ['PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', 'proxy_header_invalid'], ['PROXY TCP4 1.2', 'proxy_header_timeout']] as const) {
    const client = await RawClient.connect(trusted.port)
    t.teardown(() => client.destroy())
    await client.write(bytes)
    await client.waitClose()
    t.equal(client.responses.length, 0, `${JSON.stringify(bytes)}: closed without an answer`)
    await trusted.events.until(() => trusted.events.clientErrors.some(e => e.error.code === code), 5000, code)
  }
  t.equal(origin.requests.length, 0)

  // 127.0.0.1 is not trusted here: its header is HTTP rp4 does not serve, and never reaches the fallback
  const untrusted = await startProxy(t, { targets: [origin.target], acceptProxy: { from: ['10.0.0.0/8'] }, tcpFallback: [backend.target] })
  for (const header of [Buffer.from('PROXY TCP4 198.51.100.7 127.0.0.1 1 2\r\n'), encodeProxyHeader(2, { ip: '198.51.100.7', port: 1 }, { ip: '127.0.0.1', port: 2 })]) {
    const { socket, conn, watch } = await connectRaw(untrusted.port)
    socket.write(Buffer.concat([header, Buffer.from(GET)]))
    await watch.until(() => conn.ended || conn.closed, 5000, 'the connection to end')
    socket.destroy()
    t.notMatch(conn.data.toString('latin1'), /^HTTP\/1\.1 200/, 'not served as the client it names')
  }
  t.equal(backend.conns.length, 0, 'nothing relayed to the fallback')
  t.equal(origin.requests.length, 0, 'nothing forwarded')
})

t.test('sendProxy: v1 to a TCP target, v2 to an HTTP target (one connection per request), exact bytes', async t => {
  const tcpBackend = await startTcpBackend(t)
  const tcp = await startProxy(t, { listen: '127.0.0.1:0', targets: [tcpBackend.target], tcp: true, sendProxy: 'v1' })
  const { socket } = await connectRaw(tcp.port)
  const local = socket.localPort
  socket.write('hello')
  await tcpBackend.until(() => tcpBackend.conns[0]?.data.toString().endsWith('hello') === true, 5000, 'the relayed bytes')
  t.equal(tcpBackend.conns[0].data.toString(), `PROXY TCP4 127.0.0.1 127.0.0.1 ${local} ${tcp.port}\r\nhello`)
  socket.end()
  await tcpBackend.until(() => tcpBackend.conns[0].ended, 5000, 'the relay to pass the end on')

  const httpBackend = await startTcpBackend(t, conn => {
    conn.socket.on('data', () => {
      if (conn.data.includes('\r\n\r\n')) conn.socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
    })
  })
  const http = await startProxy(t, { targets: [httpBackend.target], sendProxy: 'v2' })
  const client = await RawClient.connect(http.port)
  t.teardown(() => client.destroy())
  await client.write('GET /a HTTP/1.1\r\nHost: h\r\n\r\n')
  await client.response(0)
  await client.write('GET /b HTTP/1.1\r\nHost: h\r\n\r\n')
  await client.response(1)
  t.equal(httpBackend.conns.length, 2, 'a connection per request: never shared between clients')
  const expected = encodeProxyHeader(2, { ip: '127.0.0.1', port: client.socket.localPort! }, { ip: '127.0.0.1', port: http.port })
  t.equal(httpBackend.conns[0].data.subarray(0, expected.length).toString('hex'), expected.toString('hex'), 'the v2 header first')
  t.match(httpBackend.conns[0].data.subarray(expected.length).toString(), /^GET \/a HTTP\/1\.1\r\n/)
})

function haproxyVersion (): string | null {
  const r = spawnSync('haproxy', ['-v'], { encoding: 'utf8' })
  return r.error === undefined && r.status === 0 ? r.stdout.split('\n')[0] : null
}

async function startHaproxy (t: Test, config: string, ports: number[]): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-haproxy-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'haproxy.cfg')
  writeFileSync(file, config)
  const child = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  t.teardown(() => { child.kill('SIGKILL') })
  // no event says HAProxy is listening: its ports are tried until they answer (bounded)
  for (const port of ports) {
    for (let i = 0; i < 400 && !await connects(port); i++) {
      if (child.exitCode !== null) throw new Error(`haproxy exited: ${stderr}`)
      await new Promise(resolve => setTimeout(resolve, 25))
    }
  }
}

function connects (port: number): Promise<boolean> {
  return new Promise(resolve => {
    const s = net.connect(port, '127.0.0.1')
    s.on('connect', () => { s.destroy(); resolve(true) })
    s.on('error', () => resolve(false))
  })
}

t.test('HAProxy as a real peer: send-proxy-v2 in front of rp4, accept-proxy behind it', { skip: haproxyVersion() === null ? 'haproxy is not installed (apt-get install haproxy)' : false }, async t => {
  const origin = await startOrigin(t, () => ok('through both'))
  const front = await unusedPort()
  const back = await unusedPort()
  // client → HAProxy (TCP, send-proxy-v2) → rp4 (acceptProxy) → HAProxy (accept-proxy, HTTP, forwardfor) → origin
  const { port, events } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0', acceptProxy: { from: ['127.0.0.1'] } }],
    routes: [{ name: 'app', proxy: 'behind' }],
    upstreams: { behind: { targets: [`127.0.0.1:${back}`], sendProxy: 'v2' } },
  })
  await startHaproxy(t, `global
  maxconn 100
defaults
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend front
  mode tcp
  bind 127.0.0.1:${front}
  default_backend to_rp4
backend to_rp4
  mode tcp
  server rp4 127.0.0.1:${port} send-proxy-v2
frontend back
  mode http
  bind 127.0.0.1:${back} accept-proxy
  option forwardfor
  default_backend to_origin
backend to_origin
  mode http
  server origin ${origin.target}
`, [front, back])
  // from 127.0.0.2: an address that is neither HAProxy's nor rp4's own
  const client = net.connect({ port: front, host: '127.0.0.1', localAddress: '127.0.0.2' })
  const received: Buffer[] = []
  client.on('data', d => received.push(d))
  client.write(GET)
  await within(new Promise(resolve => client.on('close', resolve)), 10_000, 'the answer through HAProxy and rp4')
  t.match(Buffer.concat(received).toString(), /^HTTP\/1\.1 200 [^]*\r\n\r\nthrough both$/)
  await events.until(() => events.responses.some(r => r.status === 200), 5000, 'the response event')
  t.match(events.responses.find(r => r.status === 200)?.client, /^127\.0\.0\.2:\d+$/, 'rp4 saw the client HAProxy named, not HAProxy')
  const seen = origin.requests.find(r => r.url === '/')
  t.match(xff(seen?.raw), /(^|, )127\.0\.0\.2$/, 'HAProxy behind rp4 took rp4\'s v2 header: the origin sees the client')
})
