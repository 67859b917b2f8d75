/**
 * ACME end to end against Debian's pebble (an RFC 8555 test CA) on loopback, its challenge DNS
 * (pebble-challtestsrv) pointing every name at 127.0.0.1: TLS-ALPN-01 answered on the TLS port,
 * HTTP-01 by a cleartext listener; the certificate swapped in without a restart; renewal of a
 * short-lived certificate; a stranger's SNI never ordered; the ask hook; storage permissions; the
 * CLI flags, and a restart that serves the stored certificate without asking the CA.
 *
 * Skipped, saying why, where pebble is not installed (.ci/run installs it).
 */
import t, { type Test } from 'tap'
import * as acme from 'acme-client'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { promisify } from 'node:util'
import { certificateFiles } from '../../lib/tls/acme.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { ROOT, checkBuilt, startProxy } from '../helpers/proxy.js'
import { within } from '../helpers/wait.js'

const run = promisify(execFile)
const hasPebble = ['/usr/bin/pebble', '/usr/bin/pebble-challtestsrv'].every(file => existsSync(file))
/** Every test's options: skipped, with the reason, where there is no CA to test against. */
const needsPebble = { skip: hasPebble ? false : 'pebble is not installed (apt-get install -y pebble; .ci/run does): no ACME CA to test against' }

const dir = mkdtempSync(path.join(os.tmpdir(), 'rp4-acme-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

/**
 * A free port for pebble's fixed challenge ports, from below the kernel's ephemeral range
 * (32768 and up): the port is free now and is listened on again a moment later, and between the
 * two another spec's listen(0) or outgoing connection would take a port of that range.
 */
async function freePort (): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    const server = net.createServer()
    const bound = await new Promise<boolean>(resolve => {
      server.once('error', () => resolve(false))
      server.listen(port, '127.0.0.1', () => resolve(true))
    })
    if (bound) {
      server.close()
      await once(server, 'close')
      return port
    }
    if (attempt === 50) throw new Error('no free port below the ephemeral range')
  }
}

/** A child process stopped with the test; its output kept. */
function start (t: Test, command: string, args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess, output: () => string } {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RP4_WORKERS: '1', ...env } })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill()
    await once(child, 'exit')
  })
  return { child, output: () => out }
}

async function until (label: string, predicate: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  for (let i = 0; Date.now() < end; i++) {
    if (await predicate()) return
    await new Promise(resolve => setTimeout(resolve, Math.min(200, 20 * (i + 1))))
  }
  throw new Error(`${label}: not within ${ms} ms`)
}

// pebble's own HTTPS certificate, trusted by acme-client below (and by the CLI through NODE_EXTRA_CA_CERTS)
const pebbleCert = path.join(dir, 'pebble.pem')
const pebbleKey = path.join(dir, 'pebble.key')
if (hasPebble) {
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', pebbleKey, '-out', pebbleCert,
    '-days', '2', '-subj', '/CN=pebble', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'])
  acme.axios.defaults.httpsAgent = new https.Agent({ ca: readFileSync(pebbleCert) })
}

interface Pebble { directory: string, roots: () => Promise<string>, stop: () => Promise<void> }

/**
 * pebble validating challenges on `httpPort` and `tlsPort` of 127.0.0.1 (pebble-challtestsrv
 * answers every A query with it), issuing certificates valid `validity` seconds.
 */
async function startPebble (t: Test, httpPort: number, tlsPort: number, validity: number): Promise<Pebble> {
  // a port found free may be taken again before pebble binds it: a few fresh tries
  for (let attempt = 1; ; attempt++) {
    try {
      return await tryPebble(t, httpPort, tlsPort, validity)
    } catch (err) {
      if (attempt === 3) throw err
      t.comment(`pebble attempt ${attempt}: ${(err as Error).message}`)
    }
  }
}

async function tryPebble (t: Test, httpPort: number, tlsPort: number, validity: number): Promise<Pebble> {
  const dns = await freePort()
  const api = await freePort()
  const management = await freePort()
  const dnsServer = start(t, '/usr/bin/pebble-challtestsrv', ['-defaultIPv4', '127.0.0.1', '-defaultIPv6', '', '-dns01', `127.0.0.1:${dns}`,
    '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${await freePort()}`])
  await until('challtestsrv started', () => /Starting challenge servers|dns/i.test(dnsServer.output()) || dnsServer.child.exitCode !== null, 30_000)
  if (dnsServer.child.exitCode !== null) throw new Error(`pebble-challtestsrv exited: ${dnsServer.output()}`)
  const config = path.join(dir, `pebble-${api}.json`)
  writeFileSync(config, JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${api}`,
      managementListenAddress: `127.0.0.1:${management}`,
      certificate: pebbleCert,
      privateKey: pebbleKey,
      httpPort,
      tlsPort,
      ocspResponderURL: '',
      externalAccountBindingRequired: false,
      certificateValidityPeriod: validity,
    },
  }))
  const pebble = start(t, '/usr/bin/pebble', ['-config', config, '-dnsserver', `127.0.0.1:${dns}`],
    { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' })
  await until('pebble started', () => pebble.output().includes('Listening on') || pebble.child.exitCode !== null, 30_000)
  if (pebble.child.exitCode !== null) {
    dnsServer.child.kill()
    throw new Error(`pebble exited: ${pebble.output()}`)
  }
  const agent = new https.Agent({ ca: readFileSync(pebbleCert) })
  const roots = async (): Promise<string> => await new Promise((resolve, reject) => {
    https.get(`https://127.0.0.1:${management}/roots/0`, { agent }, res => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => resolve(body))
    }).on('error', reject)
  })
  const stop = async (): Promise<void> => {
    if (pebble.child.exitCode !== null || pebble.child.signalCode !== null) return
    pebble.child.kill()
    await once(pebble.child, 'exit')
  }
  return { directory: `https://127.0.0.1:${api}/dir`, roots, stop }
}

/** The certificate a handshake for `name` gets (null: the handshake failed). */
async function served (port: number, name: string): Promise<X509Certificate | null> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: name, rejectUnauthorized: false })
  try {
    await within(new Promise<void>((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) }), 5000, 'handshake')
    return socket.getPeerX509Certificate() ?? null
  } catch {
    return null
  } finally {
    socket.destroy()
  }
}

function issuedByPebble (cert: X509Certificate | null, name: string): boolean {
  return cert !== null && /Pebble/i.test(cert.issuer) && cert.checkHost(name) !== undefined
}

t.test('TLS-ALPN-01 on the TLS port, HTTP-01 on a cleartext listener; swapped in without a restart; a stranger\'s SNI never ordered', needsPebble, async t => {
  const httpPort = await freePort()
  const tlsPort = await freePort()
  const pebble = await startPebble(t, httpPort, tlsPort, 3600)
  const storage = path.join(dir, 'storage-1')
  const origin = await startOrigin(t, req => ok(`hello ${req.head.line[1]}`))
  const acmeBase = { email: 'ops@example.test', directory: pebble.directory, storage }
  const { port, events, proxy } = await startProxy(t, {
    listeners: [
      { name: 'https', listen: `127.0.0.1:${tlsPort}`, tls: { acme: { ...acmeBase, names: ['alpn.example.test'], challenges: ['tls-alpn-01'] } } },
      { name: 'https-http01', listen: '127.0.0.1:0', tls: { acme: { ...acmeBase, names: ['http.example.test'], challenges: ['http-01'] } } },
      { name: 'http', listen: `127.0.0.1:${httpPort}`, redirectToHttps: true },
    ],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [origin.target] } },
  })
  const messages: string[] = []
  proxy.on('acme', message => messages.push(message))
  t.equal(await served(port, 'alpn.example.test'), null, 'before the certificate exists: a handshake failure, nothing else')
  await until('alpn.example.test issued', async () => issuedByPebble(await served(port, 'alpn.example.test'), 'alpn.example.test'), 30_000)
  const second = proxy.addresses()[1].address!.port
  await until('http.example.test issued', async () => issuedByPebble(await served(second, 'http.example.test'), 'http.example.test'), 30_000)
  // verified against the CA's root, as a client trusting it would
  const root = await pebble.roots()
  const rootFile = path.join(dir, 'pebble-root.pem')
  writeFileSync(rootFile, root)
  const chained = await run('curl', ['-sS', '--max-time', '5', '--resolve', `alpn.example.test:${port}:127.0.0.1`, '--cacert', rootFile, `https://alpn.example.test:${port}/x`])
  t.equal(chained.stdout, 'hello /x', 'curl verifies the chain against pebble\'s root and is served')
  // the names asked for elsewhere never reach the CA
  const stranger = await served(port, 'stranger.example.test')
  t.ok(stranger !== null && stranger.checkHost('alpn.example.test') !== undefined, 'a stranger\'s SNI gets the default certificate')
  t.notOk(existsSync(path.dirname(certificateFiles(acmeBase, 'stranger.example.test').cert)), 'nothing ordered or stored for it')
  // storage: the account key and every private key readable by rp4's user only
  const files = certificateFiles(acmeBase, 'alpn.example.test')
  t.equal(statSync(files.key).mode & 0o777, 0o600, 'key 0600')
  t.equal(statSync(path.dirname(files.key)).mode & 0o777, 0o700, 'its directory 0700')
  const caDir = path.dirname(path.dirname(files.cert))
  t.equal(statSync(path.join(caDir, 'account.key')).mode & 0o777, 0o600, 'account key 0600')
  t.same(readdirSync(caDir).sort(), ['account.json', 'account.key', 'alpn.example.test', 'http.example.test'])
  t.ok(messages.some(m => /certificate for alpn\.example\.test obtained/.test(m)), 'the acme event tells')
  t.same(events.proxyErrors, [], 'no failure')
  // HTTP-01 answered ahead of the redirect; an unknown token is a plain 404
  const probe = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', `http://127.0.0.1:${httpPort}/.well-known/acme-challenge/nope`])
  t.equal(probe.stdout, '404')
})

t.test('a short-lived certificate renewed at a third of its lifetime left, swapped in; a failing renewal keeps the old one and says so', needsPebble, async t => {
  const tlsPort = await freePort()
  const pebble = await startPebble(t, tlsPort, tlsPort, 12)
  const storage = path.join(dir, 'storage-2')
  const origin = await startOrigin(t, () => ok('x'))
  const { port, events, proxy } = await startProxy(t, {
    listeners: [{ listen: `127.0.0.1:${tlsPort}`, tls: { acme: { names: ['renew.example.test'], directory: pebble.directory, storage } } }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [origin.target] } },
  })
  let first: X509Certificate | null = null
  await until('issued', async () => issuedByPebble(first = await served(port, 'renew.example.test'), 'renew.example.test'), 30_000)
  const lifetime = Date.parse(first!.validTo) - Date.parse(first!.validFrom)
  t.ok(lifetime <= 13_000, `a short-lived certificate (${lifetime} ms)`)
  let renewed: X509Certificate | null = null
  await until('renewed', async () => {
    renewed = await served(port, 'renew.example.test')
    return renewed !== null && renewed.fingerprint256 !== first!.fingerprint256
  }, 30_000)
  t.ok(issuedByPebble(renewed, 'renew.example.test'), 'the renewed certificate is served without a restart')
  t.ok(Date.parse(renewed!.validFrom) - Date.parse(first!.validFrom) >= lifetime * 2 / 3 - 2000, 'renewed once a third of the lifetime was left, not before')
  t.same(events.proxyErrors, [])
  // the CA goes away: the next renewal fails, is reported and retried later, and the current certificate stays
  await pebble.stop()
  await events.until(() => events.proxyErrors.some(e => e.code === 'acme_failed'), 30_000, 'the failed renewal reported')
  t.match(events.proxyErrors[0].message, /^ACME: no certificate for renew\.example\.test from https:\/\/127\.0\.0\.1:\d+\/dir \(next attempt in 60s, the stored certificate is still served\): /)
  t.equal((await served(port, 'renew.example.test'))?.fingerprint256, renewed!.fingerprint256, 'still served')
  t.equal(proxy.stats().errors.acme_failed, 1, 'counted in stats()')
})

t.test('the ask hook decides for pattern names; without it nothing is ordered', needsPebble, async t => {
  const tlsPort = await freePort()
  const pebble = await startPebble(t, tlsPort, tlsPort, 3600)
  const storage = path.join(dir, 'storage-3')
  const origin = await startOrigin(t, () => ok('x'))
  const asked: string[] = []
  const { port } = await startProxy(t, {
    listeners: [{ listen: `127.0.0.1:${tlsPort}`, tls: { acme: { names: ['base.example.test'], patterns: ['*.users.example.test'], directory: pebble.directory, storage } } }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [origin.target] } },
    acmeAsk: name => { asked.push(name); return name === 'alice.users.example.test' },
  })
  await until('base issued', async () => issuedByPebble(await served(port, 'base.example.test'), 'base.example.test'), 30_000)
  await served(port, 'alice.users.example.test')
  await served(port, 'mallory.users.example.test')
  await served(port, 'x.y.users.example.test')
  await served(port, 'other.example.test')
  await until('alice issued on first use', async () => issuedByPebble(await served(port, 'alice.users.example.test'), 'alice.users.example.test'), 30_000)
  t.same(asked.sort(), ['alice.users.example.test', 'mallory.users.example.test'], 'asked only about names a pattern matches (one label)')
  t.notOk(issuedByPebble(await served(port, 'mallory.users.example.test'), 'mallory.users.example.test'), 'refused by the hook: not ordered')
})

t.test('CLI: --acme, --acme-email, --acme-directory, --acme-storage; a restart reuses the stored certificate without asking the CA', needsPebble, async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const port = await freePort()
  const pebble = await startPebble(t, port, port, 3600)
  const origin = await startOrigin(t, () => ok('from the origin'))
  const storage = path.join(dir, 'storage-cli')
  const args = [path.join(ROOT, 'dist/bin/rp4.js'), 'listen', `127.0.0.1:${port}`, '--to', origin.target, '--acme', 'cli.example.test',
    '--acme-email', 'ops@example.test', '--acme-directory', pebble.directory, '--acme-storage', storage]
  const env = { NODE_EXTRA_CA_CERTS: pebbleCert }
  const first = start(t, process.execPath, args, env)
  await until('issued through the CLI', async () => issuedByPebble(await served(port, 'cli.example.test'), 'cli.example.test'), 60_000)
  const cert = await served(port, 'cli.example.test')
  t.match(first.output(), /certificate for cli\.example\.test obtained/)
  first.child.kill('SIGTERM')
  await once(first.child, 'exit')
  const second = start(t, process.execPath, args, env)
  await until('listening again', () => second.output().includes('listening on'), 10_000)
  t.equal((await served(port, 'cli.example.test'))?.fingerprint256, cert!.fingerprint256, 'the stored certificate, at once')
  await until('said so', () => /certificate for cli\.example\.test loaded from .*renewal due/.test(second.output()), 5000)
  t.notMatch(second.output(), /obtained/, 'the CA was not asked again')
  const bad = spawn(process.execPath, [path.join(ROOT, 'dist/bin/rp4.js'), 'listen', '127.0.0.1:0', '--to', origin.target, '--acme', 'bad name!'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RP4_WORKERS: '1' } })
  let err = ''
  bad.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const [code] = await once(bad, 'exit') as [number]
  t.equal(code, 2)
  t.match(err, /^rp4: --acme: "bad name!" is not a DNS name\n/)
})

t.test('a flood of pattern names from strangers: at most 16 asks wait at once, refused names remembered in a bounded set', async t => {
  const storage = path.join(dir, 'storage-flood')
  const origin = await startOrigin(t, () => ok('x'))
  const asked: string[] = []
  let answer: (allowed: boolean) => void = () => {}
  const held = new Promise<boolean>(resolve => { answer = resolve })
  let hold = true
  const { port, events } = await startProxy(t, {
    // no name to obtain at start and every ask refused: the CA is never contacted (nothing listens there)
    listeners: [{ listen: '127.0.0.1:0', tls: { acme: { patterns: ['*.users.example.test'], directory: 'https://127.0.0.1:1/dir', storage } } }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [origin.target] } },
    acmeAsk: async name => { asked.push(name); return hold ? await held : false },
  })
  const names = (from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `n${from + i}.users.example.test`)
  /** ClientHellos for `list`, a few at a time: no certificate yet, so each is refused after its hello. */
  const hellos = async (list: string[]): Promise<void> => {
    for (let i = 0; i < list.length; i += 8) await Promise.all(list.slice(i, i + 8).map(async name => await served(port, name)))
  }
  await hellos(names(0, 40))
  t.equal(asked.length, 16, 'only 16 asks while all of them wait')
  t.same(asked, names(0, 16), 'the first ones')
  hold = false
  answer(false)
  await events.until(() => events.clientErrors.length >= 40, 5000, 'the 40 refusals')
  // the answers arrive on the next turns
  await new Promise(resolve => setImmediate(resolve))
  asked.length = 0
  await hellos(names(0, 16))
  t.same(asked, [], 'refused names are not asked about again')
  await hellos(names(16, 40))
  t.same(asked, names(16, 40), 'names dropped while the asks were full are asked on their next handshake')
  // 1100 more refused names: the memory of refusals stays bounded, the oldest asked again
  await hellos(names(100, 1200))
  asked.length = 0
  await hellos(names(0, 1))
  t.same(asked, names(0, 1), 'the oldest refusal was forgotten (bounded), so it is asked again')
  t.same(events.proxyErrors, [], 'the CA was never contacted')
})
