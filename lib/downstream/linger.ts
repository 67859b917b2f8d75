/**
 * Lingering close: once rp4 is done with a client connection, it ends its side after the output
 * is written, then reads and drops what the client still sends for a moment, and closes for good
 * when the client ends too or LINGER_MS passes. Closing with unread bytes would send a reset,
 * which can destroy the last response before the client has read it.
 */
import type { Socket } from 'node:net'
import { sendEnd } from '../core/batch.js'
import { clock, type Timed } from '../core/clock.js'
import { own, type SocketOwner } from '../core/owner.js'

/** How long what the client still sends is read and dropped before the connection is closed. */
export const LINGER_MS = 1000

class Linger implements Timed, SocketOwner {
  readonly socket: Socket
  deadline: number

  constructor (socket: Socket) {
    this.socket = socket
    // the client connection's listeners stay on the socket (core/owner.ts): only their owner changes
    own(socket, this)
    sendEnd(socket)
    if (!socket.destroyed) socket.resume()
    this.deadline = clock.after(LINGER_MS)
    clock.add(this)
  }

  onTimeout (): void {
    this.socket.destroy()
  }

  /** What the client still sends is dropped. */
  onData (): void {}
  /** The client's end needs no answer: ours is sent, and the socket closes once both are done. */
  onEnd (): void {}
  onSocketError (): void {}
  onClose (): void { clock.delete(this) }
  onInternalError (): void { this.socket.destroy() }
}

/** Take `socket` over until it closes (its previous owner left its core/owner.ts listeners, or none). */
export function linger (socket: Socket): void {
  new Linger(socket) // eslint-disable-line no-new
}
