/**
 * Session ticket keys from outside (the library's `ticketKeys` source, what a primary process
 * will hand its workers): two proxies following one source accept each other's tickets, and
 * change keys together; a bad key from the source is refused and reported, the previous one
 * kept; a bad source is named at createProxy; a reload keeps a listener's keys (tickets issued
 * before it resume after it) and leaves no subscription behind, nor does close.
 */
import t, { type Test } from 'tap'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import tls from 'node:tls'
import { createProxy, TicketKeys, TICKET_KEY_BYTES, type TicketKeySource } from '../../lib/index.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy, type StartedProxy } from '../helpers/proxy.js'
import { makeCertificates } from '../helpers/tls-certs.js'
import { within } from '../helpers/wait.js'

const certs = await makeCertificates(t)
const a = await certs.issue('a', ['a.test'])
const ca = readFileSync(certs.ca.cert)

type Version = 'TLSv1.2' | 'TLSv1.3'

async function serving (t: Test, ticketKeys?: TicketKeySource): Promise<StartedProxy> {
  const origin = await startOrigin(t, () => ok('ok'))
  return await startProxy(t, { targets: [origin.target], tls: { certificates: [a] }, ...ticketKeys === undefined ? {} : { ticketKeys } })
}

/** The ticket of a full handshake with `port` (a request makes sure TLS 1.3's tickets were read). */
async function ticketFrom (port: number, version: Version): Promise<Buffer> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca, minVersion: version, maxVersion: version })
  const session = once(socket, 'session')
  await within(once(socket, 'secureConnect'), 5000, 'full handshake')
  socket.write('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')
  const [ticket] = await within(session, 5000, 'a ticket') as [Buffer]
  socket.destroy()
  return ticket
}

async function resumes (port: number, ticket: Buffer, version: Version): Promise<boolean> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca, minVersion: version, maxVersion: version, session: ticket })
  await within(once(socket, 'secureConnect'), 5000, 'handshake')
  const reused = socket.isSessionReused()
  socket.destroy()
  return reused
}

/** A source the test drives by hand, counting who follows it. */
class HandSource implements TicketKeySource {
  current: Buffer
  readonly followers = new Set<(key: Buffer) => void>()
  constructor (key: Buffer) { this.current = key }
  subscribe (onKey: (key: Buffer) => void): () => void {
    this.followers.add(onKey)
    return () => { this.followers.delete(onKey) }
  }

  send (key: Buffer): void {
    this.current = key
    for (const onKey of this.followers) onKey(key)
  }
}

const key = (fill: number): Buffer => Buffer.alloc(TICKET_KEY_BYTES, fill)

t.test('two proxies following one source accept each other\'s tickets, and change keys together', async t => {
  // the primary's keys: rotated by hand here (no schedule), forwarded to both by subscribe
  const primary = new TicketKeys(0)
  t.teardown(() => primary.close())
  const one = await serving(t, primary)
  const two = await serving(t, primary)
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    const ticket = await ticketFrom(one.port, version)
    t.ok(await resumes(two.port, ticket, version), `${version}: a ticket of the first resumes on the second`)
    primary.rotate()
    t.notOk(await resumes(one.port, ticket, version), `${version}: after a rotation the old ticket no longer resumes on the first`)
    t.notOk(await resumes(two.port, ticket, version), `${version}: nor on the second`)
    const fresh = await ticketFrom(two.port, version)
    t.ok(await resumes(one.port, fresh, version), `${version}: a ticket made after it resumes across`)
  }
  // without a shared source, each proxy's keys are its own
  const alone = await serving(t)
  t.notOk(await resumes(alone.port, await ticketFrom(one.port, 'TLSv1.3'), 'TLSv1.3'), 'a proxy with its own keys refuses the others\' tickets')
})

t.test('a bad key from the source is refused and reported; the previous key stays', async t => {
  const source = new HandSource(key(1))
  const served = await serving(t, source)
  const ticket = await ticketFrom(served.port, 'TLSv1.3')
  source.send(Buffer.alloc(16))
  t.match(served.events.proxyErrors.map(e => `${e.code}: ${e.message}`), [/^ticket_keys_refused: .*48 bytes, not 16/], 'reported')
  t.ok(await resumes(served.port, ticket, 'TLSv1.3'), 'the previous key still resumes its tickets')
  source.send(key(2))
  t.notOk(await resumes(served.port, ticket, 'TLSv1.3'), 'a good key is taken')
})

t.test('a source that cannot be used is named at createProxy', async t => {
  const options = { listen: '127.0.0.1:0', targets: ['127.0.0.1:1'], tls: { certificates: [a] } }
  t.throws(() => createProxy({ ...options, ticketKeys: new HandSource(Buffer.alloc(10)) }), /option ticketKeys: session ticket keys are 48 bytes, not 10/)
  t.throws(() => createProxy({ ...options, ticketKeys: 'secret' as unknown as TicketKeySource }), /option ticketKeys must be a source of session ticket keys/)
  t.throws(() => createProxy({ ...options, ticketKeys: { current: 'x'.repeat(48), subscribe: () => () => {} } as unknown as TicketKeySource }), /option ticketKeys: session ticket keys must be a Buffer/)
})

t.test('a reload keeps a listener\'s keys and leaves no follower behind; close leaves none', async t => {
  const origin = await startOrigin(t, () => ok('ok'))
  const options = { listen: '127.0.0.1:0', targets: [origin.target], tls: { certificates: [a] } }
  // own keys (no source): a ticket from before the reload resumes after it
  const own = createProxy(options)
  const { port } = await own.listen()
  t.teardown(async () => { await own.close() })
  const before = await ticketFrom(port, 'TLSv1.3')
  await own.update(options)
  t.ok(await resumes(port, before, 'TLSv1.3'), 'own keys: resumed after a reload')
  // a source: one follower per listener, the retired one unsubscribed
  const source = new HandSource(key(3))
  const followed = createProxy({ ...options, ticketKeys: source })
  const address = await followed.listen()
  t.equal(source.followers.size, 1, 'one follower')
  const ticket = await ticketFrom(address.port, 'TLSv1.2')
  for (let i = 0; i < 3; i++) await followed.update(options)
  t.equal(source.followers.size, 1, 'still one after three reloads')
  t.ok(await resumes(address.port, ticket, 'TLSv1.2'), 'source: resumed after the reloads')
  await followed.close()
  t.equal(source.followers.size, 0, 'none once closed')
})
