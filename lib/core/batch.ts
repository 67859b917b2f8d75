/**
 * Write batching. While one socket chunk is parsed, what the engine writes to each socket is
 * collected, and written once when the chunk is done: a response head and the body bytes that
 * came in the same read leave as one buffer in one write() (one syscall, and none of the stream
 * machinery's writev path), pipelined requests as one write. Large outputs are written piece by
 * piece under cork, so body bytes are never copied for the sake of batching.
 *
 * Every write and end of the engine goes through `send` / `sendEnd`, so order is kept.
 *
 * Backpressure: what `write()` will return is only known when the batch is written (a write that
 * the kernel takes at once returns true whatever its size), so `send` returns true inside a batch
 * and the socket's owner hears `onWriteBlocked()` when the real write returned false; a 'drain'
 * follows as usual.
 */
import type { Socket } from 'node:net'
import { kOwner } from './symbols.js'
import { clock } from './clock.js'
import { isLent, keepLoan, lending, settlePieces } from './loan.js'
import { NOT_DIRECT, WRITTEN, hasQueuedWrite, writeDirect } from './direct-write.js'

/** The object that owns a socket written through `send`. */
export interface WriteOwner {
  /** The socket's buffer went over its high-water mark: stop feeding it until 'drain'. */
  onWriteBlocked (): void
}

/** Outputs up to this size are joined into one buffer; larger ones go out as a corked writev. */
const COALESCE_LIMIT = 16 * 1024

const kOutbox = Symbol('rp4.outbox')
const kDefer = Symbol('rp4.defer')

/**
 * What waits for one socket. `parts` keeps its storage between batches (only `count` is reset):
 * emptying an array by `length = 0` drops its backing store, and the next push allocates anew.
 */
interface Outbox {
  parts: Array<string | Buffer | undefined>
  count: number
  bytes: number
  end: boolean
  /** In the open batch's list (output may already wait from an earlier batch of the turn). */
  listed: boolean
  /** In the list written at the end of the turn. */
  waiting: boolean
}

/** How a socket's output may wait past its batch. */
const enum Defer {
  /** Written when its batch ends. */
  NO,
  /** Everything sent within the turn waits for its end (a pipelined backend connection). */
  TURN,
  /**
   * What a batch produced waits for the end of the turn, up to COALESCE_LIMIT bytes (more is
   * written when its batch ends); anything sent outside a batch writes it and itself at once (a
   * client connection, a backend connection without pipelining).
   */
  BATCH,
}

interface BatchedSocket extends Socket { [kOutbox]?: Outbox, [kOwner]?: WriteOwner, [kDefer]?: Defer }

/** Sockets written to in the open batch (the first `touchedCount`; the list keeps its storage). */
const touched: Array<BatchedSocket | undefined> = []
let touchedCount = 0
/** Sockets whose output waits for the end of the event-loop turn. */
const deferred: Array<BatchedSocket | undefined> = []
let deferredCount = 0
let batching = false
let flushScheduled = false

/**
 * Let `socket`'s output wait until the end of the event-loop turn (setImmediate runs after every
 * I/O callback of this poll), so that what several clients send in the same turn to one pipelined
 * backend connection leaves in one write. Other sockets are written when their batch ends: a
 * response gains nothing by waiting.
 */
export function deferWrites (socket: Socket): void {
  (socket as BatchedSocket)[kDefer] = Defer.TURN
}

/**
 * Let what `socket`'s batches produce wait until the end of the event-loop turn (as long as it is
 * small: a larger output is written when its batch ends, so that a slow reader stops its producer
 * after one read as before), while anything sent outside a batch (a streamed body, a drain) is
 * written at once, with what waits before it, as without this. The responses (on a client
 * connection) or requests (on a backend connection without pipelining) made from the reads of one
 * turn leave together after them, so that a reader with several connections (a load balancer, a
 * browser, a benchmark, an application's server) is woken once for them rather than once per
 * message. On loopback the writer's kernel pays for that wake-up: about 0.8 µs per response in the
 * static-file scenario, where the reader slept between responses. Whoever closes or hands on the
 * socket must `flush` it first.
 */
export function deferBatches (socket: Socket): void {
  (socket as BatchedSocket)[kDefer] = Defer.BATCH
}

/** Start collecting writes (call before parsing a chunk). */
export function beginBatch (): void {
  batching = true
  // what this read sets off happens now: the clock is read once for all of it
  clock.pin()
}

/**
 * Write `data` (a string is latin1) to `socket`: at the end of the event-loop turn when a batch
 * is open or output is already waiting for this socket, else at once. Returns false only for an
 * immediate write that left the socket full (wait for 'drain'); for a deferred one, the owner's
 * `onWriteBlocked` is called if the write at the end of the turn returns false.
 */
export function send (socket: Socket, data: string | Buffer): boolean {
  const s = socket as BatchedSocket
  let out = s[kOutbox]
  if (!batching && (out === undefined || out.count === 0)) return writeNow(socket, data)
  if (out === undefined) {
    out = { parts: [], count: 0, bytes: 0, end: false, listed: false, waiting: false }
    s[kOutbox] = out
  }
  if (batching && !out.listed) {
    out.listed = true
    touched[touchedCount++] = s
  }
  out.parts[out.count++] = data
  out.bytes += data.length
  // outside a batch, what waits goes now with this: the write's answer is the caller's backpressure
  if (!batching && s[kDefer] === Defer.BATCH) return write(s, out, true)
  return true
}

/** True while a batch is open (writes are collected): code that may run inside one or not opens its own only when not. */
export function isBatching (): boolean {
  return batching
}

/** True when output for `socket` waits for the end of this turn. */
export function hasPendingOutput (socket: Socket): boolean {
  const out = (socket as BatchedSocket)[kOutbox]
  return out !== undefined && out.count > 0
}

/** End `socket` once what was sent to it is written. */
export function sendEnd (socket: Socket): void {
  if (socket.writableEnded || socket.destroyed) return
  const out = (socket as BatchedSocket)[kOutbox]
  if (out === undefined || out.count === 0) {
    socket.end()
    return
  }
  out.end = true
  if (!batching && (socket as BatchedSocket)[kDefer] === Defer.BATCH) write(socket as BatchedSocket, out)
}

/** Write now what is pending for `socket` (before handing the socket to code that writes directly). */
export function flush (socket: Socket): void {
  const out = (socket as BatchedSocket)[kOutbox]
  if (out !== undefined && out.count > 0) write(socket, out)
}

/** Close the batch: write what was collected, except for sockets whose writes are deferred. */
export function endBatch (): void {
  batching = false
  clock.unpin()
  // a write below may run code that sends again (a 'drain' handler): it opens a new list
  const count = touchedCount
  for (let i = 0; i < count; i++) {
    const socket = touched[i]!
    touched[i] = undefined
    const out = socket[kOutbox]!
    out.listed = false
    const defer = socket[kDefer]
    // a client's larger output goes now: its backpressure must stop the producer after this read, not after the turn's
    if (defer === Defer.TURN || (defer === Defer.BATCH && out.bytes <= COALESCE_LIMIT)) {
      // what waits past the read must not be a view of its reused buffer
      if (lending()) copyLent(out)
      if (!out.waiting) {
        out.waiting = true
        deferred[deferredCount++] = socket
      }
      continue
    }
    if (out.count > 0) write(socket, out)
  }
  touchedCount = 0
  if (!flushScheduled && deferredCount > 0) {
    flushScheduled = true
    setImmediate(flushDeferred)
  }
}

/** Replace the views of the lent read buffer waiting in `out` by copies. */
function copyLent (out: Outbox): void {
  const parts = out.parts
  for (let i = 0; i < out.count; i++) {
    const data = parts[i]!
    if (typeof data !== 'string' && isLent(data)) {
      parts[i] = Buffer.from(data)
      settlePieces()
    }
  }
}

/** Views of the lent read buffer among the first `count` parts. */
function countLent (parts: Array<string | Buffer | undefined>, count: number): number {
  let lent = 0
  for (let i = 0; i < count; i++) {
    const data = parts[i]!
    if (typeof data !== 'string' && isLent(data)) lent++
  }
  return lent
}

function flushDeferred (): void {
  flushScheduled = false
  // a write may lead to a batch that defers more: those are written in this pass too
  for (let i = 0; i < deferredCount; i++) {
    const socket = deferred[i]!
    deferred[i] = undefined
    const out = socket[kOutbox]!
    out.waiting = false
    if (out.count > 0) write(socket, out)
  }
  deferredCount = 0
}

/**
 * Write what waits. A socket left over its mark tells its owner (`onWriteBlocked`), unless the
 * write is `direct` (for a caller of `send`, who takes the answer: false, wait for 'drain').
 */
function write (socket: BatchedSocket, out: Outbox, direct = false): boolean {
  const parts = out.parts
  const count = out.count
  const bytes = out.bytes
  const end = out.end
  // reset first: a write can call back into code that sends to this socket again
  out.count = 0
  out.bytes = 0
  out.end = false
  let ok = true
  // views of a read buffer lent for this dispatch: free again only if the kernel took them all now
  const lent = lending() ? countLent(parts, count) : 0
  if (!socket.destroyed) {
    if (count === 1) {
      ok = writeNow(socket, parts[0]!)
    } else if (bytes <= COALESCE_LIMIT) {
      const buffer = Buffer.allocUnsafe(bytes)
      let offset = 0
      for (let i = 0; i < count; i++) {
        const data = parts[i]!
        offset += typeof data === 'string' ? buffer.write(data, offset, 'latin1') : data.copy(buffer, offset)
      }
      ok = writeNow(socket, buffer)
    } else {
      socket.cork()
      ok = true
      for (let i = 0; i < count; i++) {
        const data = parts[i]!
        ok = typeof data === 'string' ? socket.write(data, 'latin1') : socket.write(data)
      }
      socket.uncork()
    }
    if (lent > 0) {
      // joined into a new buffer, or written in full: nothing refers to the views now
      if ((count > 1 && bytes <= COALESCE_LIMIT) || (!hasQueuedWrite(socket) && socket.writableLength === 0)) settlePieces(lent)
      else keepLoan()
    }
    if (end) {
      if (!socket.writableEnded) socket.end()
    } else if (!ok && !direct) socket[kOwner]?.onWriteBlocked()
  } else if (lent > 0) settlePieces(lent)
  for (let i = 0; i < count; i++) parts[i] = undefined
  return ok
}

/**
 * Write `data` (a string is latin1) at once: straight to the socket's handle where
 * core/direct-write.ts can, else through its stream. False: the socket is full (wait for 'drain').
 */
function writeNow (socket: Socket, data: string | Buffer): boolean {
  const direct = data.length > 0 ? writeDirect(socket, data) : NOT_DIRECT
  if (direct !== NOT_DIRECT) return direct === WRITTEN
  return typeof data === 'string' ? socket.write(data, 'latin1') : socket.write(data)
}
