/**
 * core/loan.ts with core/batch.ts: a read buffer lent for one dispatch is free again only when
 * every piece handed on was written in full or copied, and nothing kept one. Output that waits
 * past the read (a client's small output, deferred to the end of the turn) holds a copy, never a
 * view of the buffer, so the buffer can be read into again at once.
 */
import t, { type Test } from 'tap'
import type { Socket } from 'node:net'
import { deferBatches, send } from '../../lib/core/batch.js'
import { closeLoan, keepLoan, lendPiece, lending, openLoan, settlePieces, unlent } from '../../lib/core/loan.js'
import { socketPair } from '../helpers/sockets.js'
import { batch } from '../helpers/batch.js'

/** A connected pair; `receive(n)` resolves with the first `n` bytes the client reads. */
async function pair (t: Test): Promise<{ server: Socket, client: Socket, receive: (n: number) => Promise<string> }> {
  const { server, client } = await socketPair(t)
  const chunks: Buffer[] = []
  let length = 0
  let waiting: { n: number, resolve: (text: string) => void } | null = null
  const check = (): void => {
    if (waiting !== null && length >= waiting.n) waiting.resolve(Buffer.concat(chunks).toString('latin1'))
  }
  client.on('data', (chunk: Buffer) => { chunks.push(chunk); length += chunk.length; check() })
  const receive = async (n: number): Promise<string> => await new Promise(resolve => { waiting = { n, resolve }; check() })
  return { server, client, receive }
}


/** A read buffer with `text` at its start, and the view of it a reader would hand on. */
function readBuffer (text: string): { buffer: Buffer, view: Buffer } {
  const buffer = Buffer.alloc(1024, 0x2e)
  buffer.write(text, 'latin1')
  return { buffer, view: buffer.subarray(0, text.length) }
}

t.test('a loan alone: free when every piece was settled and none kept', async t => {
  const { buffer, view } = readBuffer('abc')
  openLoan(view)
  t.ok(lending(), 'open')
  lendPiece()
  lendPiece()
  settlePieces()
  t.notOk(closeLoan(), 'one piece of two said nothing: not free')
  t.notOk(lending(), 'closed')

  openLoan(view)
  lendPiece()
  settlePieces()
  t.ok(closeLoan(), 'every piece settled: free')

  openLoan(view)
  lendPiece()
  settlePieces()
  keepLoan()
  t.notOk(closeLoan(), 'something kept a view: not free')

  openLoan(view)
  lendPiece()
  const copy = unlent(buffer.subarray(1, 3))
  t.not(copy.buffer, buffer.buffer, 'a view of the lent memory is copied')
  t.equal(copy.toString(), 'bc')
  t.equal(unlent(copy), copy, 'other memory is given back as it is')
  t.ok(closeLoan(), 'the copy settled the piece')
  keepLoan()
  t.equal(unlent(view), view, 'no loan open: nothing is copied')
})

t.test('a client\'s small output waits for the end of the turn as a copy: the buffer is free at once, and rewriting it changes nothing sent', async t => {
  const { server, receive } = await pair(t)
  deferBatches(server)
  const { buffer, view } = readBuffer('hello, world')
  openLoan(view)
  batch(() => {
    lendPiece()
    send(server, 'HEAD ')
    send(server, view)
  })
  t.equal(server.bytesWritten, 0, 'still waiting for the end of the turn')
  t.ok(closeLoan(), 'free: what waits is a copy')
  buffer.fill(0x58) // the next read lands in the same buffer
  t.equal(await receive(17), 'HEAD hello, world', 'the bytes as they were read')
})

t.test('written in full when the batch ends: free', async t => {
  const { server, receive } = await pair(t)
  const { buffer, view } = readBuffer('x'.repeat(1000))
  openLoan(view)
  batch(() => {
    lendPiece()
    send(server, view)
  })
  t.equal(server.writableLength, 0, 'the kernel took it all')
  t.ok(closeLoan(), 'free')
  buffer.fill(0x59)
  t.equal(await receive(1000), 'x'.repeat(1000))
})

t.test('a socket that cannot take it all keeps the view: not free', async t => {
  const { server, client } = await pair(t)
  client.pause()
  // fill the connection until the socket queues
  const filler = Buffer.alloc(1 << 20, 0x41)
  let rounds = 0
  while (server.writableLength === 0 && rounds++ < 64) server.write(filler)
  t.ok(server.writableLength > 0, 'the socket queues')
  const { view } = readBuffer('queued')
  openLoan(view)
  batch(() => {
    lendPiece()
    send(server, view)
  })
  t.notOk(closeLoan(), 'the write queue refers to the view: not free')
  server.destroy()
})

t.test('several views joined into one buffer at the batch\'s end: free', async t => {
  const { server, receive } = await pair(t)
  const { buffer, view } = readBuffer('abcdef')
  openLoan(view)
  batch(() => {
    lendPiece()
    lendPiece()
    send(server, view.subarray(0, 3))
    send(server, '-')
    send(server, view.subarray(3))
  })
  t.ok(closeLoan(), 'both pieces settled')
  buffer.fill(0x5a)
  t.equal(await receive(7), 'abc-def')
})
