/**
 * core/batch.ts: when what is sent to a socket is written. A batch's output is written when the
 * batch ends; a client connection's (`deferBatches`) at the end of the event-loop turn, unless
 * something is sent to it outside a batch, which writes what waits and itself at once (with the
 * write's answer for backpressure); a pipelined backend connection's (`deferWrites`) at the end
 * of the turn in every case. Nothing is reordered or lost on the way.
 */
import t, { type Test } from 'tap'
import type { Socket } from 'node:net'
import { deferBatches, deferWrites, flush, send, sendEnd } from '../../lib/core/batch.js'
import { kOwner } from '../../lib/core/symbols.js'
import { socketPair } from '../helpers/sockets.js'
import { batch } from '../helpers/batch.js'
import { canWriteDirect, hasQueuedWrite } from '../../lib/core/direct-write.js'

/** Both ends of one loopback connection: the accepted one (`server`) and the client's, which keeps what it reads. */
async function pair (t: Test): Promise<{ server: Socket, client: Socket, received: () => string, ended: Promise<void> }> {
  const { server, client } = await socketPair(t)
  let text = ''
  client.setEncoding('latin1')
  client.on('data', (chunk: string) => { text += chunk })
  const ended = new Promise<void>(resolve => client.on('end', resolve))
  return { server, client, received: () => text, ended }
}

const turnEnd = async (): Promise<void> => await new Promise(resolve => setImmediate(resolve))


t.test('a plain socket: a batch\'s output is written when the batch ends, joined', async t => {
  const { server } = await pair(t)
  batch(() => {
    send(server, 'a')
    send(server, Buffer.from('b'))
    t.equal(server.bytesWritten, 0, 'nothing written inside the batch')
  })
  t.equal(server.bytesWritten, 2, 'written when the batch ended')
})

t.test('a client connection: a batch\'s output waits for the end of the turn, several batches\' together and in order', async t => {
  const { server, received } = await pair(t)
  deferBatches(server)
  batch(() => send(server, 'one '))
  batch(() => send(server, 'two '))
  t.equal(server.bytesWritten, 0, 'not written when the batches ended')
  await turnEnd()
  t.equal(server.bytesWritten, 8, 'written at the end of the turn')
  await t.resolves(waitFor(() => received() === 'one two '), 'the client reads both, in order')
})

t.test('a client connection: a batch\'s larger output (a body read from a backend) is written when the batch ends, after what waited', async t => {
  const { server, received } = await pair(t)
  deferBatches(server)
  batch(() => send(server, 'small '))
  t.equal(server.bytesWritten, 0)
  const body = 'y'.repeat(16 * 1024)
  batch(() => send(server, body))
  t.equal(server.bytesWritten, 6 + body.length, 'written at the batch\'s end: a slow client\'s backpressure is heard after this read')
  await t.resolves(waitFor(() => received() === 'small ' + body), 'in order')
})

t.test('a client connection: a send outside a batch writes what waits, then itself, at once', async t => {
  const { server, received } = await pair(t)
  deferBatches(server)
  batch(() => send(server, 'head '))
  t.equal(send(server, 'body'), true, 'the write\'s own answer: the socket took it')
  t.equal(server.bytesWritten, 9, 'both written at once, not at the end of the turn')
  await t.resolves(waitFor(() => received() === 'head body'))
})

t.test('a client connection: a send outside a batch that fills the socket answers false, and the owner is not told twice', async t => {
  const { server, client } = await pair(t)
  client.pause()
  deferBatches(server)
  let blocked = 0;
  (server as unknown as Record<symbol, unknown>)[kOwner] = { onWriteBlocked: () => { blocked++ } }
  batch(() => send(server, 'head '))
  const big = Buffer.alloc(server.writableHighWaterMark * 4, 'x')
  t.equal(send(server, big), false, 'over the mark: the caller waits for drain')
  t.equal(blocked, 0, 'the answer went to the caller; onWriteBlocked is for deferred writes')
})

t.test('a client connection: sendEnd outside a batch ends at once, after what waits', async t => {
  const { server, received, ended } = await pair(t)
  deferBatches(server)
  batch(() => send(server, 'last'))
  sendEnd(server)
  t.equal(server.writableEnded, true, 'ended at once')
  await ended
  t.equal(received(), 'last')
})

t.test('a client connection: sendEnd inside a batch ends at the end of the turn, after the output', async t => {
  const { server, received, ended } = await pair(t)
  deferBatches(server)
  batch(() => {
    send(server, 'bye')
    sendEnd(server)
  })
  t.equal(server.writableEnded, false, 'not yet')
  await ended
  t.equal(received(), 'bye')
})

t.test('flush writes what waits, before the socket is closed or handed on', async t => {
  const { server, received } = await pair(t)
  deferBatches(server)
  batch(() => send(server, 'kept'))
  flush(server)
  t.equal(server.bytesWritten, 4)
  server.end()
  await t.resolves(waitFor(() => received() === 'kept'))
})

t.test('a pipelined backend connection: everything sent in the turn waits for its end, batch or not', async t => {
  const { server, received } = await pair(t)
  deferWrites(server)
  batch(() => send(server, 'GET /1 '))
  t.equal(send(server, 'GET /2'), true)
  t.equal(server.bytesWritten, 0, 'not written yet: a request from another client may join it')
  await turnEnd()
  t.equal(server.bytesWritten, 13, 'one write at the end of the turn')
  await t.resolves(waitFor(() => received() === 'GET /1 GET /2'))
})

t.test('a plain socket the kernel stops taking: the batch\'s write is queued, the owner told once, drain follows, every byte in order', async t => {
  const { server, client } = await socketPair(t)
  client.pause()
  let blocked = 0;
  (server as unknown as Record<symbol, unknown>)[kOwner] = { onWriteBlocked: () => { blocked++ } }
  const pieces: Buffer[] = []
  // batches of one 8 KiB piece each (joined and written directly while the stream is empty), until the kernel stops taking them
  for (let i = 0; i < 10_000 && blocked === 0; i++) {
    const piece = Buffer.alloc(8 * 1024, 0x61 + (i % 26))
    pieces.push(piece)
    batch(() => send(server, piece))
  }
  t.equal(blocked, 1, `the owner was told once, after ${pieces.length} batches`)
  t.equal(hasQueuedWrite(server), canWriteDirect, 'the last write waits in the handle\'s queue, past the stream (where this Node allows direct writes)')
  // sent while the queued write waits: through the stream, behind it
  batch(() => send(server, 'tail'))
  const drained = new Promise(resolve => server.once('drain', resolve))
  const chunks: Buffer[] = []
  client.on('data', (chunk: Buffer) => chunks.push(chunk))
  const ended = new Promise(resolve => client.on('end', resolve))
  client.resume()
  await drained
  sendEnd(server)
  await ended
  t.ok(Buffer.concat(chunks).equals(Buffer.concat([...pieces, Buffer.from('tail')])), 'every byte, in order, then the end')
})

/** Resolves once `check` holds; rejects after 2 s (loopback delivers in far less). */
async function waitFor (check: () => boolean): Promise<void> {
  const until = Date.now() + 2000
  while (!check()) {
    if (Date.now() > until) throw new Error('not within 2 s')
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}
