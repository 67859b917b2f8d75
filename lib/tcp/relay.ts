/**
 * Bytes both ways between two sockets, with backpressure (a side whose peer cannot take more is
 * not read until the peer drains) and half-close (a FIN is passed on while the other direction
 * keeps flowing). Both sockets close when both directions are done or either fails; optionally
 * also when no byte crossed either way for an idle timeout.
 */
import type { Socket } from 'node:net'
import { clock, type Timed } from '../core/clock.js'
import { kOwner } from '../core/symbols.js'
import { skipReadMore } from '../core/read-more.js'
import { keepLoan, lendPiece, settlePieces } from '../core/loan.js'
import { readsOf, SHARED_SIZE, switchReads, type SocketReads } from '../core/read-buffers.js'

interface RelaySocket extends Socket { [kOwner]: Relay }

export class Relay implements Timed {
  readonly a: RelaySocket
  readonly b: RelaySocket
  /** Closed with no byte either way for this long, ms; 0 never. */
  readonly #idle: number
  /** 'end' received on a socket, and the FIN passed on to its peer flushed ('finish'): per direction. */
  #done = 0
  #destroyed = false
  deadline = 0
  /** Called once, when both sockets are closed or being destroyed. */
  onDone: ((relay: Relay) => void) | null = null

  constructor (a: Socket, b: Socket, idleMs: number) {
    this.a = a as RelaySocket
    this.b = b as RelaySocket
    this.#idle = idleMs
    for (const socket of [this.a, this.b]) {
      socket[kOwner] = this
      skipReadMore(socket)
      socket.on('data', onData)
      socket.on('end', onEnd)
      socket.on('finish', onFinish)
      socket.on('drain', onDrain)
      socket.on('error', onError)
      socket.on('close', onClose)
    }
    if (idleMs > 0) {
      this.deadline = clock.after(idleMs)
      clock.add(this)
    }
    // a side whose FIN arrived before the relay started (while a protocol was being detected)
    for (const socket of [this.a, this.b]) {
      if (socket.readableEnded) this.onEnd(socket)
    }
  }

  peer (socket: Socket): RelaySocket { return socket === this.a ? this.b : this.a }

  onData (from: Socket, chunk: Buffer): void {
    // the coarse reading: one field written per chunk, no clock call
    if (this.#idle > 0) this.deadline = clock.now + this.#idle
    if (!this.peer(from).write(chunk)) from.pause()
    // bulk traffic on a cleartext socket: its next reads go to buffers chosen per read
    // (core/read-buffers.ts) instead of a fresh one each
    if (chunk.length >= SHARED_SIZE / 2) switchReads(from, relayRead)
  }

  /**
   * A read of a switched socket: written to the peer from the read buffer, which is read into
   * again when the peer's socket took it all at once (core/loan.ts). A read that filled its
   * buffer says more is waiting: the next ones may go to an own buffer.
   */
  onRead (from: Socket, reads: SocketReads, length: number, buffer: Buffer): boolean {
    if (this.#idle > 0) this.deadline = clock.now + this.#idle
    const to = this.peer(from)
    const chunk = reads.begin(length, buffer)
    let more = true
    try {
      lendPiece()
      more = to.write(chunk)
      if (to.writableLength === 0) settlePieces()
      else keepLoan()
    } finally {
      reads.end(length === buffer.length)
    }
    if (!more) from.pause()
    return true
  }

  onEnd (from: Socket): void {
    this.peer(from).end()
  }

  /**
   * A FIN was written out to `to`. Destroying on 'end' alone would drop what still sits in the
   * other socket's write buffer (a slow reader); a direction is done once its FIN is flushed.
   */
  onFinish (): void {
    if (++this.#done === 2) this.destroy()
  }

  onDrain (to: Socket): void {
    this.peer(to).resume()
  }

  onClose (socket: Socket): void {
    // no more reads into its buffer
    readsOf(socket)?.release()
    // a socket closes by itself once it has read a FIN and flushed its own: the peer may still be
    // flushing the last bytes, and closes the same way; any other close ends the relay
    if (socket.readableEnded && socket.writableFinished && !this.peer(socket).destroyed) return
    this.destroy()
  }

  onTimeout (): void {
    this.destroy()
  }

  destroy (): void {
    this.a.destroy()
    this.b.destroy()
    if (this.#destroyed) return
    this.#destroyed = true
    if (this.#idle > 0) clock.delete(this)
    this.onDone?.(this)
  }
}

/**
 * Relay `a` and `b` until both directions are done. Both sockets must allow half-open. With
 * `idleMs`, the relay closes both after that long without a byte either way.
 */
export function relay (a: Socket, b: Socket, idleMs = 0): Relay {
  const r = new Relay(a, b, idleMs)
  a.resume()
  b.resume()
  return r
}

function onData (this: RelaySocket, chunk: Buffer): void { this[kOwner].onData(this, chunk) }
function relayRead (socket: Socket, reads: SocketReads, length: number, buffer: Buffer): boolean { return (socket as RelaySocket)[kOwner].onRead(socket, reads, length, buffer) }
function onEnd (this: RelaySocket): void { this[kOwner].onEnd(this) }
function onFinish (this: RelaySocket): void { this[kOwner].onFinish() }
function onDrain (this: RelaySocket): void { this[kOwner].onDrain(this) }
function onError (this: RelaySocket): void { this[kOwner].destroy() }
function onClose (this: RelaySocket): void { this[kOwner].onClose(this) }
