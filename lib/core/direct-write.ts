/**
 * Writes straight to a cleartext TCP socket's handle, past the stream machinery. A `socket.write`
 * of a small buffer runs Writable's bookkeeping, net's timer refresh, a write request made and
 * dispatched, and an after-write callback on the next tick; the handle's own `writeBuffer` /
 * `writeLatin1String` with a request object is what does the write in the end. Here the engine
 * calls those directly, when nothing else waits in the socket's stream: about 2 µs less per
 * write of a small response (a bare loop of 120-byte writes on loopback: 4.4–4.7 against
 * 2.4–2.6 µs, the syscall included in both).
 *
 * Internal to Node: the write request's constructor and the shared state that says whether the
 * last write completed at once come from the `stream_wrap` binding (core/stream-wrap.ts, which
 * checks at load that the binding and the TCP handle have what is needed). Where they are
 * missing, and for
 * any socket that is not a connected cleartext TCP socket with an empty, uncorked stream,
 * `writeDirect` says so and the caller writes with `socket.write` as before.
 * spec/core/direct-write.ts fails when a Node release changes any of it.
 *
 * What the stream did and this keeps:
 * - **Order.** libuv writes a handle's requests in the order they are made, so a write made
 *   later through `socket.write` (or the FIN of `socket.end()`, which libuv queues behind the
 *   writes) leaves after this one, even while this one waits in the kernel's queue.
 * - **Backpressure.** A write the kernel did not take at once returns `WRITE_QUEUED`: the caller
 *   treats it as a full socket, and the socket emits 'drain' when the rest is written, as a stream
 *   does. Until then, writes to that socket go through the stream again.
 * - **Errors.** A write that fails destroys the socket with the error Node's stream gives
 *   (`write EPIPE`, with `code`, `errno` and `syscall`), so 'error' and 'close' follow as before.
 * - `socket.bytesWritten` counts these bytes (the handle counts them).
 *
 * What it does not: refresh a timeout set with `socket.setTimeout` (rp4's sockets have none: the
 * coarse clock keeps their deadlines).
 */
import type { Socket } from 'node:net'
import { handleError, streamWrap, type WriteRequest } from './stream-wrap.js'

/** The kernel took every byte. */
export const WRITTEN = 1
/** The rest waits in libuv's queue: treat the socket as full until its 'drain'. */
export const WRITE_QUEUED = 0
/** Not possible here: write with `socket.write`. */
export const NOT_DIRECT = -1
/** The write failed: the socket is destroyed with the error. */
export const WRITE_FAILED = -2

interface TcpHandle {
  writeBuffer (req: WriteRequest, data: Buffer): number
  writeLatin1String (req: WriteRequest, data: string): number
  /** A direct write waits in this handle's queue (at most one: the next write goes through the stream). */
  rp4Queued?: boolean
}

interface DirectSocket extends Socket {
  _handle?: TcpHandle | null
  connecting: boolean
}

/** True when this Node's TCP sockets can be written directly (core/stream-wrap.ts found what it needs). */
export const canWriteDirect = streamWrap !== null

const WriteWrap = streamWrap?.WriteWrap
const state = streamWrap?.streamBaseState
const kAsync = streamWrap?.kLastWriteWasAsync ?? 0
const TCP = streamWrap?.TCP

/**
 * Write `data` (a string is latin1; never empty) to `socket`'s handle. WRITTEN: the kernel took
 * it all. WRITE_QUEUED: the rest is queued and 'drain' follows when it is written (a Buffer must
 * not be changed until then). NOT_DIRECT: nothing done, write it with `socket.write`.
 * WRITE_FAILED: the socket was destroyed with the write's error.
 */
export function writeDirect (socket: Socket, data: string | Buffer): number {
  const s = socket as DirectSocket
  const handle = s._handle
  if (handle === null || handle === undefined || handle.constructor !== TCP || WriteWrap === undefined) return NOT_DIRECT
  if (handle.rp4Queued === true || s.connecting || s.destroyed || s.writableEnded || s.writableLength !== 0 || s.writableCorked !== 0) return NOT_DIRECT
  const req = new WriteWrap()
  req.handle = handle
  req.oncomplete = onComplete as WriteRequest['oncomplete']
  req.buffer = null
  req.socket = null
  const err = typeof data === 'string' ? handle.writeLatin1String(req, data) : handle.writeBuffer(req, data)
  if (err !== 0) {
    socket.destroy(handleError('write', err))
    return WRITE_FAILED
  }
  if (state![kAsync] === 0) return WRITTEN
  // a string's rest was copied by the handle; a buffer's must stay alive until written
  if (typeof data !== 'string') req.buffer = data
  req.socket = s
  handle.rp4Queued = true
  return WRITE_QUEUED
}

/** True while a direct write waits in `socket`'s queue (its 'drain' has not come yet). */
export function hasQueuedWrite (socket: Socket): boolean {
  return (socket as DirectSocket)._handle?.rp4Queued === true
}

function onComplete (this: WriteRequest, status: number): void {
  const socket = this.socket as DirectSocket | null
  const handle = this.handle as TcpHandle
  this.buffer = null
  this.socket = null
  if (socket === null) return
  handle.rp4Queued = false
  if (socket.destroyed) return
  if (status < 0) {
    socket.destroy(handleError('write', status))
    return
  }
  socket.emit('drain')
}
