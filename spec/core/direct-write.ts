/**
 * core/direct-write.ts writes to a TCP socket's handle with Node's own write request and shared
 * write state (the `stream_wrap` binding). This spec fails when a Node release changes that: a
 * direct write must reach the peer byte for byte and in order with the stream's writes, a write
 * the kernel could not take at once must be queued, tell the caller, and end in 'drain', the FIN
 * of end() must come after it, a failed write must destroy the socket with the stream's error,
 * and every socket it cannot write directly must be left to the stream.
 */
import t from 'tap'
import net from 'node:net'
import { NOT_DIRECT, WRITE_FAILED, WRITE_QUEUED, WRITTEN, canWriteDirect, hasQueuedWrite, writeDirect } from '../../lib/core/direct-write.js'
import { socketPair, tlsSocketPair } from '../helpers/sockets.js'
import { deferred, within } from '../helpers/wait.js'
import { probe } from '../helpers/probe.js'
import { checkBuilt } from '../helpers/proxy.js'

/** Everything `socket` receives until its end, as one buffer. */
function collect (socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  return new Promise(resolve => socket.on('end', () => resolve(Buffer.concat(chunks))))
}

/** Direct writes of `piece` until one is queued (the peer does not read); the bytes written, in order. */
function fillUntilQueued (socket: net.Socket, piece: Buffer): { written: Buffer[], last: number } {
  const written: Buffer[] = []
  for (let i = 0; i < 10_000; i++) {
    const copy = Buffer.from(piece)
    copy.writeUInt32BE(i, 0)
    const result = writeDirect(socket, copy)
    if (result === NOT_DIRECT || result === WRITE_FAILED) return { written, last: result }
    written.push(copy)
    if (result === WRITE_QUEUED) return { written, last: result }
  }
  return { written, last: WRITTEN }
}

t.test('this Node has what writeDirect needs', async t => {
  t.ok(canWriteDirect, 'the binding has WriteWrap and the shared write state, the TCP handle writeBuffer and writeLatin1String')
})

t.test('a direct write reaches the peer byte for byte, a string as latin1, in order with the stream\'s writes', async t => {
  const { server, client } = await socketPair(t)
  const received = collect(client)
  const latin1 = 'caf\u00e9 \u00ff\u0080 '
  t.equal(writeDirect(server, Buffer.from('one ')), WRITTEN, 'a buffer: written at once')
  t.equal(writeDirect(server, latin1), WRITTEN, 'a string: written at once')
  server.write('two ')
  t.equal(writeDirect(server, Buffer.from('three')), WRITTEN, 'after a stream write the kernel took')
  t.equal(server.bytesWritten, 4 + latin1.length + 4 + 5, 'bytesWritten counts the direct writes')
  server.end()
  const bytes = await received
  t.same(bytes, Buffer.concat([Buffer.from('one '), Buffer.from(latin1, 'latin1'), Buffer.from('two three')]), 'every byte, in order, latin1 kept')
})

t.test('a write the kernel cannot take at once is queued, later writes go through the stream after it, and drain follows', async t => {
  const { server, client } = await socketPair(t)
  client.pause()
  const piece = Buffer.alloc(64 * 1024, 0x61)
  const { written, last } = fillUntilQueued(server, piece)
  t.equal(last, WRITE_QUEUED, `queued after ${written.length} writes of 64 KiB`)
  t.ok(hasQueuedWrite(server), 'the socket has a queued direct write')
  t.equal(writeDirect(server, Buffer.from('x')), NOT_DIRECT, 'while one is queued, writes are the stream\'s')
  server.write('after the queued one')
  let drains = 0
  const drained = deferred()
  server.on('drain', () => { drains++; drained.resolve() })
  const received = collect(client)
  client.resume()
  await within(drained.promise, 5000, 'drain')
  t.notOk(hasQueuedWrite(server), 'nothing queued after drain')
  server.end()
  const bytes = await received
  const expected = Buffer.concat([...written, Buffer.from('after the queued one')])
  t.equal(bytes.length, expected.length, 'every byte')
  t.ok(bytes.equals(expected), 'in order: the queued write\'s rest before the stream\'s write')
  t.ok(drains >= 1, 'drain emitted')
})

t.test('end() after a queued direct write: its FIN comes after the queued bytes', async t => {
  const { server, client } = await socketPair(t)
  client.pause()
  const { written, last } = fillUntilQueued(server, Buffer.alloc(64 * 1024, 0x62))
  t.equal(last, WRITE_QUEUED, 'queued')
  server.end()
  const received = collect(client)
  client.resume()
  const bytes = await within(received, 5000, 'the end')
  t.ok(bytes.equals(Buffer.concat(written)), 'everything before the end')
})

t.test('destroy() while a direct write is queued: closed, no drain, no error', async t => {
  const { server, client } = await socketPair(t)
  client.pause()
  t.equal(fillUntilQueued(server, Buffer.alloc(64 * 1024)).last, WRITE_QUEUED, 'queued')
  let drains = 0
  let errors = 0
  server.on('drain', () => { drains++ })
  server.on('error', () => { errors++ })
  const closed = new Promise(resolve => server.on('close', resolve))
  server.destroy()
  await within(closed, 5000, 'close')
  // the cancelled request's completion runs on a later turn
  await new Promise(resolve => setImmediate(resolve))
  t.equal(drains, 0, 'no drain')
  t.equal(errors, 0, 'no error')
  t.notOk(hasQueuedWrite(server), 'the queued write was counted off')
})

t.test('a write to a peer that is gone destroys the socket with the stream\'s error', async t => {
  // half-open allowed: the server's side stays writable after the peer's FIN
  const { server, client } = await socketPair(t, { allowHalfOpen: true })
  const failed = deferred<NodeJS.ErrnoException>()
  server.on('error', err => failed.resolve(err as NodeJS.ErrnoException))
  // the peer closes: its kernel answers the next segment with a reset, and the write after fails
  client.destroy()
  await new Promise(resolve => server.once('end', resolve).resume())
  let result = WRITTEN
  for (let i = 0; i < 100 && result === WRITTEN; i++) {
    result = writeDirect(server, Buffer.alloc(1024))
    if (result === WRITTEN) await new Promise(resolve => setImmediate(resolve))
  }
  t.equal(result, WRITE_FAILED, 'the write failed')
  const err = await within(failed.promise, 5000, 'error')
  t.match(err.code, /^(EPIPE|ECONNRESET)$/, 'code')
  t.equal(err.syscall, 'write', 'syscall')
  t.equal(typeof err.errno, 'number', 'errno')
  t.equal(err.message, `write ${err.code!}`, 'message as the stream words it')
  t.ok(server.destroyed, 'destroyed')
})

t.test('left to the stream: a connecting, corked, ended or destroyed socket, one with stream writes pending, a TLS socket', async t => {
  const { server, client } = await socketPair(t)
  server.cork()
  t.equal(writeDirect(server, 'x'), NOT_DIRECT, 'corked')
  server.uncork()

  client.pause()
  let filled = false
  for (let i = 0; i < 1000 && !filled; i++) filled = !server.write(Buffer.alloc(64 * 1024))
  t.ok(server.writableLength > 0, 'the stream holds writes')
  t.equal(writeDirect(server, 'x'), NOT_DIRECT, 'stream writes pending')
  server.destroy()
  t.equal(writeDirect(server, 'x'), NOT_DIRECT, 'destroyed')

  const other = await socketPair(t)
  other.server.end()
  t.equal(writeDirect(other.server, 'x'), NOT_DIRECT, 'ended')

  const connecting = net.connect((other.server.address() as net.AddressInfo).port, '127.0.0.1')
  t.teardown(() => connecting.destroy())
  connecting.on('error', () => {})
  t.equal(writeDirect(connecting, 'x'), NOT_DIRECT, 'connecting')

  const { server: secure } = await tlsSocketPair(t)
  t.equal(writeDirect(secure, 'x'), NOT_DIRECT, 'a TLS socket')
})

t.test('a process run with pending deprecations shown goes without (no warning), and its sockets write through the stream', async t => {
  const script = `
    const warnings = []
    // the test runner's own spawn hook (in node_modules) calls process.binding in every child it starts
    process.on('warning', w => { if (!/node_modules[\\/]/.test(w.stack ?? '')) warnings.push(w.name + ': ' + w.message) })
    const { canWriteDirect } = await import('./dist/lib/core/direct-write.js')
    const { canReadDirectly } = await import('./dist/lib/core/read-into.js')
    await new Promise(resolve => setTimeout(resolve, 20))
    console.log(JSON.stringify({ canWriteDirect, canReadDirectly, warnings }))`
  if (!checkBuilt(t, 'dist/lib/core/direct-write.js')) return
  const clean = process.env
  const plain = await probe<{ canWriteDirect: boolean, canReadDirectly: boolean, warnings: string[] }>(script, [], clean)
  t.same(plain, { canWriteDirect: true, canReadDirectly: true, warnings: [] }, 'by default: both, and no warning')
  const flag = await probe<typeof plain>(script, ['--pending-deprecation'], clean)
  t.same(flag, { canWriteDirect: false, canReadDirectly: false, warnings: [] }, '--pending-deprecation: neither, and no warning')
  const env = await probe<typeof plain>(script, [], { ...clean, NODE_PENDING_DEPRECATION: '1' })
  t.same(env, { canWriteDirect: false, canReadDirectly: false, warnings: [] }, 'NODE_PENDING_DEPRECATION=1: neither, and no warning')
})
