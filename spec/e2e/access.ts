/**
 * Access lists and connection caps on real sockets: refused connections are closed at accept time
 * with a clientError, others are unaffected; the access file is re-read when it changes; the caps
 * count every kind of connection and count down when they close. 127.0.0.2 and 127.0.0.3 are
 * other clients as far as rp4 can tell (`localAddress`).
 */
import t, { type Test } from 'tap'
import net from 'node:net'
import tls from 'node:tls'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { RawClient } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { hasIPv6, startProxy, type StartedProxy } from '../helpers/proxy.js'
import { makeCertificates } from '../helpers/tls-certs.js'
import { Observable, within } from '../helpers/wait.js'
import { readOpenFileLimit } from '../../lib/config/open-files.js'

const GET = 'GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'

/** A request through the proxy from `localAddress`: its status, or 'closed' when it was refused. */
async function get (port: number, localAddress: string, host = '127.0.0.1'): Promise<string> {
  const client = await RawClient.connect(port, { localAddress, host })
  try {
    await client.write(GET)
    await client.until(() => client.responses.length > 0 || client.closed, 5000, 'a response or the close')
    return client.responses[0]?.head.line[1] ?? 'closed'
  } finally {
    client.destroy()
  }
}

/** A connection that sends nothing and is held open (detection waits 30 s in specs), destroyed with the test. */
async function hold (t: Test, port: number, localAddress: string): Promise<RawClient> {
  const client = await RawClient.connect(port, { localAddress })
  t.teardown(() => client.socket.destroy())
  return client
}

/** Poll a condition the proxy exposes no event for; bounded, short intervals. */
async function poll (predicate: () => boolean, label: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${label}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

function errorCodes (started: StartedProxy): string[] {
  return started.events.clientErrors.map(e => e.error.code)
}

t.test('a denied address is closed at accept time, with a clientError', async t => {
  const origin = await startOrigin(t, () => ok())
  const started = await startProxy(t, { targets: [origin.target], access: { deny: ['127.0.0.1/32'] } })
  const refused = await RawClient.connect(started.port, { localAddress: '127.0.0.1' })
  await refused.waitClose(5000)
  t.equal(refused.raw().length, 0, 'nothing answered')
  await started.events.until(() => started.events.clientErrors.length === 1, 5000, 'the clientError')
  const { error, client } = started.events.clientErrors[0]
  t.equal(error.code, 'access_denied')
  t.equal(error.source, 'downstream')
  t.equal(error.status, 0)
  t.match(client, /^127\.0\.0\.1:\d+$/)
  t.equal(await get(started.port, '127.0.0.2'), '200', 'another address is served')
  t.equal(origin.connections.length, 1, 'nothing of the refused connection reached the origin')
})

t.test('an allow list of 127.0.0.2 only refuses 127.0.0.1', async t => {
  const origin = await startOrigin(t, () => ok())
  const started = await startProxy(t, { targets: [origin.target], access: { allow: ['127.0.0.2'] } })
  t.equal(await get(started.port, '127.0.0.1'), 'closed')
  t.equal(await get(started.port, '127.0.0.2'), '200')
  t.same(errorCodes(started), ['access_denied'])
})

t.test('deny wins over allow', async t => {
  const origin = await startOrigin(t, () => ok())
  const started = await startProxy(t, { targets: [origin.target], access: { allow: ['127.0.0.0/8'], deny: ['127.0.0.3'] } })
  t.equal(await get(started.port, '127.0.0.2'), '200')
  t.equal(await get(started.port, '127.0.0.3'), 'closed')
})

const ipv6 = await hasIPv6()

t.test('IPv6 lists: ::1', { skip: ipv6 ? false : 'no IPv6 on this machine' }, async t => {
  const origin = await startOrigin(t, () => ok())
  const denied = await startProxy(t, { listen: '[::1]:0', targets: [origin.target], access: { deny: ['::1/128'] } })
  t.equal(await get(denied.port, '::1', '::1'), 'closed')
  t.same(errorCodes(denied), ['access_denied'])
  const allowed = await startProxy(t, { listen: '[::1]:0', targets: [origin.target], access: { allow: ['::/112'], deny: ['2001:db8::/32'] } })
  t.equal(await get(allowed.port, '::1', '::1'), '200')
  const other = await startProxy(t, { listen: '[::1]:0', targets: [origin.target], access: { allow: ['2001:db8::/32'] } })
  t.equal(await get(other.port, '::1', '::1'), 'closed')
})

t.test('the access file is re-read when it changes; a bad line keeps the previous lists', async t => {
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-access-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'access')
  writeFileSync(file, '# nobody refused yet\ndeny 10.0.0.0/8\n')
  const origin = await startOrigin(t, () => ok())
  const started = await startProxy(t, { targets: [origin.target], access: { file } })
  t.equal(await get(started.port, '127.0.0.1'), '200', 'served before the change')

  writeFileSync(file, 'deny 10.0.0.0/8\ndeny 127.0.0.1\n')
  // the file is checked every 2 s: the next connection after that is refused
  const end = Date.now() + 5000
  let status = await get(started.port, '127.0.0.1')
  while (status !== 'closed' && Date.now() < end) {
    await new Promise(resolve => setTimeout(resolve, 50))
    status = await get(started.port, '127.0.0.1')
  }
  t.equal(status, 'closed', 'refused within 5 s of the change')
  t.ok(errorCodes(started).includes('access_denied'))

  writeFileSync(file, 'deny 127.0.0.2\nallow what\n')
  await started.events.until(() => started.events.proxyErrors.length > 0, 5000, 'the reload error')
  const reloadError = started.events.proxyErrors[0]
  t.equal(reloadError.code, 'access_reload_failed')
  t.match(reloadError.message, `"${file}" line 2: "what" is not an IP address or CIDR range`)
  t.equal(reloadError.source, 'internal')
  t.notOk(errorCodes(started).includes('access_reload_failed'), 'a proxyError, not a clientError without a client')
  t.equal(started.proxy.stats().errors.access_reload_failed, 1, 'counted')
  t.equal(await get(started.port, '127.0.0.1'), 'closed', 'the previous lists stay')
  t.equal(await get(started.port, '127.0.0.2'), '200')
})

t.test('per-IP cap: a third connection from 127.0.0.1 is closed, 127.0.0.2 is served', async t => {
  const origin = await startOrigin(t, () => ok())
  const started = await startProxy(t, { targets: [origin.target], limits: { maxConnectionsPerIp: 2 } })
  const first = await hold(t, started.port, '127.0.0.1')
  await hold(t, started.port, '127.0.0.1')
  await poll(() => started.proxy.stats().connections === 2, 'two connections counted')
  const third = await RawClient.connect(started.port, { localAddress: '127.0.0.1' })
  await third.waitClose(5000)
  await started.events.until(() => started.events.clientErrors.length === 1, 5000, 'the clientError')
  t.equal(started.events.clientErrors[0].error.code, 'too_many_connections')
  t.equal(started.events.clientErrors[0].error.status, 0)
  t.equal(await get(started.port, '127.0.0.2'), '200', 'another client is served')
  t.notOk(first.closed, 'the connections already open are unaffected')

  first.socket.destroy()
  await poll(() => started.proxy.stats().connections === 1, 'the closed connection uncounted')
  t.equal(await get(started.port, '127.0.0.1'), '200', 'a place freed by a close is taken again')
})

t.test('global cap: over maxConnections, a new connection from any address is closed', async t => {
  const origin = await startOrigin(t, () => ok())
  const started = await startProxy(t, { targets: [origin.target], limits: { maxConnections: 2 } })
  const first = await hold(t, started.port, '127.0.0.1')
  const second = await hold(t, started.port, '127.0.0.2')
  await poll(() => started.proxy.stats().connections === 2, 'two connections counted')
  t.equal(await get(started.port, '127.0.0.3'), 'closed')
  t.same(errorCodes(started), ['too_many_connections'])
  t.notOk(first.closed || second.closed, 'the open ones are unaffected')
  second.socket.destroy()
  await poll(() => started.proxy.stats().connections === 1, 'the closed connection uncounted')
  t.equal(await get(started.port, '127.0.0.3'), '200')
})

t.test('counts go down when raw TCP relays and TLS connections close', async t => {
  const origin = await startOrigin(t, () => ok())
  const relay = await startProxy(t, { targets: [origin.target], tcp: true, limits: { maxConnectionsPerIp: 1 } })
  for (let i = 0; i < 3; i++) {
    t.equal(await get(relay.port, '127.0.0.1'), '200', `relayed connection ${i + 1}`)
    await poll(() => relay.proxy.stats().connections === 0, 'the relayed connection uncounted')
  }
  t.same(errorCodes(relay).filter(code => code === 'too_many_connections'), [])

  const certs = await makeCertificates(t)
  const pair = await certs.issue('leaf', ['a.test'])
  const ca = readFileSync(certs.ca.cert)
  const terminating = await startProxy(t, { targets: [origin.target], tls: { certificates: [pair] }, limits: { maxConnectionsPerIp: 1 } })
  for (let i = 0; i < 3; i++) {
    const socket = tls.connect({ host: '127.0.0.1', port: terminating.port, ca, servername: 'a.test' })
    t.teardown(() => socket.destroy())
    const answer = await within(new Promise<string>((resolve, reject) => {
      let text = ''
      socket.on('secureConnect', () => socket.write(GET))
      socket.on('data', (chunk: Buffer) => { text += chunk.toString('latin1') })
      socket.on('error', reject)
      socket.on('close', () => resolve(text))
    }), 5000, 'a response over TLS')
    t.match(answer, /^HTTP\/1\.1 200 /, `TLS connection ${i + 1}`)
    await poll(() => terminating.proxy.stats().connections === 0, 'the TLS connection uncounted')
  }
})

/**
 * One address opening many keep-alive connections: an office or a carrier behind NAT, another
 * proxy, a load generator. Each connection here and its accepted side live in this process, two
 * descriptors per connection; below 5,000 when the open-file limit cannot hold them (and said so).
 */
const openFiles = readOpenFileLimit()
const WANTED = 5000
// 1024 descriptors for the origin, the pool and the rest of the process
const crowd = openFiles === null ? WANTED : Math.min(WANTED, Math.floor((openFiles - 1024) / 2))

t.test('defaults: 5,000 idle keep-alive connections from one address are all served', { skip: crowd < 300 ? `open-file limit ${openFiles}: too low` : false }, async t => {
  const count = crowd
  if (count < WANTED) t.comment(`open-file limit ${openFiles}: ${count} connections instead of ${WANTED}`)
  const origin = await startOrigin(t, () => ok('here'))
  const started = await startProxy(t, { targets: [origin.target] })
  const sockets: net.Socket[] = []
  t.teardown(() => { for (const socket of sockets) socket.destroy() })
  const answers = new Map<net.Socket, string>()
  let closed = 0
  const watch = new Observable()
  /** Sends one request on each socket of `batch` and waits for every answer (a whole 200 with its body). */
  const serve = async (batch: net.Socket[], label: string): Promise<void> => {
    for (const socket of batch) {
      answers.set(socket, '')
      socket.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n')
    }
    await watch.until(() => batch.every(s => answers.get(s)!.endsWith('here') || s.destroyed), 20_000, label)
  }
  // in batches: the listen backlog is finite, and a SYN dropped for it is retried only after a second
  const BATCH = 250
  for (let from = 0; from < count; from += BATCH) {
    const batch = await Promise.all(Array.from({ length: Math.min(BATCH, count - from) }, () => new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect({ port: started.port, host: '127.0.0.1', localAddress: '127.0.0.1' }, () => resolve(socket))
      socket.on('error', reject)
      socket.on('data', (chunk: Buffer) => { answers.set(socket, answers.get(socket)! + chunk.toString('latin1')); watch.changed() })
      socket.on('close', () => { closed++; watch.changed() })
    })))
    sockets.push(...batch)
    await serve(batch, `answers on connections ${from + 1} to ${from + batch.length}`)
  }
  t.equal(closed, 0, 'no connection was closed')
  t.equal(started.proxy.stats().connections, count, `${count} connections open at once, all counted`)
  t.equal(sockets.filter(s => answers.get(s)!.startsWith('HTTP/1.1 200 OK\r\n')).length, count, 'each one answered 200')
  t.same(errorCodes(started), [], 'nothing refused')
  // idle, all open at once: each one carries a second request
  for (let from = 0; from < count; from += BATCH) await serve(sockets.slice(from, from + BATCH), 'second answers')
  t.equal(sockets.filter(s => answers.get(s)! === 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nVia: 1.1 rp4\r\n\r\nhere').length, count, 'a second request on each, answered exactly')
  t.equal(closed, 0)
})

t.test('limits.maxConnectionsPerIp: 0 is no cap, as by default', async t => {
  const origin = await startOrigin(t, () => ok())
  const started = await startProxy(t, { targets: [origin.target], limits: { maxConnectionsPerIp: 0 } })
  for (let i = 0; i < 3; i++) await hold(t, started.port, '127.0.0.1')
  await poll(() => started.proxy.stats().connections === 3, 'three connections counted')
  t.equal(await get(started.port, '127.0.0.1'), '200', 'a fourth from the same address is served')
  t.same(errorCodes(started), [])
})
