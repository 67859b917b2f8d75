/**
 * core/park.ts relies on how Node's `net` ties a socket to its TCP handle (`_handle`, the
 * handle's `owner_symbol`, `new net.Socket({ handle })`) and on the read state of
 * core/stream-wrap.ts. This spec fails when a Node release changes that: a parked handle must
 * hand its first bytes, its end and a reset to its owner; the socket it came from must be gone
 * without closing it; a socket made around it again must read every byte after, in order, write,
 * and end as any other; and a socket with something under way must not be parked.
 */
import t from 'tap'
import net from 'node:net'
import { canPark, closeHandle, parkHandle, unparkHandle, UV_EOF, type ParkOwner } from '../../lib/core/park.js'
import { adoptOwned, own, readOwned, type SocketOwner } from '../../lib/core/owner.js'
import { readsOf, sharedReadBuffer } from '../../lib/core/read-buffers.js'
import { socketPair } from '../helpers/sockets.js'
import { deferred, within } from '../helpers/wait.js'

/** A park owner that records what it is told. */
function recorder (): ParkOwner & { data: Buffer[], ends: number[], errors: unknown[], first: Promise<void>, ended: Promise<void> } {
  const first = deferred()
  const ended = deferred()
  const r = {
    data: [] as Buffer[],
    ends: [] as number[],
    errors: [] as unknown[],
    first: first.promise,
    ended: ended.promise,
    onParkedData (chunk: Buffer) { r.data.push(chunk); first.resolve() },
    onParkedEnd (status: number) { r.ends.push(status); ended.resolve() },
    onInternalError (err: unknown) { r.errors.push(err) },
  }
  return r
}

/** A SocketOwner that collects what it reads, as the HTTP engine's listeners would, and ends its side after the peer's end. */
function collector (socket?: net.Socket): SocketOwner & { text: string, ended: boolean, closed: Promise<void>, waitFor (n: number): Promise<void> } {
  const closed = deferred()
  let waiting: { n: number, resolve: () => void } | null = null
  const c = {
    text: '',
    ended: false,
    closed: closed.promise,
    waitFor (n: number) { return c.text.length >= n ? Promise.resolve() : new Promise<void>(resolve => { waiting = { n, resolve } }) },
    onData (chunk: Buffer) {
      c.text += chunk.toString('latin1')
      if (waiting !== null && c.text.length >= waiting.n) waiting.resolve()
    },
    onEnd () { c.ended = true; socket?.end() },
    onSocketError () {},
    onClose () { closed.resolve() },
    onInternalError (err: unknown) { throw err },
  }
  return c
}

t.test('this Node has what parking needs', async t => {
  t.ok(canPark, 'a socket made around a TCP handle sets the fields parking takes off it')
})

t.test('a socket that read through Node\'s allocation: parked, its socket gone, the first bytes to the owner, then a socket again that reads the rest', async t => {
  const { server, client } = await socketPair(t, { allowHalfOpen: true })
  // one read the ordinary way first, as a connection that was read once
  const firstRead = new Promise<Buffer>(resolve => server.once('data', resolve))
  client.write('hello')
  t.equal((await firstRead).toString(), 'hello')
  const owner = recorder()
  const closed = deferred()
  server.on('close', () => closed.resolve())
  const handle = parkHandle(server, owner)
  t.not(handle, null, 'parked')
  t.equal(server.destroyed, true, 'the socket is destroyed')
  await within(closed.promise, 2000, 'the old socket\'s close')
  client.write('wake up')
  await within(owner.first, 2000, 'the first bytes')
  t.equal(Buffer.concat(owner.data).toString(), 'wake up', 'the bytes, copied out of the shared buffer')
  t.not(owner.data[0].buffer, sharedReadBuffer().buffer, 'a copy, not a view of the shared buffer')
  const socket = unparkHandle(handle!)
  t.ok(adoptOwned(socket), 'its reads go to the shared buffer, as parked')
  t.ok(readsOf(socket) !== undefined, 'switched')
  const c = collector(socket)
  own(socket, c)
  client.write('and the rest')
  await within(c.waitFor('and the rest'.length), 2000, 'the rest')
  t.equal(c.text, 'and the rest', 'every byte after, in order')
  const answer = new Promise<Buffer>(resolve => client.once('data', resolve))
  socket.write('answer')
  t.equal((await answer).toString(), 'answer', 'it writes')
  t.equal(socket.remoteAddress, '127.0.0.1', 'its peer is known')
  client.end()
  await within(c.closed, 2000, 'the close after both ends')
  t.equal(c.ended, true, 'the client\'s end came')
  t.same(owner.ends, [], 'the owner was told of no end')
})

t.test('a socket switched to given buffers is parked and wakes the same way', async t => {
  const { server, client } = await socketPair(t, { allowHalfOpen: true })
  const c0 = collector()
  own(server, c0)
  t.ok(readOwned(server), 'switched')
  client.write('one')
  await within(c0.waitFor(3), 2000, 'the first read')
  const owner = recorder()
  server.removeAllListeners('data')
  const handle = parkHandle(server, owner)
  t.not(handle, null, 'parked')
  client.write('two')
  await within(owner.first, 2000, 'the first bytes')
  t.equal(Buffer.concat(owner.data).toString(), 'two')
  const socket = unparkHandle(handle!)
  t.ok(adoptOwned(socket))
  const c = collector()
  own(socket, c)
  client.write('three')
  await within(c.waitFor(5), 2000, 'the rest')
  t.equal(c.text, 'three')
  socket.destroy()
})

t.test('the client\'s end while parked reaches the owner as UV_EOF; closeHandle closes the connection', async t => {
  const { server, client } = await socketPair(t, { allowHalfOpen: true })
  const owner = recorder()
  const handle = parkHandle(server, owner)
  t.not(handle, null)
  const clientClosed = deferred()
  client.on('close', () => clientClosed.resolve())
  client.on('end', () => client.end())
  client.end()
  await within(owner.ended, 2000, 'the end')
  t.same(owner.ends, [UV_EOF])
  closeHandle(handle!)
  await within(clientClosed.promise, 2000, 'the client sees the connection closed')
})

t.test('a reset while parked reaches the owner as a negative errno other than UV_EOF', async t => {
  const { server, client } = await socketPair(t)
  const owner = recorder()
  const handle = parkHandle(server, owner)
  t.not(handle, null)
  client.resetAndDestroy()
  await within(owner.ended, 2000, 'the reset')
  t.equal(owner.ends.length, 1)
  t.ok(owner.ends[0] < 0 && owner.ends[0] !== UV_EOF, `an error status (${owner.ends[0]})`)
  closeHandle(handle!)
})

t.test('nothing is parked with bytes under way, an end either way, or a TLS-less handle of another kind', async t => {
  const owner = recorder()
  {
    const { server, client } = await socketPair(t)
    // read into the stream's buffer, and left there
    const readable = new Promise(resolve => server.once('readable', resolve))
    client.write('unread')
    await within(readable, 2000, 'bytes in the stream')
    t.ok(server.readableLength > 0)
    t.equal(parkHandle(server, owner), null, 'unread bytes in the stream')
    t.equal(server.destroyed, false)
  }
  {
    const { server } = await socketPair(t)
    server.cork()
    server.write('held')
    t.equal(parkHandle(server, owner), null, 'bytes waiting to be written')
    t.equal(server.destroyed, false)
    server.uncork()
  }
  {
    const { server } = await socketPair(t)
    server.end()
    t.equal(parkHandle(server, owner), null, 'ended')
  }
  {
    const connecting = net.connect({ port: 1, host: '127.0.0.1' })
    connecting.on('error', () => {})
    t.equal(parkHandle(connecting, owner), null, 'not connected yet')
    connecting.destroy()
  }
  t.same(owner.data, [], 'no owner was told anything')
})
