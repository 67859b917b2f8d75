/**
 * One set of socket listeners for whatever owns a client socket at the moment (`socket[kOwner]`):
 * the listener's protocol detection first, then the HTTP/1 connection. Handing the socket from
 * one to the next is one assignment, instead of four listeners removed and four added again on
 * every accepted connection. Each listener contains what a defect could throw: no exception
 * reaches the process.
 */
import type { Socket } from 'node:net'
import { kOwner } from './symbols.js'
import { adoptReads, readsOf, switchReads, type SocketReads } from './read-buffers.js'

export interface SocketOwner {
  onData (chunk: Buffer): void
  onEnd (): void
  onSocketError (err: Error): void
  onClose (): void
  /** A listener call threw: the owner closes what it owns (the process goes on). */
  onInternalError (err: unknown): void
  /**
   * A read into `buffer` (a socket switched by `readOwned`): an owner that can take views lent
   * for the dispatch has it (`reads.begin` / `reads.end`); others get a copy through `onData`.
   */
  onRead? (reads: SocketReads, length: number, buffer: Buffer): void
}

const kListening = Symbol('rp4.listening')
interface Owned extends Socket { [kOwner]: SocketOwner, [kListening]?: boolean }

/**
 * From the next read on, `socket` reads into buffers of core/read-buffers.ts (core/read-into.ts)
 * and its owner is told through `onRead` (or `onData`, with a copy); once nobody owns its
 * listeners (a relay reads the stream), what it reads is pushed to the stream. False where this
 * Node or this socket cannot (it reads as before).
 */
export function readOwned (socket: Socket): boolean {
  return readsOf(socket) !== undefined || switchReads(socket, ownedRead)
}

/** `readOwned` for a socket made around a parked handle (core/park.ts), before it reads. */
export function adoptOwned (socket: Socket): boolean {
  return adoptReads(socket, ownedRead)
}

function ownedRead (socket: Socket, reads: SocketReads, length: number, buffer: Buffer): boolean {
  const s = socket as Owned
  if (s[kListening] !== true) return socket.push(reads.copy(length, buffer))
  const owner = s[kOwner]
  try {
    if (owner.onRead !== undefined) owner.onRead(reads, length, buffer)
    else owner.onData(reads.copy(length, buffer))
  } catch (err) {
    owner.onInternalError(err)
  }
  return true
}

/** Make `owner` the one told of `socket`'s data, end, error and close (the listeners are added once). */
export function own (socket: Socket, owner: SocketOwner): void {
  const s = socket as Owned
  s[kOwner] = owner
  if (s[kListening] === true) return
  s[kListening] = true
  socket.on('data', onData)
  socket.on('end', onEnd)
  socket.on('error', onError)
  socket.on('close', onClose)
}

/**
 * Take the listeners off (the socket goes to a relay, a TLS socket or a lingering close).
 * `parking`: its handle is being parked (core/park.ts), reading into the shared buffer only.
 */
export function disown (socket: Socket, parking = false): void {
  const s = socket as Owned
  if (s[kListening] !== true) return
  s[kListening] = false
  socket.removeListener('data', onData)
  socket.removeListener('end', onEnd)
  socket.removeListener('error', onError)
  socket.removeListener('close', onClose)
  // the buffer of its next read is fixed already: an own one goes back only when the socket is gone
  if (readsOf(socket) !== undefined && !parking) socket.once('close', releaseReads)
}

function releaseReads (this: Socket): void {
  readsOf(this)?.release()
}

function onData (this: Owned, chunk: Buffer): void { try { this[kOwner].onData(chunk) } catch (err) { this[kOwner].onInternalError(err) } }
function onEnd (this: Owned): void { try { this[kOwner].onEnd() } catch (err) { this[kOwner].onInternalError(err) } }
function onError (this: Owned, err: Error): void { try { this[kOwner].onSocketError(err) } catch (e) { this[kOwner].onInternalError(e) } }
function onClose (this: Owned): void {
  readsOf(this)?.release()
  try { this[kOwner].onClose() } catch (err) { this[kOwner].onInternalError(err) }
}
