/**
 * TLS handshakes through rp4: full handshakes (a new session each) against resumed ones (the
 * session ticket of the first connection offered again), each connection carrying one small GET.
 * rp4 runs as users run it (bin/serving.ts), pinned to the proxy core; the client runs here, on
 * the other core, one connection at a time. Reports rp4's CPU per connection from /proc, the
 * connections per second, and checks that every resumed connection was resumed.
 *
 *   node dist/perf/tls-handshakes.js [--count N] [--profile intermediate|modern]
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { parseArgs } from 'node:util'
import { HEAP_ARG, rp4Env } from '../bin/serving.js'
import { processCpuSeconds } from './proc-stats.js'
import { PROXY_CORE, ProcessGroup, stopEverything, waitForStderr } from './processes.js'
import { RP4_PATH } from './rows.js'

const { values } = parseArgs({ options: { count: { type: 'string', default: '1000' }, profile: { type: 'string', default: 'intermediate' } } })
const count = Math.max(10, Math.min(100_000, Number(values.count)))

const dir = mkdtempSync(join(tmpdir(), 'rp4-perf-tls-'))
const cert = join(dir, 'cert.pem')
const key = join(dir, 'key.pem')
// ECDSA P-256, as the reference figures for nginx are taken with
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' })

const origin = net.createServer(socket => {
  socket.on('data', () => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'))
  socket.on('error', () => {})
})
await new Promise<void>(resolve => origin.listen(0, '127.0.0.1', resolve))
const originPort = (origin.address() as net.AddressInfo).port

const group = new ProcessGroup()
const rp4 = group.spawn('rp4', process.execPath, [HEAP_ARG, RP4_PATH, 'listen', '127.0.0.1:0', '--to', `127.0.0.1:${originPort}`, '--cert', cert, '--key', key, '--tls-profile', values.profile!], { core: PROXY_CORE, env: rp4Env() })
const match = await waitForStderr(rp4, /listening on (\S+):(\d+)/, 10_000)
const port = Number(match[2])

/** One connection: handshake (offering `session` when given), one GET, close. */
async function once (session: Buffer | undefined): Promise<{ reused: boolean, session: Buffer | undefined }> {
  return await new Promise((resolve, reject) => {
    let ticket: Buffer | undefined
    let reused = false
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, session })
    socket.on('session', s => { ticket = s })
    socket.once('secureConnect', () => {
      // read while the connection is up: a closed socket no longer knows
      reused = socket.isSessionReused()
      socket.write('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
    })
    socket.on('data', () => {})
    socket.on('error', reject)
    socket.on('close', () => resolve({ reused, session: ticket }))
    setTimeout(() => { socket.destroy(); reject(new Error('a connection took over 10 s')) }, 10_000).unref()
  })
}

async function batch (resume: boolean): Promise<{ perConnUs: number, perSecond: number, reused: number }> {
  let ticket = resume ? (await once(undefined)).session : undefined
  const cpu0 = processCpuSeconds(rp4.pid) ?? 0
  const t0 = performance.now()
  let reused = 0
  for (let i = 0; i < count; i++) {
    const result = await once(resume ? ticket : undefined)
    if (result.reused) reused++
    if (resume && result.session !== undefined) ticket = result.session
  }
  const seconds = (performance.now() - t0) / 1000
  const cpu = (processCpuSeconds(rp4.pid) ?? 0) - cpu0
  return { perConnUs: cpu / count * 1e6, perSecond: count / seconds, reused }
}

try {
  await batch(false) // warm-up
  const full = await batch(false)
  const resumed = await batch(true)
  const line = (name: string, r: { perConnUs: number, perSecond: number, reused: number }): string =>
    `  ${name.padEnd(8)} ${r.perSecond.toFixed(0).padStart(7)} conn/s  ${r.perConnUs.toFixed(1).padStart(8)} µs rp4 CPU per connection  (${r.reused}/${count} resumed)`
  console.log(`TLS handshakes through rp4 (--tls-profile ${values.profile}), ${count} connections each, one GET per connection:`)
  console.log(line('full', full))
  console.log(line('resumed', resumed))
  console.log(`  resumed/full CPU: ${(resumed.perConnUs / full.perConnUs).toFixed(2)}`)
  if (resumed.reused < count) process.exitCode = 1
} finally {
  await stopEverything()
  origin.close()
  rmSync(dir, { recursive: true, force: true })
}
