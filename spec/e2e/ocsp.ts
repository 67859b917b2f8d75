/**
 * OCSP stapling against `openssl ocsp` run as a local responder: the response is fetched in the
 * background and stapled (checked by openssl s_client -status and by openssl ocsp -respin), a
 * handshake never waits for it (responder down: served without), a failed refresh keeps the
 * previous response and is reported, a certificate without a responder is left alone.
 */
import t, { type Test } from 'tap'
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import tls from 'node:tls'
import { promisify } from 'node:util'
import { clock } from '../../lib/core/clock.js'
import { ocspEntryFor } from '../../lib/tls/ocsp.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import { makeCertificates, type Pair } from '../helpers/tls-certs.js'
import { within } from '../helpers/wait.js'

const run = promisify(execFile)
const certs = await makeCertificates(t)
const dir = certs.dir
const ca = readFileSync(certs.ca.cert)

async function freePort (): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as net.AddressInfo).port
  server.close()
  await once(server, 'close')
  return port
}

/** A leaf for `name` naming the responder at `url`, its file holding the CA after it (the chain). */
async function issueWithResponder (name: string, serial: number, url: string): Promise<Pair & { leaf: string }> {
  const leaf = path.join(dir, `${name}.leaf.pem`)
  const key = path.join(dir, `${name}.key`)
  const ext = path.join(dir, `${name}.ext`)
  const csr = path.join(dir, `${name}.csr`)
  writeFileSync(ext, `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:${name}\nauthorityInfoAccess=OCSP;URI:${url}\n`)
  await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`])
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', certs.ca.cert, '-CAkey', certs.ca.key, '-set_serial', String(serial), '-days', '2', '-extfile', ext, '-out', leaf])
  const chain = path.join(dir, `${name}.chain.pem`)
  writeFileSync(chain, Buffer.concat([readFileSync(leaf), ca]))
  return { cert: chain, key, leaf }
}

/** `openssl ocsp` answering for the CA on 127.0.0.1:port, every certificate in `index` (V or R lines). */
async function responder (t: Test, port: number, entries: Array<{ serial: number, status: 'V' | 'R', subject: string }>) {
  const index = path.join(dir, `index-${port}.txt`)
  const expiry = '491231235959Z'
  writeFileSync(index, entries.map(e => `${e.status}\t${expiry}\t${e.status === 'R' ? '260101000000Z' : ''}\t${e.serial.toString(16).toUpperCase().padStart(2, '0')}\tunknown\t/CN=${e.subject}\n`).join(''))
  const child = spawn('openssl', ['ocsp', '-index', index, '-port', String(port), '-rsigner', certs.ca.cert, '-rkey', certs.ca.key, '-CA', certs.ca.cert, '-nmin', '5', '-ignore_err'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill()
    await once(child, 'exit')
  }
  t.teardown(stop)
  const ready = (): boolean => /waiting for OCSP client connections/i.test(out)
  for (let i = 0; i < 200 && !ready(); i++) await new Promise(resolve => setTimeout(resolve, 25))
  if (!ready()) throw new Error(`openssl ocsp did not start:\n${out}`)
  return { stop }
}

/** The OCSP response stapled in a handshake (a client that asks for one); null: none. */
async function stapled (port: number, servername: string): Promise<Buffer | null> {
  // requestOCSP is a TLSSocket option that tls.connect passes on, missing from its type
  const socket = tls.connect({ host: '127.0.0.1', port, servername, ca, requestOCSP: true } as tls.ConnectionOptions)
  let response: Buffer | null = null
  socket.on('OCSPResponse', (r: Buffer) => { response = r })
  await within(once(socket, 'secureConnect'), 5000, 'handshake')
  socket.destroy()
  return response
}

async function untilStapled (port: number, servername: string): Promise<Buffer> {
  for (let i = 0; i < 100; i++) {
    const response = await stapled(port, servername)
    if (response !== null && response.length > 0) return response
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error('no OCSP response stapled within 5 s')
}

t.test('stapled once fetched: valid for openssl s_client -status and openssl ocsp', async t => {
  const ocspPort = await freePort()
  const pair = await issueWithResponder('ocsp.test', 100, `http://127.0.0.1:${ocspPort}`)
  await responder(t, ocspPort, [{ serial: 100, status: 'V', subject: 'ocsp.test' }])
  const origin = await startOrigin(t, () => ok('x'))
  const { port, events } = await startProxy(t, { targets: [origin.target], tls: { certificates: [{ cert: pair.cert, key: pair.key }] } })
  const response = await untilStapled(port, 'ocsp.test')
  const file = path.join(dir, 'stapled.der')
  writeFileSync(file, response)
  const { stdout } = await run('openssl', ['ocsp', '-respin', file, '-issuer', certs.ca.cert, '-CAfile', certs.ca.cert, '-cert', pair.leaf, '-no_nonce'])
  t.match(stdout, /: good\n/, 'good for this certificate')
  const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'ocsp.test', '-CAfile', certs.ca.cert, '-status'], { stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stdin.end()
  await within(once(child, 'exit'), 5000, 's_client')
  t.match(out, /OCSP Response Status: successful \(0x0\)/, 's_client sees a stapled response')
  t.match(out, /Cert Status: good/)
  t.match(out, /Verify return code: 0 \(ok\)/)
  t.same(events.proxyErrors, [])
})

t.test('never blocking: responder down, handshakes go on without a staple and the failure is reported', async t => {
  const down = await freePort()
  const pair = await issueWithResponder('down.test', 101, `http://127.0.0.1:${down}`)
  const origin = await startOrigin(t, () => ok('x'))
  const { port, events } = await startProxy(t, { targets: [origin.target], tls: { certificates: [{ cert: pair.cert, key: pair.key }] } })
  t.equal(await stapled(port, 'down.test'), null, 'no staple, handshake complete')
  await events.until(() => events.proxyErrors.some(e => e.code === 'ocsp_failed'), 5000, 'the failed fetch reported')
  t.match(events.proxyErrors[0].message, /^OCSP response for CN=down\.test from http:\/\/127\.0\.0\.1:\d+ not updated \(next attempt in 10s, nothing stapled meanwhile\): /)
  t.equal(await stapled(port, 'down.test'), null)
})

t.test('a refresh that fails keeps the previous response; one that succeeds replaces it', async t => {
  const ocspPort = await freePort()
  const pair = await issueWithResponder('refresh.test', 102, `http://127.0.0.1:${ocspPort}`)
  const { stop } = await responder(t, ocspPort, [{ serial: 102, status: 'V', subject: 'refresh.test' }])
  const errors: string[] = []
  const entry = ocspEntryFor(readFileSync(pair.cert), { onError: message => errors.push(message) })!
  t.teardown(() => entry.close())
  t.equal(entry.response, null, 'nothing before the first fetch')
  await entry.refresh()
  const first = entry.response
  t.ok(first !== null && first.length > 0, 'fetched')
  await stop()
  await entry.refresh()
  t.equal(entry.response, first, 'the responder gone: the previous response stays')
  t.match(errors, [/previous one is stapled meanwhile/])
  await responder(t, ocspPort, [{ serial: 102, status: 'V', subject: 'refresh.test' }])
  // a response is signed per second: wait until the next second so that the new one differs
  const second = Math.ceil(Date.now() / 1000) * 1000
  while (Date.now() < second) await new Promise(resolve => setTimeout(resolve, second - Date.now()))
  await entry.refresh()
  t.ok(entry.response !== null && !entry.response.equals(first!), 'a new response replaces it')
  t.equal(errors.length, 1)
})

t.test('timing: the next fetch halfway through the response\'s validity; no longer stapled a minute before its nextUpdate', async t => {
  const ocspPort = await freePort()
  const pair = await issueWithResponder('timing.test', 106, `http://127.0.0.1:${ocspPort}`)
  // the responder signs with nextUpdate 5 minutes after thisUpdate (-nmin 5)
  await responder(t, ocspPort, [{ serial: 106, status: 'V', subject: 'timing.test' }])
  const entry = ocspEntryFor(readFileSync(pair.cert), { onError: () => {} })!
  t.teardown(() => entry.close())
  const fetched = Date.now()
  await entry.refresh()
  t.ok(entry.response !== null, 'fetched')
  const inMs = entry.deadline - clock.refresh()
  t.ok(inMs > 140_000 && inMs <= 150_000, `the next fetch in 2.5 minutes, halfway (${Math.round(inMs / 1000)} s)`)
  // what a handshake would get later, the clock moved on by hand (no refresh happens meanwhile)
  const realNow = Date.now
  t.teardown(() => { Date.now = realNow })
  Date.now = () => fetched + 230_000
  t.ok(entry.response !== null, 'stapled 3 min 50 s on')
  Date.now = () => fetched + 245_000
  t.equal(entry.response, null, 'not stapled from a minute before nextUpdate on (4 min 5 s on)')
  Date.now = realNow
})

t.test('unusable answers are not stapled: another certificate\'s status, a revoked certificate reported', async t => {
  const ocspPort = await freePort()
  const unknown = await issueWithResponder('unknown.test', 103, `http://127.0.0.1:${ocspPort}`)
  const revoked = await issueWithResponder('revoked.test', 104, `http://127.0.0.1:${ocspPort}`)
  await responder(t, ocspPort, [{ serial: 104, status: 'R', subject: 'revoked.test' }])
  const errors: string[] = []
  const hooks = { onError: (message: string) => errors.push(message) }
  const a = ocspEntryFor(readFileSync(unknown.cert), hooks)!
  const b = ocspEntryFor(readFileSync(revoked.cert), hooks)!
  t.teardown(() => { a.close(); b.close() })
  await a.refresh()
  t.equal(a.response, null, 'a certificate the responder does not know: nothing stapled')
  t.match(errors.shift(), /does not know this certificate|refused/)
  await b.refresh()
  t.ok(b.response !== null, 'a revoked certificate\'s response is stapled (clients must see it)')
  t.match(errors.shift(), /REVOKED/)
  t.equal(ocspEntryFor(readFileSync(certs.ca.cert), hooks), null, 'no responder named: nothing to do')
})

t.test('tls.ocspStapling: false turns it off', async t => {
  const ocspPort = await freePort()
  const pair = await issueWithResponder('off.test', 105, `http://127.0.0.1:${ocspPort}`)
  const origin = await startOrigin(t, () => ok('x'))
  const { port, events } = await startProxy(t, { targets: [origin.target], tls: { certificates: [{ cert: pair.cert, key: pair.key }], ocspStapling: false } })
  t.equal(await stapled(port, 'off.test'), null)
  t.same(events.proxyErrors, [], 'the responder was never asked')
})
