/**
 * core/read-into.ts relies on how Node's `net` implements `onread` (three fields on the socket,
 * the handle's useUserBuffer). This spec fails when a Node release changes that: an accepted
 * socket switched by `readInto` must read into the buffers given, call back per read, stop and
 * start with pause() and resume(), and still end; a socket it cannot switch must be left as it was.
 * `readDirectly` relies on the handle's `onread` and the read state shared through the
 * `stream_wrap` binding: the reader must be called with the buffers it gave, Node's callback
 * bypassed, and the end and a reset must still reach the socket as Node reports them.
 */
import t from 'tap'
import net from 'node:net'
import { canReadDirectly, canReadInto, readDirectly, readInto } from '../../lib/core/read-into.js'
import { socketPair, tlsSocketPair } from '../helpers/sockets.js'
import { Observable, deferred, within } from '../helpers/wait.js'

t.test('this Node has what readInto needs', async t => {
  t.ok(canReadInto, 'a socket made with onread carries the fields, a plain one has them empty')
})

t.test('an accepted socket reads into the buffers given, one callback per read, the next buffer asked for after each', async t => {
  const { server, client } = await socketPair(t)
  const buffers = [Buffer.alloc(8), Buffer.alloc(8), Buffer.alloc(8)]
  let given = 0
  const reads: Array<{ text: string, same: boolean }> = []
  const done = deferred()
  const first = deferred()
  const switched = readInto(server, buffers[0], () => buffers[Math.min(++given, 2)], function (this: net.Socket, length, buffer) {
    t.equal(this, server, 'called on the socket')
    reads.push({ text: buffer.toString('latin1', 0, length), same: buffer === buffers[Math.min(reads.length, 2)] })
    first.resolve()
    if (reads.map(r => r.text).join('').length >= 12) done.resolve()
    return true
  })
  t.ok(switched, 'switched')
  let data = 0
  server.on('data', () => { data++ })
  client.write('abcdefgh')
  await first.promise
  client.write('ijkl')
  await done.promise
  t.equal(reads.map(r => r.text).join(''), 'abcdefghijkl', 'every byte, in order')
  t.ok(reads.every(r => r.same), 'each read landed in the buffer given for it')
  t.equal(given, reads.length, 'the next buffer was asked for once per read')
  t.equal(data, 0, 'no data event')
})

t.test('pause() stops the reads, resume() starts them, the end still comes', async t => {
  const { server, client } = await socketPair(t)
  const buffer = Buffer.alloc(64)
  let text = ''
  readInto(server, buffer, () => buffer, (length, read) => {
    text += read.toString('latin1', 0, length)
    return true
  })
  server.pause()
  // in the server's receive queue once the write is done (loopback); a read would come within a turn or two
  await new Promise<void>(resolve => client.write('while paused', () => resolve()))
  for (let i = 0; i < 3; i++) await new Promise(resolve => setImmediate(resolve))
  t.equal(text, '', 'nothing read while paused')
  const ended = deferred()
  server.on('end', () => ended.resolve())
  server.resume()
  client.end()
  await ended.promise
  t.equal(text, 'while paused', 'read once resumed, then the end')
})

t.test('left as it was: a socket with unread data, a TLS socket', async t => {
  const { server, client } = await socketPair(t)
  server.pause()
  client.write('unread')
  await new Promise<void>(resolve => server.once('readable', () => resolve()))
  t.ok(server.readableLength > 0, 'data waits in the stream')
  t.notOk(readInto(server, Buffer.alloc(8), () => Buffer.alloc(8), () => true), 'refused')
  t.equal(server.read()?.toString(), 'unread', 'the stream reads as before')

  const { server: secure } = await tlsSocketPair(t)
  t.notOk(readInto(secure, Buffer.alloc(8), () => Buffer.alloc(8), () => true), 'a TLS socket is refused')
})

t.test('readDirectly: the handle calls the reader itself, with the buffers it gives, pause() and resume() still work, the end and a reset still come', async t => {
  t.ok(canReadDirectly, 'this Node has what readDirectly needs')
  const { server, client } = await socketPair(t)
  const buffers = [Buffer.alloc(16), Buffer.alloc(16)]
  let viaNode = 0
  t.ok(readInto(server, buffers[0], () => buffers[0], () => { viaNode++; return true }), 'switched')
  let given = 0
  let text = ''
  const same: boolean[] = []
  const arrived = new Observable()
  const reader = {
    onHandleRead (length: number, buffer: Buffer): boolean {
      same.push(buffer === buffers[given % 2])
      text += buffer.toString('latin1', 0, length)
      arrived.changed()
      return true
    },
    nextBuffer (): Buffer { return buffers[++given % 2] },
  }
  t.ok(readDirectly(server, reader), 'taken')
  t.notOk(readDirectly(server, reader), 'not twice')
  client.write('abcdefgh')
  await arrived.until(() => text === 'abcdefgh', 5000, 'the first read')
  client.write('ijklmnopqrstuvwxyz')
  await arrived.until(() => text === 'abcdefghijklmnopqrstuvwxyz', 5000, 'the reads after')
  t.ok(same.every(Boolean), 'each read landed in the buffer given for it')
  t.equal(viaNode, 0, 'the callback given to readInto was not called: Node\'s read callback was bypassed')

  server.pause()
  await new Promise<void>(resolve => client.write('while paused', () => resolve()))
  for (let i = 0; i < 3; i++) await new Promise(resolve => setImmediate(resolve))
  t.equal(text, 'abcdefghijklmnopqrstuvwxyz', 'nothing read while paused')
  const ended = new Promise(resolve => server.on('end', resolve))
  server.resume()
  client.end()
  await within(ended, 5000, 'the end')
  t.equal(text, 'abcdefghijklmnopqrstuvwxyzwhile paused', 'read once resumed, then the end (through Node\'s callback)')

  // a reset: Node's callback destroys the socket with the read's error
  const other = await socketPair(t)
  t.ok(readInto(other.server, Buffer.alloc(16), () => Buffer.alloc(16), () => true), 'switched')
  t.ok(readDirectly(other.server, { onHandleRead: () => true, nextBuffer: () => Buffer.alloc(16) }), 'taken')
  const failed = new Promise<NodeJS.ErrnoException>(resolve => other.server.on('error', resolve))
  other.client.resetAndDestroy()
  const err = await within(failed, 5000, 'the read error')
  t.equal(err.code, 'ECONNRESET', 'the reset reported as Node reports it')
})

t.test('readDirectly: a socket reading as Node does is left as it was', async t => {
  const { server } = await socketPair(t)
  t.notOk(readDirectly(server, { onHandleRead: () => true, nextBuffer: () => Buffer.alloc(8) }), 'a socket that reads into fresh buffers')
})
