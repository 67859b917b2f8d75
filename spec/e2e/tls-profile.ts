/**
 * The TLS profile of terminated handshakes, as a scanner would probe it with `openssl s_client`:
 * Mozilla intermediate by default (no CBC, no TLS 1.1), modern (TLS 1.3 only), a custom cipher
 * list; client-initiated renegotiation refused; no 0-RTT in the tickets; the flag and its errors;
 * session tickets resumed, their keys rotated on schedule.
 */
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import tls from 'node:tls'
import { buildModel } from '../../lib/config/build.js'
import { ConfigError } from '../../lib/config/problems.js'
import { header } from '../helpers/framing.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import { makeCertificates } from '../helpers/tls-certs.js'
import { resumesWith, sessionTicket, type TlsVersion } from '../helpers/tls-tickets.js'
import { within } from '../helpers/wait.js'

const certs = await makeCertificates(t)
const a = await certs.issue('a', ['a.test'])
const ca = readFileSync(certs.ca.cert)

async function serving (t: Test, tlsExtra: { profile?: 'intermediate' | 'modern', ciphers?: string, ticketKeyRotation?: string } = {}) {
  const origin = await startOrigin(t, req => ok(`${req.url} ${header(req, 'x-forwarded-proto')}`))
  return await startProxy(t, { targets: [origin.target], tls: { certificates: [a], ...tlsExtra } })
}

interface SClient { code: number | null, out: string }

/**
 * `openssl s_client` against the proxy, with `input` written line by line (each after the
 * previous one's echo, or after `pauseMs` when nothing is echoed) and stdin then closed.
 */
async function sClient (port: number, args: string[], input: string[] = [], extra: string[] = []): Promise<SClient> {
  const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'a.test', '-CAfile', certs.ca.cert, ...args, ...extra], { stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString('latin1') })
  child.stderr.on('data', (d: Buffer) => { out += d.toString('latin1') })
  child.stdin.on('error', () => {})
  const exited = once(child, 'exit')
  // the handshake's summary ends with this line: only then are lines read as commands and data
  const until = async (pattern: RegExp, label: string): Promise<void> => {
    for (let i = 0; i < 500 && !pattern.test(out) && child.exitCode === null; i++) await new Promise(resolve => setTimeout(resolve, 10))
    if (!pattern.test(out) && child.exitCode === null) throw new Error(`s_client: no ${label} in 5 s:\n${out}`)
  }
  if (input.length > 0) await until(/Verify return code: [^\n]*\n(?: {4}[^\n]*\n)*---\n/, 'handshake summary')
  for (const line of input) {
    if (child.exitCode !== null) break
    child.stdin.write(line === 'R' ? 'R\n' : line)
    await until(new RegExp(line === 'R' ? 'RENEGOTIATING' : 'HTTP/1.1 \\d{3}'), `answer to ${JSON.stringify(line)}`)
  }
  child.stdin.end()
  await within(exited, 10_000, 's_client exit')
  return { code: child.exitCode, out }
}

/** Whether a handshake with these s_client options completes (the cipher it agreed on, or null). */
async function handshake (port: number, args: string[]): Promise<string | null> {
  const { out } = await sClient(port, [...args, '-brief'])
  return /^Ciphersuite: (\S+)$/m.exec(out)?.[1] ?? null
}

t.test('intermediate (the default): TLS 1.2 with ECDHE and AEAD only, TLS 1.3, nothing older', async t => {
  const { port } = await serving(t)
  const cases: Array<[string[], string | null]> = [
    [['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'], 'ECDHE-ECDSA-AES128-GCM-SHA256'],
    [['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-GCM-SHA384'], 'ECDHE-ECDSA-AES256-GCM-SHA384'],
    [['-tls1_2', '-cipher', 'ECDHE-ECDSA-CHACHA20-POLY1305'], 'ECDHE-ECDSA-CHACHA20-POLY1305'],
    // what testssl.sh flags as obsolete: CBC suites with SHA-1 and SHA-2 MACs
    [['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA'], null],
    [['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-SHA384'], null],
    [['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA'], null],
    [['-tls1_3'], 'TLS_AES_256_GCM_SHA384'],
    [['-tls1_3', '-ciphersuites', 'TLS_CHACHA20_POLY1305_SHA256'], 'TLS_CHACHA20_POLY1305_SHA256'],
    [['-tls1_1', '-cipher', 'DEFAULT:@SECLEVEL=0'], null],
  ]
  for (const [args, expected] of cases) t.equal(await handshake(port, args), expected, args.join(' '))
  // the client's preference decides among suites that are all strong
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256' })
  await within(once(socket, 'secureConnect'), 5000, 'handshake')
  t.equal(socket.getCipher().name, 'ECDHE-ECDSA-CHACHA20-POLY1305', 'no server cipher preference')
  socket.destroy()
})

t.test('modern: TLS 1.3 only', async t => {
  const { port } = await serving(t, { profile: 'modern' })
  t.equal(await handshake(port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256']), null, 'TLS 1.2 refused')
  t.equal(await handshake(port, ['-tls1_3']), 'TLS_AES_256_GCM_SHA384', 'TLS 1.3 accepted')
})

t.test('a custom cipher list replaces the profile\'s', async t => {
  const { port } = await serving(t, { ciphers: 'TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES256-GCM-SHA384' })
  t.equal(await handshake(port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256']), null, 'a suite not in the list refused')
  t.equal(await handshake(port, ['-tls1_2']), 'ECDHE-ECDSA-AES256-GCM-SHA384')
  t.equal(await handshake(port, ['-tls1_3']), 'TLS_AES_128_GCM_SHA256')
  const bad = (ciphers: string, form: 'flat' | 'full'): string => {
    try {
      buildModel(form === 'flat'
        ? { listen: ':0', targets: ['127.0.0.1:1'], tls: { certificates: [a], ciphers } }
        : { listeners: [{ listen: ':0', tls: { certificates: [a], ciphers } }], routes: [{ proxy: 'b' }], upstreams: { b: { targets: ['127.0.0.1:1'] } } })
    } catch (err) {
      if (err instanceof ConfigError) return err.message
      throw err
    }
    return ''
  }
  t.match(bad('RC4-NOPE', 'flat'), /tls\.ciphers: OpenSSL cannot use this cipher list: .*no cipher match/, 'named by its key (flat)')
  t.match(bad('RC4-NOPE', 'full'), /listeners\[0\]\.tls\.ciphers: OpenSSL cannot use this cipher list/, 'named by its key (full)')
})

t.test('client-initiated renegotiation refused (openssl s_client R); the proxy serves on', async t => {
  const { port, events } = await serving(t)
  const { out } = await sClient(port, ['-tls1_2'], ['GET /before HTTP/1.1\r\nHost: a.test\r\n\r\n', 'R'])
  t.match(out, /HTTP\/1\.1 200 OK[\s\S]*\/before https/, 'served before the attempt')
  t.match(out, /RENEGOTIATING[\s\S]*no renegotiation/, 'refused with a no_renegotiation alert')
  t.notMatch(out, /RENEGOTIATING[\s\S]*verify return:1[\s\S]*verify return:1[\s\S]*verify return:1/, 'no second handshake')
  const { out: after } = await sClient(port, ['-tls1_2'], ['GET /after HTTP/1.1\r\nHost: a.test\r\n\r\n'])
  t.match(after, /\/after https/, 'the next connection is served')
  t.same(events.proxyErrors, [], 'nothing of rp4\'s own went wrong')
})

t.test('no 0-RTT: tickets allow no early data', async t => {
  const { port } = await serving(t)
  const sess = path.join(certs.dir, 'session.pem')
  await sClient(port, ['-tls1_3', '-sess_out', sess], ['GET / HTTP/1.1\r\nHost: a.test\r\n\r\n'])
  const child = spawn('openssl', ['sess_id', '-in', sess, '-noout', '-text'])
  let text = ''
  child.stdout.on('data', (d: Buffer) => { text += d.toString() })
  await within(once(child, 'exit'), 5000, 'sess_id')
  t.match(text, /Protocol\s*: TLSv1\.3/, 'a TLS 1.3 ticket')
  t.match(text, /Max Early Data: 0\b/, 'max_early_data 0')
  // asking anyway: the client cannot send early data on this ticket, the handshake is a plain resumption
  const early = path.join(certs.dir, 'early.txt')
  writeFileSync(early, 'GET /early HTTP/1.1\r\nHost: a.test\r\n\r\n')
  const { out } = await sClient(port, ['-tls1_3', '-sess_in', sess, '-early_data', early])
  t.notMatch(out, /Early data was accepted/, 'no early data accepted')
  t.match(out, /Reused, TLSv1\.3/, 'resumed without it')
})

/** A ticket from a full handshake (tls-tickets.ts), with this file's CA. */
const freshTicket = async (port: number, maxVersion: TlsVersion): Promise<Buffer> => await sessionTicket(port, ca, maxVersion)
const resumes = async (port: number, ticket: Buffer, maxVersion: TlsVersion): Promise<boolean> => await resumesWith(port, ca, ticket, maxVersion)

t.test('session tickets: resumed, and the keys rotate on schedule (an old ticket then needs a full handshake)', async t => {
  const { port } = await serving(t, { ticketKeyRotation: '1s' })
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    let ticket = await freshTicket(port, maxVersion)
    let resumed = false
    // a rotation between the two connections would fail this once: three tries, a second apart at worst
    for (let i = 0; i < 3 && !(resumed = await resumes(port, ticket, maxVersion)); i++) ticket = await freshTicket(port, maxVersion)
    t.ok(resumed, `${maxVersion}: a fresh ticket resumes`)
    let rotated = false
    for (let i = 0; i < 60 && !rotated; i++) {
      await new Promise(resolve => setTimeout(resolve, 100))
      rotated = !await resumes(port, ticket, maxVersion)
    }
    t.ok(rotated, `${maxVersion}: within 6 s the keys rotated and the old ticket no longer resumes`)
  }
  t.throws(() => buildModel({ listen: ':0', targets: ['127.0.0.1:1'], tls: { certificates: [a], ticketKeyRotation: '10ms' } }), /tls\.ticketKeyRotation: 10ms: at least 1s/)
})
