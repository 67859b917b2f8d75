/**
 * TLS handshakes and TLS requests, in one run, with the same certificate (ECDSA P-256) and the
 * same suites (Mozilla intermediate), for each row:
 *
 *   node      Node's own TLS server answering a fixed response, no backend (perf/tls-floor.ts): the floor
 *   nginx     terminating TLS, Mozilla's configuration (session cache shared:10m, tickets on)
 *   haproxy   terminating TLS (when `haproxy -vv` says it was built with OpenSSL)
 *   rp4       as users run it (bin/serving.ts), default flags: session cache on
 *   rp4-nocache  with --session-cache only: rp4 with --tls-session-cache 0 (tickets only)
 *
 * Scenarios, the handshake apart from the request:
 *
 *   full          a full handshake (TLS 1.3), then close: no request
 *   full+GET      a full handshake and one GET (Connection: close)
 *   resumed       the TLS 1.3 ticket of an earlier connection offered, then close: no request
 *   resumed+GET   the same with one GET
 *   session-id    with --session-cache only: TLS 1.2 without tickets, resumed by session ID
 *                 (a row without a session cache makes full handshakes: counted, not a failure)
 *   full-1.2      with --tls12 only: a full TLS 1.2 handshake, then close
 *   ticket-1.2    with --tls12 only: TLS 1.2, the ticket of an earlier connection offered, then
 *                 close (a TLS 1.2 resumption does no key exchange, unlike TLS 1.3's)
 *   keep-alive    --connections TLS connections, one small GET after another on each
 *
 * Each proxy runs pinned to the proxy core; the clients run here. Reported per row: connections
 * (or requests) per second, the proxy's CPU (utime+stime of its process tree, /proc) per
 * connection (or request), and how many connections were resumed. A resumption scenario where a
 * connection was not resumed fails the run (exit code 1), the session-id one excepted.
 *
 * With `--rounds N` every row runs every scenario N times, the rows taking turns (all of them
 * started once, the order reversed every other round), and the medians are reported with the
 * spread of the per-round ratios: on a noisy machine a row measured minutes after another differs
 * by more than the proxies do.
 *
 *   node dist/perf/tls-handshakes.js [--count N] [--requests N] [--connections N]
 *     [--concurrency N] [--rows node,nginx,haproxy,rp4] [--rounds N] [--session-cache] [--tls12] [--quick]
 *     [--profile intermediate|modern]
 */
import { execFileSync } from 'node:child_process'
import { constants } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { HEAP_ARGS, rp4Env } from '../bin/serving.js'
import { INTERMEDIATE_TLS12_SUITES, TLS13_SUITES } from '../lib/tls/profile.js'
import { median } from './measure.js'
import { treeCpuSeconds } from './proc-stats.js'
import { PROXY_CORE, ProcessGroup, freePort, stopEverything, waitForPort, waitForStderr, type Child } from './processes.js'
import { RP4_PATH } from './rows.js'

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    requests: { type: 'string', default: '20000' },
    connections: { type: 'string', default: '8' },
    concurrency: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '1' },
    rows: { type: 'string', default: 'node,nginx,haproxy,rp4' },
    profile: { type: 'string', default: 'intermediate' },
    'session-cache': { type: 'boolean', default: false },
    tls12: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
  },
})
const bounded = (text: string, min: number, max: number): number => Math.max(min, Math.min(max, Number(text) || min))
const count = values.quick ? 50 : bounded(values.count!, 10, 100_000)
const requests = values.quick ? 1000 : bounded(values.requests!, 100, 10_000_000)
const connections = bounded(values.connections!, 1, 1000)
const rounds = bounded(values.rounds!, 1, 50)
const concurrency = bounded(values.concurrency!, 1, 64)
const sessionCache = values['session-cache']!
const tls12 = values.tls12!

const FLOOR_PATH = fileURLToPath(new URL('./tls-floor.js', import.meta.url))
const NO_TICKET = constants.SSL_OP_NO_TICKET

const dir = mkdtempSync(join(tmpdir(), 'rp4-perf-tls-'))
const cert = join(dir, 'cert.pem')
const key = join(dir, 'key.pem')
// ECDSA P-256 for every row, as the reference figures are taken with
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' })

const origin = net.createServer(socket => {
  socket.on('data', chunk => {
    for (let at = chunk.indexOf('\r\n\r\n'); at !== -1; at = chunk.indexOf('\r\n\r\n', at + 4)) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
  })
  socket.on('error', () => {})
})
await new Promise<void>(resolve => origin.listen(0, '127.0.0.1', resolve))
const originPort = (origin.address() as net.AddressInfo).port

type RowName = 'node' | 'nginx' | 'haproxy' | 'rp4' | 'rp4-nocache'

interface Running { name: RowName, port: number, child: Child }

function haproxyHasSsl (): string | null {
  try {
    const vv = execFileSync('haproxy', ['-vv'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    return /\+OPENSSL\b|USE_OPENSSL=1/.test(vv) ? null : 'haproxy -vv: built without OpenSSL'
  } catch {
    return 'haproxy is not installed'
  }
}

function installed (command: string): boolean {
  try {
    execFileSync(command, ['-v'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

function nginxConfig (rowDir: string, port: number): string {
  // started as root, nginx's workers would run as nobody: the master reads the key before that,
  // so only the pid and temp paths need to be the harness's own
  return `worker_processes 1;
daemon off;
pid ${rowDir}/nginx.pid;
error_log ${rowDir}/error.log warn;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off;
  client_body_temp_path ${rowDir}/client_body;
  proxy_temp_path ${rowDir}/proxy;
  fastcgi_temp_path ${rowDir}/fastcgi;
  uwsgi_temp_path ${rowDir}/uwsgi;
  scgi_temp_path ${rowDir}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  upstream origin {
    server 127.0.0.1:${originPort};
    keepalive 64;
    keepalive_requests 100000000;
  }
  # Mozilla intermediate, as its configuration generator writes it for nginx
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_ciphers ${INTERMEDIATE_TLS12_SUITES.join(':')};
  ssl_prefer_server_ciphers off;
  ssl_ecdh_curve X25519:prime256v1:secp384r1;
  ssl_session_cache shared:MozSSL:10m;
  ssl_session_timeout 1d;
  server {
    listen 127.0.0.1:${port} ssl backlog=4096;
    ssl_certificate ${cert};
    ssl_certificate_key ${key};
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`
}

function haproxyConfig (pem: string, port: number): string {
  return `global
  nbthread 1
  maxconn 8000
  ssl-default-bind-ciphers ${INTERMEDIATE_TLS12_SUITES.join(':')}
  ssl-default-bind-ciphersuites ${TLS13_SUITES.join(':')}
  ssl-default-bind-options ssl-min-ver TLSv1.2
  ssl-default-bind-curves X25519:P-256:P-384

defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  timeout http-request 10s

frontend front
  mode http
  bind 127.0.0.1:${port} ssl crt ${pem} alpn http/1.1
  option http-keep-alive
  default_backend origin

backend origin
  mode http
  option http-keep-alive
  http-reuse always
  server origin 127.0.0.1:${originPort}
`
}

async function startRow (name: RowName, group: ProcessGroup): Promise<Running> {
  const spawnOptions = { core: PROXY_CORE }
  if (name === 'node') {
    const child = group.spawn(name, process.execPath, [FLOOR_PATH, cert, key], spawnOptions)
    const match = await waitForStderr(child, /listening on (\S+):(\d+)/, 10_000)
    return { name, port: Number(match[2]), child }
  }
  if (name === 'rp4' || name === 'rp4-nocache') {
    const args = [...HEAP_ARGS, RP4_PATH, 'listen', '127.0.0.1:0', '--to', `127.0.0.1:${originPort}`, '--cert', cert, '--key', key, '--tls-profile', values.profile!]
    if (name === 'rp4-nocache') args.push('--tls-session-cache', '0')
    const child = group.spawn(name, process.execPath, args, { ...spawnOptions, env: rp4Env() })
    const match = await waitForStderr(child, /listening on (\S+):(\d+)/, 10_000)
    return { name, port: Number(match[2]), child }
  }
  const rowDir = mkdtempSync(join(dir, `${name}-`))
  const port = await freePort()
  let child: Child
  if (name === 'nginx') {
    const file = join(rowDir, 'nginx.conf')
    writeFileSync(file, nginxConfig(rowDir, port))
    child = group.spawn(name, 'nginx', ['-c', file, '-p', rowDir, '-e', join(rowDir, 'error.log')], spawnOptions)
  } else {
    const pem = join(rowDir, 'haproxy.pem')
    writeFileSync(pem, Buffer.concat([readFileSync(cert), readFileSync(key)]))
    const file = join(rowDir, 'haproxy.cfg')
    writeFileSync(file, haproxyConfig(pem, port))
    child = group.spawn(name, 'haproxy', ['-db', '-f', file], spawnOptions)
  }
  await waitForPort(port, child, 10_000)
  return { name, port, child }
}

interface Connect {
  port: number
  session?: Buffer
  /** One GET with Connection: close after the handshake; false: close right after it. */
  get: boolean
  /** TLS 1.2 without tickets (resumption by session ID), TLS 1.2 with tickets, or TLS 1.3 (with tickets). */
  version: Version
}

type Version = '1.2-id' | '1.2' | '1.3'

/** One connection: handshake, maybe one GET, close; whether it was resumed, and the session it left. */
async function connectOnce (o: Connect): Promise<{ reused: boolean, session: Buffer | undefined }> {
  return await new Promise((resolve, reject) => {
    let session: Buffer | undefined
    let reused = false
    const socket = tls.connect({
      host: '127.0.0.1',
      port: o.port,
      servername: 'localhost',
      rejectUnauthorized: false,
      session: o.session,
      ALPNProtocols: ['http/1.1'],
      ...(o.version === '1.2-id' ? { maxVersion: 'TLSv1.2', secureOptions: NO_TICKET } : o.version === '1.2' ? { maxVersion: 'TLSv1.2' } : { minVersion: 'TLSv1.3' }),
    })
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`a connection to port ${o.port} took over 10 s`)) }, 10_000)
    socket.on('session', s => { session = s })
    socket.once('secureConnect', () => {
      // read while the connection is up: a closed socket no longer knows
      reused = socket.isSessionReused()
      if (o.get) socket.write('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
      else socket.end()
    })
    socket.on('data', () => {})
    socket.on('error', err => { clearTimeout(timer); reject(err) })
    socket.on('close', () => { clearTimeout(timer); resolve({ reused, session }) })
  })
}

interface Result { perSecond: number, cpuUs: number, reused: number, n: number }

async function handshakes (row: Running, get: boolean, resume: boolean, version: Version): Promise<Result> {
  // the session to offer: from a connection with a GET (TLS 1.3 tickets come after the handshake)
  const session = resume ? (await connectOnce({ port: row.port, get: true, version })).session : undefined
  if (resume && session === undefined) throw new Error(`${row.name}: no session from the first connection`)
  let reused = 0
  const cpu0 = treeCpuSeconds(row.child.pid)
  const t0 = performance.now()
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      next++
      if ((await connectOnce({ port: row.port, session, get, version })).reused) reused++
    }
  }))
  const seconds = (performance.now() - t0) / 1000
  const cpu = treeCpuSeconds(row.child.pid) - cpu0
  return { perSecond: count / seconds, cpuUs: cpu / count * 1e6, reused, n: count }
}

/** `connections` TLS connections, GETs one after another on each until `requests` in all. */
async function keepAlive (row: Running): Promise<Result> {
  const sockets = await Promise.all(Array.from({ length: connections }, async () => {
    const socket = tls.connect({ host: '127.0.0.1', port: row.port, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
    socket.on('error', () => {})
    await new Promise<void>((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) })
    return socket
  }))
  let sent = 0
  const cpu0 = treeCpuSeconds(row.child.pid)
  const t0 = performance.now()
  await Promise.all(sockets.map(async socket => {
    await new Promise<void>((resolve, reject) => {
      let pending = ''
      const timer = setTimeout(() => reject(new Error(`${row.name}: keep-alive requests took over 120 s`)), 120_000)
      const send = (): void => {
        if (sent >= requests) {
          clearTimeout(timer)
          resolve()
          return
        }
        sent++
        socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n')
      }
      socket.on('data', (chunk: Buffer) => {
        pending += chunk.toString('latin1')
        // one request at a time: the response is complete once its 2-byte body is in
        if (!pending.endsWith('\r\n\r\nok')) return
        if (!pending.startsWith('HTTP/1.1 200')) reject(new Error(`${row.name}: ${pending.slice(0, 80)}`))
        pending = ''
        send()
      })
      socket.once('close', () => reject(new Error(`${row.name}: a keep-alive connection closed`)))
      send()
    })
  }))
  const seconds = (performance.now() - t0) / 1000
  const cpu = treeCpuSeconds(row.child.pid) - cpu0
  for (const socket of sockets) socket.destroy()
  return { perSecond: sent / seconds, cpuUs: cpu / sent * 1e6, reused: 0, n: sent }
}

interface Scenario { name: string, what: string, run: (row: Running) => Promise<Result>, mustResume: boolean, unit: 'conn' | 'req' }

const scenarios: Scenario[] = [
  { name: 'full', what: 'full handshake (TLS 1.3), then close, no request', run: async row => await handshakes(row, false, false, '1.3'), mustResume: false, unit: 'conn' },
  { name: 'full+GET', what: 'full handshake and one GET (Connection: close)', run: async row => await handshakes(row, true, false, '1.3'), mustResume: false, unit: 'conn' },
  { name: 'resumed', what: 'TLS 1.3 ticket resumed, then close, no request', run: async row => await handshakes(row, false, true, '1.3'), mustResume: true, unit: 'conn' },
  { name: 'resumed+GET', what: 'TLS 1.3 ticket resumed and one GET', run: async row => await handshakes(row, true, true, '1.3'), mustResume: true, unit: 'conn' },
  ...sessionCache
    ? [{ name: 'session-id', what: 'TLS 1.2 without tickets, session ID offered again, then close (resumed only where a session cache is)', run: async (row: Running) => await handshakes(row, false, true, '1.2-id'), mustResume: false, unit: 'conn' as const }]
    : [],
  ...tls12
    ? [
        { name: 'full-1.2', what: 'full TLS 1.2 handshake, then close, no request', run: async (row: Running) => await handshakes(row, false, false, '1.2'), mustResume: false, unit: 'conn' as const },
        { name: 'ticket-1.2', what: 'TLS 1.2 ticket resumed, then close, no request', run: async (row: Running) => await handshakes(row, false, true, '1.2'), mustResume: true, unit: 'conn' as const },
      ]
    : [],
  { name: 'keep-alive', what: `${connections} TLS connections, one small GET after another`, run: async row => await keepAlive(row), mustResume: false, unit: 'req' },
]

const wanted = values.rows!.split(',').map(s => s.trim()).filter(s => s !== '') as RowName[]
if (sessionCache && wanted.includes('rp4') && !wanted.includes('rp4-nocache')) wanted.push('rp4-nocache')
const skipped: string[] = []
const rows = wanted.filter(name => {
  const why = name === 'haproxy' ? haproxyHasSsl() : name === 'nginx' && !installed('nginx') ? 'nginx is not installed' : null
  if (why !== null) skipped.push(`${name}: ${why}`)
  return why === null
})

/** Every round's result, by scenario and row. */
const results = new Map<string, Map<RowName, Result[]>>(scenarios.map(s => [s.name, new Map(rows.map(name => [name, []]))]))
try {
  const running: Array<{ name: RowName, row: Running, group: ProcessGroup }> = []
  for (const name of rows) {
    const group = new ProcessGroup()
    running.push({ name, row: await startRow(name, group), group })
  }
  try {
    // warm-up: the JIT, the proxy's pools, nginx's and HAProxy's caches
    for (const { row } of running) await handshakes(row, true, false, '1.3')
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? running : [...running].reverse()
      for (const scenario of scenarios) {
        for (const { name, row } of order) {
          const result = await scenario.run(row)
          results.get(scenario.name)!.get(name)!.push(result)
          if (scenario.mustResume && result.reused < result.n) {
            process.stderr.write(`${name} ${scenario.name}: only ${result.reused}/${result.n} resumed\n`)
            process.exitCode = 1
          }
          if (!scenario.mustResume && scenario.name.startsWith('full') && result.reused > 0) {
            process.stderr.write(`${name} ${scenario.name}: ${result.reused} resumed where none should be\n`)
            process.exitCode = 1
          }
        }
      }
    }
  } finally {
    for (const { group } of running) await group.stopAll()
  }

  console.log(`TLS rows (ECDSA P-256, ${values.profile} suites), proxy pinned to core ${PROXY_CORE}; ${count} connections per handshake scenario, ${concurrency} at a time; ${requests} keep-alive requests${rounds > 1 ? `; ${rounds} rounds, medians (per-round ratios from-to)` : ''}`)
  for (const s of skipped) console.log(`  skipped ${s}`)
  for (const scenario of scenarios) {
    const byRow = results.get(scenario.name)!
    const nginx = byRow.get('nginx')
    const floor = byRow.get('node')
    console.log(`\n[${scenario.name}] ${scenario.what}`)
    console.log(`  ${'row'.padEnd(12)} ${`${scenario.unit}/s`.padStart(8)} ${`CPU µs/${scenario.unit}`.padStart(13)} ${'× nginx'.padStart(8)} ${'× node'.padStart(7)} ${scenario.unit === 'conn' ? 'resumed' : ''}`)
    for (const [name, r] of byRow) {
      const cpu = median(r.map(x => x.cpuUs))
      const ratio = (base: Result[] | undefined): string => {
        if (base === undefined || base.length === 0) return '-'
        const central = (cpu / median(base.map(x => x.cpuUs))).toFixed(2)
        if (rounds === 1) return central
        const each = r.map((x, i) => x.cpuUs / base[i].cpuUs)
        return `${central} (${Math.min(...each).toFixed(2)}-${Math.max(...each).toFixed(2)})`
      }
      const reused = r.reduce((sum, x) => sum + x.reused, 0)
      const n = r.reduce((sum, x) => sum + x.n, 0)
      console.log(`  ${name.padEnd(12)} ${median(r.map(x => x.perSecond)).toFixed(0).padStart(8)} ${cpu.toFixed(1).padStart(13)} ${ratio(nginx).padStart(8)} ${ratio(floor).padStart(7)} ${scenario.unit === 'conn' ? `${reused}/${n}` : ''}`)
    }
  }
  const rp4 = (s: string): number | undefined => {
    const r = results.get(s)?.get('rp4')
    return r === undefined || r.length === 0 ? undefined : median(r.map(x => x.cpuUs))
  }
  const full = rp4('full')
  const resumed = rp4('resumed')
  if (full !== undefined && resumed !== undefined) console.log(`\nrp4 resumed/full CPU per handshake: ${(resumed / full).toFixed(2)}`)
} finally {
  await stopEverything()
  origin.close()
  rmSync(dir, { recursive: true, force: true })
}
