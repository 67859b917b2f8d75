/**
 * Service discovery against a real DNS server (spec/helpers/dns.ts, UDP on 127.0.0.1) that rp4's
 * resolver is pointed at: A answers become targets and follow the answer as it changes (targets
 * that stay keep their pooled connections), a name that stops resolving keeps its last answer for
 * keepStale and says so, then loses it; SRV records give hosts, ports, weights and backups; AAAA
 * answers are IPv6 targets reached on ::1 (through the library's injectable resolver, and over the
 * wire beside an A record; skipped where ::1 cannot be listened on).
 */
import t, { type Test } from 'tap'
import { exchange } from '../helpers/client.js'
import { startDns } from '../helpers/dns.js'
import { ok, startOrigin, type Origin } from '../helpers/origin.js'
import { hasIPv6, startProxy } from '../helpers/proxy.js'
import { Observable, deferred } from '../helpers/wait.js'
import type { DiscoveryEvent, Proxy, ProxyOptions } from '../../lib/index.js'

const GET = 'GET / HTTP/1.1\r\nHost: h\r\n\r\n'

async function bodies (port: number, n: number): Promise<string[]> {
  const out: string[] = []
  for (let i = 0; i < n; i++) {
    const res = await exchange(port, GET, { responses: 1 })
    out.push(res.responses[0]?.body.toString() ?? '?')
  }
  return out
}

function tally (list: string[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const x of list) out[x] = (out[x] ?? 0) + 1
  return out
}

function discoveryLog (proxy: Proxy): Observable & { events: DiscoveryEvent[] } {
  const log = Object.assign(new Observable(), { events: [] as DiscoveryEvent[] })
  proxy.on('discovery', e => { log.events.push(e); log.changed() })
  return log
}

/** Origins on 127.0.0.1, .2 and .3, all on one port: what one name with three A records stands for. */
async function fleet (t: Test): Promise<{ port: number, origins: Origin[] }> {
  const first = await startOrigin(t, () => ok('1'), { host: '127.0.0.1' })
  const origins = [first]
  for (const n of [2, 3]) origins.push(await startOrigin(t, () => ok(String(n)), { host: `127.0.0.${n}`, port: first.port }))
  return { port: first.port, origins }
}

t.test('A records: every address a target; the set follows the answer, staying targets keep their connections', async t => {
  const dns = await startDns(t)
  const { port: originPort, origins } = await fleet(t)
  dns.zone.set('svc.test', { a: [['127.0.0.1', 0], ['127.0.0.2', 0]] })
  const { proxy, port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [`svc.test:${originPort}`], policy: 'round-robin', discovery: { servers: [dns.server], minTtl: '100ms' } } },
  })
  const log = discoveryLog(proxy)
  await log.until(() => log.events.length >= 1, 5000, 'the first answer')
  t.same(log.events[0], { group: 'app', name: `svc.test:${originPort}`, targets: [`127.0.0.1:${originPort}`, `127.0.0.2:${originPort}`] })
  t.same(tally(await bodies(port, 4)), { 1: 2, 2: 2 })
  const connectionsOf2 = origins[1].connections.length
  dns.zone.set('svc.test', { a: [['127.0.0.2', 0], ['127.0.0.3', 0]] })
  await log.until(() => log.events.length >= 2, 5000, 'the new answer')
  t.same(log.events[1].targets, [`127.0.0.2:${originPort}`, `127.0.0.3:${originPort}`])
  t.same(tally(await bodies(port, 4)), { 2: 2, 3: 2 }, 'the departed address gets nothing, the new one its share')
  t.equal(origins[1].connections.length, connectionsOf2, 'the staying target kept its pooled connection')
  t.same(proxy.stats().upstream.map(u => u.target).sort(), [`127.0.0.2:${originPort}`, `127.0.0.3:${originPort}`])
})

t.test('a name that stops resolving keeps its last answer for keepStale, says so, then loses it', async t => {
  const dns = await startDns(t)
  const origin = await startOrigin(t, () => ok('1'))
  dns.zone.set('svc.test', { a: [['127.0.0.1', 0]] })
  const { proxy, port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [`svc.test:${origin.port}`], discovery: { servers: [dns.server], minTtl: '100ms', keepStale: '400ms' } } },
  })
  const log = discoveryLog(proxy)
  await log.until(() => log.events.length >= 1, 5000, 'the first answer')
  dns.zone.set('svc.test', { fail: true })
  await log.until(() => log.events.some(e => e.error !== undefined), 5000, 'the failure')
  const stale = log.events.find(e => e.error !== undefined)!
  t.match(stale, { name: `svc.test:${origin.port}`, stale: true, targets: [`127.0.0.1:${origin.port}`], error: /ESERVFAIL|SERVFAIL/ })
  t.same(await bodies(port, 2), ['1', '1'], 'still served from the last answer')
  await log.until(() => log.events.some(e => e.stale === false), 5000, 'the answer to be dropped')
  t.match(log.events.find(e => e.stale === false), { targets: [] })
  const res = await exchange(port, GET, { responses: 1 })
  t.equal(res.responses[0].head.line[1], '502', 'nothing left to send to')
  dns.zone.set('svc.test', { a: [['127.0.0.1', 0]] })
  await log.until(() => log.events.length > 0 && log.events[log.events.length - 1].error === undefined && log.events[log.events.length - 1].targets.length === 1, 5000, 'the name to resolve again')
  t.same(await bodies(port, 1), ['1'])
})

t.test('SRV: hosts, ports and weights from the records; a higher priority number is a backup', async t => {
  const dns = await startDns(t)
  const a = await startOrigin(t, () => ok('A'))
  const b = await startOrigin(t, () => ok('B'))
  const c = await startOrigin(t, () => ok('C'))
  dns.zone.set('_http._tcp.svc.test', {
    srv: [
      { priority: 10, weight: 3, port: a.port, target: 'a.svc.test', ttl: 0 },
      { priority: 10, weight: 1, port: b.port, target: 'b.svc.test', ttl: 0 },
      { priority: 20, weight: 1, port: c.port, target: 'c.svc.test', ttl: 0 },
    ],
  })
  for (const host of ['a', 'b', 'c']) dns.zone.set(`${host}.svc.test`, { a: [['127.0.0.1', 30]] })
  const { proxy, port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: ['srv://_http._tcp.svc.test'], policy: 'round-robin', discovery: { servers: [dns.server] } } },
  })
  const log = discoveryLog(proxy)
  await log.until(() => log.events.length >= 1, 5000, 'the SRV answer')
  t.same(log.events[0].targets, [a.target, b.target, c.target])
  t.same(tally(await bodies(port, 8)), { A: 6, B: 2 }, '3:1, the backup idle')
  t.ok(dns.questions.includes('_http._tcp.svc.test SRV') && dns.questions.includes('a.svc.test A'), `asked: ${dns.questions.join(', ')}`)
})

const V6 = { skip: await hasIPv6() ? false : 'cannot listen on ::1 on this machine (no IPv6 loopback)' }

t.test('AAAA only, through the library\'s resolver: the IPv6 address is the target, reached over IPv6', V6, async t => {
  const v6 = await startOrigin(t, req => ok(`v6 from ${req.connection.socket.remoteAddress}`), { host: '::1' })
  const asked: string[] = []
  // the first answer waits until the test listens for it
  const listening = deferred()
  const resolver = {
    async resolve4 (name: string): Promise<Array<{ address: string, ttl: number }>> {
      asked.push(`A ${name}`)
      await listening.promise
      throw Object.assign(new Error(`queryA ENODATA ${name}`), { code: 'ENODATA' })
    },
    async resolve6 (name: string): Promise<Array<{ address: string, ttl: number }>> {
      asked.push(`AAAA ${name}`)
      await listening.promise
      return [{ address: '::1', ttl: 30 }]
    },
    async resolveSrv (): Promise<never> { throw new Error('no SRV here') },
  }
  const { proxy, port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [`v6.test:${v6.port}`], discovery: {} } },
    resolver,
  })
  const log = discoveryLog(proxy)
  listening.resolve()
  await log.until(() => log.events.length >= 1, 5000, 'the first answer')
  t.same(log.events[0], { group: 'app', name: `v6.test:${v6.port}`, targets: [`[::1]:${v6.port}`] })
  t.same(asked.sort(), ['A v6.test', 'AAAA v6.test'], 'both families asked')
  t.same(await bodies(port, 3), ['v6 from ::1', 'v6 from ::1', 'v6 from ::1'])
  t.equal(v6.connections.length, 1, 'one pooled connection to the IPv6 target')
  t.same(proxy.stats().upstream.map(u => u.target), [`[::1]:${v6.port}`])
})

t.test('A and AAAA over the wire: both families are targets; an AAAA record that goes takes its target along', V6, async t => {
  const dns = await startDns(t)
  const v4 = await startOrigin(t, () => ok('v4'), { host: '127.0.0.1' })
  // the same port on ::1: one name, one port, two addresses
  const v6 = await startOrigin(t, () => ok('v6'), { host: '::1', port: v4.port })
  dns.zone.set('both.test', { a: [['127.0.0.1', 0]], aaaa: [['::1', 0]] })
  const { proxy, port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [`both.test:${v4.port}`], policy: 'round-robin', discovery: { servers: [dns.server], minTtl: '100ms' } } },
  })
  const log = discoveryLog(proxy)
  await log.until(() => log.events.length >= 1, 5000, 'the first answer')
  t.same(log.events[0].targets, [`127.0.0.1:${v4.port}`, `[::1]:${v4.port}`])
  t.same(tally(await bodies(port, 4)), { v4: 2, v6: 2 })
  dns.zone.set('both.test', { a: [['127.0.0.1', 0]] })
  await log.until(() => log.events.length >= 2, 5000, 'the answer without AAAA')
  t.same(log.events[1].targets, [`127.0.0.1:${v4.port}`])
  const before = v6.requests.length
  t.same(tally(await bodies(port, 4)), { v4: 4 })
  t.equal(v6.requests.length, before, 'the IPv6 target is gone')
  await v6.until(() => v6.open === 0, 5000, 'its idle connection to close')
})

t.test('a reload that changes the group: discovered targets that stay keep their pools and health, at once', async t => {
  const dns = await startDns(t)
  const { port: originPort, origins } = await fleet(t)
  dns.zone.set('svc.test', { a: [['127.0.0.1', 300], ['127.0.0.2', 300]] })
  const options = (policy: string): ProxyOptions => ({
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [`svc.test:${originPort}`], policy, discovery: { servers: [dns.server] } } },
  })
  const { proxy, port } = await startProxy(t, options('round-robin'))
  const log = discoveryLog(proxy)
  await log.until(() => log.events.length >= 1, 5000, 'the first answer')
  t.same(tally(await bodies(port, 4)), { 1: 2, 2: 2 })
  // .2 stops answering: a failed connect marks it down (the failed-target time is 10 s)
  await origins[1].close()
  await bodies(port, 2)
  t.equal(proxy.upstreams().find(u => u.target === `127.0.0.2:${originPort}`)?.up, false, 'down before the reload')
  await proxy.update(options('least-conn'))
  t.same(proxy.upstreams().filter(u => u.group === 'app').map(u => [u.target, u.up]), [[`127.0.0.1:${originPort}`, true], [`127.0.0.2:${originPort}`, false]],
    'right after the reload: the discovered targets are there, .2 still down')
  t.same(tally(await bodies(port, 4)), { 1: 4 }, 'nothing tries the down one')
  t.equal(origins[0].connections.length, 1, 'the staying target kept its pooled connection')
})
