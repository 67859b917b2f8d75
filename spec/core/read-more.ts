/**
 * core/read-more.ts: sockets marked to skip Node's read-more tick. The flag must still exist in
 * this Node (else rp4 silently pays the tick again), and a marked socket must lose nothing: every
 * byte in order and the end, in flowing mode, through pauses that let its buffer pass the
 * high-water mark and stop the handle, and resumes that start it again.
 */
import t from 'tap'
import { createHash } from 'node:crypto'
import { canSkipReadMore, skipReadMore } from '../../lib/core/read-more.js'
import { socketPair } from '../helpers/sockets.js'

t.test('this Node has the readable state flag the skip relies on', async t => {
  t.equal(canSkipReadMore, true, '_readableState.readingMore is a boolean in this Node')
})

t.test('a marked socket gets every byte and the end, through pauses past the high-water mark', async t => {
  const { server, client } = await socketPair(t)
  skipReadMore(server)
  const total = 8 * 1024 * 1024
  const sent = createHash('sha256')
  const got = createHash('sha256')
  let received = 0
  let pauses = 0
  const ended = new Promise<void>(resolve => server.on('end', resolve))
  server.on('data', (chunk: Buffer) => {
    got.update(chunk)
    received += chunk.length
    // pause now and then for long enough that the kernel and the stream buffer fill up
    if (received > (pauses + 1) * 700_000) {
      pauses++
      server.pause()
      setTimeout(() => server.resume(), 15)
    }
  })
  let written = 0
  const block = Buffer.alloc(64 * 1024)
  const writeMore = (): void => {
    while (written < total) {
      for (let i = 0; i < block.length; i += 4096) block.writeUInt32BE((written + i) >>> 0, i)
      sent.update(block)
      written += block.length
      if (!client.write(block)) return void client.once('drain', writeMore)
    }
    client.end()
  }
  writeMore()
  await ended
  t.equal(received, total, 'every byte')
  t.equal(got.digest('hex'), sent.digest('hex'), 'in order')
  t.ok(pauses >= 5, `paused ${pauses} times on the way`)
  t.equal((server as unknown as { _readableState: { readingMore: boolean } })._readableState.readingMore, true, 'still marked')
})

t.test('marked before any data and paused from the start: bytes wait, then come on resume', async t => {
  const { server, client } = await socketPair(t)
  skipReadMore(server)
  server.pause()
  const chunks: Buffer[] = []
  server.on('data', (chunk: Buffer) => chunks.push(chunk))
  client.write('hello ')
  client.end('world')
  // the handle goes on reading into the stream's buffer while the stream is paused
  for (let turns = 0; server.readableLength < 11 && turns < 100_000; turns++) await new Promise(resolve => setImmediate(resolve))
  t.equal(server.readableLength, 11, 'the bytes arrived and wait in the buffer')
  t.equal(chunks.length, 0, 'nothing emitted while paused')
  const ended = new Promise<void>(resolve => server.on('end', resolve))
  server.resume()
  await ended
  t.equal(Buffer.concat(chunks).toString(), 'hello world')
})
