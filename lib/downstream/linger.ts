/**
 * Lingering close: once rp4 is done with a client connection, it ends its side after the output
 * is written, then reads and drops what the client still sends for a moment, and closes for good
 * when the client ends too or LINGER_MS passes. Closing with unread bytes would send a reset,
 * which can destroy the last response before the client has read it.
 */
import type { Socket } from 'node:net'
import { sendEnd } from '../core/batch.js'
import { clock, type Timed } from '../core/clock.js'
import { kOwner } from '../core/symbols.js'

/** How long what the client still sends is read and dropped before the connection is closed. */
export const LINGER_MS = 1000

interface OwnedSocket extends Socket { [kOwner]: Linger }

class Linger implements Timed {
  readonly socket: OwnedSocket
  deadline: number

  constructor (socket: Socket) {
    this.socket = socket as OwnedSocket
    this.socket[kOwner] = this
    // the client's end needs no answer: ours is sent, and the socket closes once both are done
    socket.on('data', ignore)
    socket.on('error', ignore)
    socket.on('close', onClose)
    sendEnd(socket)
    if (!socket.destroyed) socket.resume()
    this.deadline = clock.after(LINGER_MS)
    clock.add(this)
  }

  onTimeout (): void {
    this.socket.destroy()
  }
}

/** Take `socket` over (its previous owner has removed its listeners) until it closes. */
export function linger (socket: Socket): void {
  new Linger(socket) // eslint-disable-line no-new
}

function ignore (): void {}
function onClose (this: OwnedSocket): void { clock.delete(this[kOwner]) }
