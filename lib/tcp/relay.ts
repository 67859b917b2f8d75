/**
 * Bytes both ways between two sockets, with backpressure (a side whose peer cannot take more is
 * not read until the peer drains) and half-close (a FIN is passed on while the other direction
 * keeps flowing). Both sockets close when both directions are done or either fails.
 */
import type { Socket } from 'node:net'
import { kOwner } from '../core/symbols.js'

interface RelaySocket extends Socket { [kOwner]: Relay }

export class Relay {
  readonly a: RelaySocket
  readonly b: RelaySocket
  #ended = 0

  constructor (a: Socket, b: Socket) {
    this.a = a as RelaySocket
    this.b = b as RelaySocket
    for (const socket of [this.a, this.b]) {
      socket[kOwner] = this
      socket.on('data', onData)
      socket.on('end', onEnd)
      socket.on('drain', onDrain)
      socket.on('error', onError)
      socket.on('close', onClose)
    }
  }

  peer (socket: Socket): RelaySocket { return socket === this.a ? this.b : this.a }

  onData (from: Socket, chunk: Buffer): void {
    if (!this.peer(from).write(chunk)) from.pause()
  }

  onEnd (from: Socket): void {
    this.peer(from).end()
    if (++this.#ended === 2) this.destroy()
  }

  onDrain (to: Socket): void {
    this.peer(to).resume()
  }

  destroy (): void {
    this.a.destroy()
    this.b.destroy()
  }
}

/** Relay `a` and `b` until both directions are done. Both sockets must allow half-open. */
export function relay (a: Socket, b: Socket): Relay {
  const r = new Relay(a, b)
  a.resume()
  b.resume()
  return r
}

function onData (this: RelaySocket, chunk: Buffer): void { this[kOwner].onData(this, chunk) }
function onEnd (this: RelaySocket): void { this[kOwner].onEnd(this) }
function onDrain (this: RelaySocket): void { this[kOwner].onDrain(this) }
function onError (this: RelaySocket): void { this[kOwner].destroy() }
function onClose (this: RelaySocket): void { this[kOwner].destroy() }
