/**
 * The README's "More than one machine" recipe, on loopback: two rp4 instances behind HAProxy in
 * TCP mode, PROXY protocol v2 between them, HAProxy checking each instance's /readyz. Clients
 * keep sending (a new connection per request, from 127.0.0.2, an address no instance has) while
 * one instance reloads its configuration and the other drains: every request is answered, and
 * each instance reports the client's own address.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { createProxy, type Options, type Proxy } from '../../lib/index.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { unusedPort } from '../helpers/proxy.js'
import { within } from '../helpers/wait.js'

function haproxyInstalled (): boolean {
  const r = spawnSync('haproxy', ['-v'], { encoding: 'utf8' })
  return r.error === undefined && r.status === 0
}

function connects (port: number): Promise<boolean> {
  return new Promise(resolve => {
    const s = net.connect(port, '127.0.0.1')
    s.on('connect', () => { s.destroy(); resolve(true) })
    s.on('error', () => resolve(false))
  })
}

/** One request on a new connection through the balancer: the body, or the error. */
function request (port: number): Promise<{ ok: boolean, text: string }> {
  return new Promise(resolve => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' })
    const chunks: Buffer[] = []
    const timer = setTimeout(() => { socket.destroy(); resolve({ ok: false, text: 'timeout' }) }, 10_000)
    socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'))
    socket.on('data', d => chunks.push(d))
    socket.on('error', err => { clearTimeout(timer); resolve({ ok: false, text: err.message }) })
    socket.on('close', () => {
      clearTimeout(timer)
      const text = Buffer.concat(chunks).toString()
      resolve({ ok: /^HTTP\/1\.1 200 [^]*\r\n\r\nfrom (a|b)$/.test(text), text: text.slice(0, 200) })
    })
  })
}

function instance (name: string, origin: string, admin: number, body = `from ${name}`): Options {
  return {
    listeners: [{ listen: '127.0.0.1:0', acceptProxy: { from: ['127.0.0.1'] } }],
    routes: [{ name: 'app', respond: { body } }],
    upstreams: { web: { targets: [origin] } },
    admin: { listen: `127.0.0.1:${admin}` },
    drainTimeout: '5s',
    // HAProxy checks every 200 ms and takes one failure: it has stopped sending well before this
    drainDelay: '1s',
  } as Options
}

t.test('two instances behind HAProxy (TCP, send-proxy-v2): one reloads, the other drains, no request fails', { skip: haproxyInstalled() ? false : 'haproxy is not installed (apt-get install haproxy)' }, async (t: Test) => {
  const origin = await startOrigin(t, () => ok())
  const [adminA, adminB, front] = [await unusedPort(), await unusedPort(), await unusedPort()]
  const a = createProxy(instance('a', origin.target, adminA))
  const b = createProxy(instance('b', origin.target, adminB))
  const clients: Record<string, string[]> = { a: [], b: [] }
  for (const [name, proxy] of [['a', a], ['b', b]] as Array<[string, Proxy]>) {
    proxy.on('response', info => clients[name].push(info.client))
    t.teardown(() => proxy.close())
  }
  const portA = (await a.listen()).port
  const portB = (await b.listen()).port

  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-scale-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const config = path.join(dir, 'haproxy.cfg')
  writeFileSync(config, `global
  maxconn 200
defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s
  retries 3
  option redispatch
frontend front
  bind 127.0.0.1:${front}
  default_backend rp4
backend rp4
  balance roundrobin
  option httpchk GET /readyz
  server a 127.0.0.1:${portA} send-proxy-v2 check port ${adminA} inter 200ms fall 1 rise 1
  server b 127.0.0.1:${portB} send-proxy-v2 check port ${adminB} inter 200ms fall 1 rise 1
`)
  const haproxy = spawn('haproxy', ['-db', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  haproxy.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  t.teardown(() => { haproxy.kill('SIGKILL') })
  // no event says HAProxy is up: its port is tried until it answers (bounded)
  for (let i = 0; i < 400 && !await connects(front); i++) {
    if (haproxy.exitCode !== null) throw new Error(`haproxy exited: ${stderr}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
  // both instances healthy and used before anything happens
  const warm = await Promise.all(Array.from({ length: 10 }, () => request(front)))
  t.same(warm.filter(r => !r.ok), [], 'warm-up: every request answered')

  let running = true
  const results: Array<{ ok: boolean, text: string }> = []
  const loop = async (): Promise<void> => {
    for (let i = 0; running && i < 2000; i++) results.push(await request(front))
  }
  const loops = Array.from({ length: 4 }, () => loop())
  const until = async (n: number): Promise<void> => {
    const target = results.length + n
    for (let i = 0; i < 2000 && results.length < target; i++) await new Promise(resolve => setImmediate(resolve))
  }
  await until(20)
  for (let i = 0; i < 5; i++) {
    await a.update(instance('a', origin.target, adminA, 'from a'))
    await until(10)
  }
  const drained = b.drain()
  await until(40)
  await within(drained, 10_000, 'instance b to drain')
  await until(20)
  running = false
  await within(Promise.all(loops), 20_000, 'the client loops')
  t.ok(results.length >= 80, `requests sent meanwhile (${results.length})`)
  t.same(results.filter(r => !r.ok).slice(0, 5), [], `no request failed (${results.filter(r => !r.ok).length} of ${results.length})`)
  t.ok(clients.a.length > 0 && clients.b.length > 0, 'both instances served')
  t.same([...new Set([...clients.a, ...clients.b].map(c => c.replace(/:\d+$/, '')))], ['127.0.0.2'], 'each instance saw the client\'s own address, not HAProxy\'s')
})
