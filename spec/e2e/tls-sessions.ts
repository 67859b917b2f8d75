/**
 * The TLS 1.2 session-ID cache (tls.sessionCache): a client that takes no tickets resumes with
 * its session ID (`openssl s_client -no_ticket -sess_out`, then `-sess_in`), not with the cache
 * off; TLS 1.3 resumes by tickets whatever the cache, and stores nothing in it; the cache stays
 * within its bytes whatever a client does; sessions expire; a session resumed by ID keeps its
 * verified client certificate; the options and their errors.
 */
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { constants, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import tls from 'node:tls'
import { buildModel } from '../../lib/config/build.js'
import { flagsToOptions, parseCommandLine } from '../../lib/config/flags.js'
import { header } from '../helpers/framing.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy, type StartedProxy } from '../helpers/proxy.js'
import { makeCertificates } from '../helpers/tls-certs.js'
import { within } from '../helpers/wait.js'

const certs = await makeCertificates(t)
const a = await certs.issue('a', ['a.test'])
const ca = readFileSync(certs.ca.cert)

type TlsExtra = Record<string, unknown>

async function serving (t: Test, tlsExtra: TlsExtra = {}, extra: Record<string, unknown> = {}): Promise<StartedProxy> {
  const origin = await startOrigin(t, req => ok(`${req.url} ${header(req, 'x-client-fp') ?? '-'}`))
  return await startProxy(t, { targets: [origin.target], tls: { certificates: [a], ...tlsExtra }, ...extra })
}

/** `openssl s_client` with these options: its whole output once it exited (stdin closed at once). */
async function sClient (port: number, args: string[]): Promise<string> {
  const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'a.test', '-CAfile', certs.ca.cert, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString('latin1') })
  child.stderr.on('data', (d: Buffer) => { out += d.toString('latin1') })
  child.stdin.on('error', () => {})
  const exited = once(child, 'exit')
  child.stdin.end()
  await within(exited, 10_000, 's_client exit')
  return out
}

/** Whether the handshake was new or resumed, as s_client reports it (`New, TLSv1.2, ...` or `Reused, ...`). */
function reuse (out: string): string {
  return /^(New|Reused), (TLSv1\.\d)/m.exec(out)?.slice(1).join(' ') ?? `no handshake:\n${out}`
}

const NO_TICKET = constants.SSL_OP_NO_TICKET

/** A full TLS 1.2 handshake by a client that takes no tickets: the session it may resume with. */
async function fullSession (port: number, options: tls.ConnectionOptions = {}): Promise<Buffer> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca, maxVersion: 'TLSv1.2', secureOptions: NO_TICKET, ...options })
  const session = once(socket, 'session')
  await within(once(socket, 'secureConnect'), 5000, 'full handshake')
  const [der] = await within(session, 5000, 'the session') as [Buffer]
  await closed(socket)
  return der
}

/**
 * Ended and closed from the client's side, not destroyed: a client destroyed as its handshake
 * completes may not have sent its last flight (a resumed TLS 1.2 handshake ends with the client's
 * Finished), and rp4 rightly reports that handshake as aborted.
 */
async function closed (socket: tls.TLSSocket): Promise<void> {
  const done = once(socket, 'close')
  socket.end()
  socket.resume()
  await within(done, 5000, 'the connection closed')
}

/** Whether a TLS 1.2 client without tickets resumes `session` (and the socket, for more). */
async function resumes (port: number, session: Buffer, options: tls.ConnectionOptions = {}): Promise<boolean> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca, maxVersion: 'TLSv1.2', secureOptions: NO_TICKET, session, ...options })
  await within(once(socket, 'secureConnect'), 5000, 'handshake')
  const reused = socket.isSessionReused()
  await closed(socket)
  return reused
}

/** The admin endpoint's /metrics. */
async function metrics (served: StartedProxy): Promise<string> {
  const address = served.proxy.adminAddress()!
  const socket = net.connect(address.port, address.address)
  socket.end('GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n')
  let text = ''
  socket.on('data', (d: Buffer) => { text += d.toString() })
  await within(once(socket, 'close'), 5000, '/metrics')
  return text
}

function sessions (proxy: StartedProxy): { entries: number, bytes: number, stored: number, hits: number, misses: number } {
  const all = proxy.proxy.stats().tlsSessions
  if (all.length !== 1) throw new Error(`one listener with a session cache expected, not ${all.length}`)
  return all[0]
}

t.test('s_client -tls1_2 -no_ticket: -sess_out then -sess_in is Reused with the cache (the default), New without', async t => {
  for (const [extra, expected] of [[{}, 'Reused TLSv1.2'], [{ sessionCache: 0 }, 'New TLSv1.2']] as const) {
    const served = await serving(t, extra, { admin: { listen: 0 } })
    const file = path.join(certs.dir, `sess-${served.port}.pem`)
    t.equal(reuse(await sClient(served.port, ['-tls1_2', '-no_ticket', '-sess_out', file])), 'New TLSv1.2', 'the first handshake is a full one')
    const second = await sClient(served.port, ['-tls1_2', '-no_ticket', '-sess_in', file])
    t.equal(reuse(second), expected, `sessionCache ${JSON.stringify(extra)}: ${expected}`)
    if ('sessionCache' in extra) t.same(served.proxy.stats().tlsSessions, [], 'no cache in the stats')
    else {
      t.match(sessions(served), { entries: 1, stored: 1, hits: 1 }, 'one session stored, found once')
      const text = await metrics(served)
      t.match(text, /\nrp4_tls_session_cache\{listener="default",measure="entries"\} 1\n/, 'metrics: one entry')
      t.match(text, /\nrp4_tls_session_cache_lookups_total\{listener="default",result="hit"\} 1\n/, 'metrics: one hit')
    }
    t.same(served.events.clientErrors, [], 'no handshake failed')
  }
})

t.test('TLS 1.3 resumes by tickets with the cache on, and stores nothing in it', async t => {
  const served = await serving(t)
  for (let i = 0; i < 3; i++) {
    const first = tls.connect({ host: '127.0.0.1', port: served.port, servername: 'a.test', ca, minVersion: 'TLSv1.3' })
    const session = once(first, 'session')
    await within(once(first, 'secureConnect'), 5000, 'full handshake')
    // TLS 1.3 sends its tickets after the handshake: a request makes sure they were read
    first.write('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')
    const [ticket] = await within(session, 5000, 'a ticket') as [Buffer]
    first.destroy()
    const again = tls.connect({ host: '127.0.0.1', port: served.port, servername: 'a.test', ca, minVersion: 'TLSv1.3', session: ticket })
    await within(once(again, 'secureConnect'), 5000, 'resumption')
    t.ok(again.isSessionReused(), `TLS 1.3 resumed by ticket (${i + 1})`)
    again.destroy()
  }
  t.same(sessions(served), { listener: 'default', entries: 0, bytes: 0, stored: 0, hits: 0, misses: 0 },
    'a handshake offering TLS 1.3 is not given the cache: nothing stored, nothing looked up')
  // a client offering both versions negotiates TLS 1.3 too; one capped at TLS 1.2 is given the cache
  const both = tls.connect({ host: '127.0.0.1', port: served.port, servername: 'a.test', ca })
  await within(once(both, 'secureConnect'), 5000, 'handshake offering 1.2 and 1.3')
  t.equal(both.getProtocol(), 'TLSv1.3')
  both.destroy()
  t.equal(sessions(served).misses, 0, 'still no lookup')
  t.ok(await resumes(served.port, await fullSession(served.port)), 'TLS 1.2 without tickets: resumed by ID from the cache')
  t.match(sessions(served), { entries: 1, stored: 1, hits: 1 }, 'the TLS 1.2 handshakes used the cache')
})

t.test('a TLS 1.2 client that takes tickets resumes by ticket, without a cache lookup', async t => {
  const served = await serving(t)
  const withTicket = tls.connect({ host: '127.0.0.1', port: served.port, servername: 'a.test', ca, maxVersion: 'TLSv1.2' })
  const session = once(withTicket, 'session')
  await within(once(withTicket, 'secureConnect'), 5000, 'handshake')
  const [der] = await within(session, 5000, 'session') as [Buffer]
  withTicket.destroy()
  t.ok(await resumes(served.port, der, { secureOptions: 0 }), 'resumed (ticket)')
  t.equal(sessions(served).hits, 0, 'without a lookup: a ticket skips the cache')
})

t.test('bounded: a client making handshake after handshake only pushes out the oldest sessions', async t => {
  const served = await serving(t, { sessionCache: '4k' })
  const made: Buffer[] = []
  for (let i = 0; i < 40; i++) made.push(await fullSession(served.port))
  const s = sessions(served)
  t.equal(s.stored, 40, 'every session was offered to the cache')
  t.ok(s.bytes <= 4096, `within 4k (${s.bytes} bytes)`)
  t.ok(s.entries > 0 && s.entries < 40, `only the latest kept (${s.entries})`)
  t.ok(await resumes(served.port, made[39]), 'the newest session resumes')
  t.notOk(await resumes(served.port, made[0]), 'the oldest was pushed out: a full handshake')
  t.same(served.events.clientErrors, [], 'no handshake failed')
})

t.test('sessions expire after tls.sessionTimeout', async t => {
  const served = await serving(t, { sessionTimeout: '1s' })
  let session = await fullSession(served.port)
  t.ok(await resumes(served.port, session), 'a fresh session resumes')
  session = await fullSession(served.port)
  let expired = false
  // bounded: 1 s of lifetime, polled for at most 6 s
  for (let i = 0; i < 60 && !expired; i++) {
    await new Promise(resolve => setTimeout(resolve, 100))
    expired = !await resumes(served.port, session)
  }
  t.ok(expired, 'within 6 s the session no longer resumes')
})

t.test('a session resumed by ID keeps its verified client certificate, forwarded as on the full handshake', async t => {
  const client = await certs.issue('client', ['client.test'])
  const served = await serving(t, { clientCertificates: { ca: [certs.ca.cert], fingerprintHeader: 'X-Client-FP' } })
  const options = { cert: readFileSync(client.cert), key: readFileSync(client.key) }
  const session = await fullSession(served.port, options)
  const socket = tls.connect({ host: '127.0.0.1', port: served.port, servername: 'a.test', ca, maxVersion: 'TLSv1.2', secureOptions: NO_TICKET, session, ...options })
  await within(once(socket, 'secureConnect'), 5000, 'handshake')
  t.ok(socket.isSessionReused(), 'resumed by session ID')
  socket.write('GET /who HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')
  let reply = ''
  socket.on('data', (d: Buffer) => { reply += d.toString() })
  await within(once(socket, 'end'), 5000, 'response')
  const fingerprint = new X509Certificate(readFileSync(client.cert)).fingerprint256
  t.match(reply, `/who ${fingerprint}`, 'the identity of the resumed session is forwarded')
  socket.destroy()
})

t.test('options: --tls-session-cache, bounds named by their key', async t => {
  const flags = (...args: string[]) => {
    const line = parseCommandLine(['listen', ':0', '--to', '127.0.0.1:1', '--cert', a.cert, '--key', a.key, ...args])
    return flagsToOptions(line.positionals[1], line)
  }
  const model = buildModel(flags('--tls-session-cache', '64k'))
  t.equal(model.listeners[0].tls?.sessionCache, 65536, '--tls-session-cache 64k')
  const off = buildModel(flags('--tls-session-cache', '0'))
  t.equal(off.listeners[0].tls?.sessionCache, 0, '0: off')
  t.throws(() => buildModel({ listen: ':0', targets: ['127.0.0.1:1'], tls: { certificates: [a], sessionCache: 100 } }), /tls\.sessionCache: 100: at least 4k/)
  t.throws(() => buildModel({ listen: ':0', targets: ['127.0.0.1:1'], tls: { certificates: [a], sessionTimeout: '25h' } }), /tls\.sessionTimeout: 25h: at most 24h/)
  t.throws(() => buildModel({ listen: ':0', targets: ['127.0.0.1:1'], tls: { certificates: [a], sessionCache: 'lots' } }), /tls\.sessionCache: lots: not a size/)
})
