/**
 * A parked client connection: an idle keep-alive connection reduced to its TCP handle
 * (core/park.ts) after `timeouts.clientPark`. What an H1Connection holds while idle (its socket
 * object, parser, meter, listeners: about 2.4 KiB with the socket's) goes; this record of a few
 * fields stays, with the connection's count under the connection caps, its place among the
 * proxy's clients (a drain or a shutdown finds it) and its idle deadline.
 *
 * The client's next bytes make a socket and an H1Connection again and are parsed there as if the
 * connection had never been parked. Its end closes the handle; a read error too, reported as the
 * H1Connection would have. The idle timeout and a shutdown hand it back to an H1Connection to
 * close, for the same lingering close (downstream/linger.ts); a drain leaves it open, as it
 * leaves an idle H1Connection, and a drain that runs out cuts it.
 */
import { clock, type Timed } from '../core/clock.js'
import { ProxyError } from '../core/errors.js'
import { closeHandle, parkHandle, unparkHandle, UV_EOF, type ParkedHandle, type ParkOwner } from '../core/park.js'
import { adoptOwned } from '../core/owner.js'
import { handleError } from '../core/stream-wrap.js'
import { kPeer, peerLabel, type Peer } from '../core/symbols.js'
import { dropCount, giveCount, type CountTicket } from '../admission/caps.js'
import type { Socket } from 'node:net'
import type { RouteTable } from '../routing/table.js'
import type { IdentityHeaders } from '../session/sink.js'

/** What the proxy asks of each client connection it keeps (an H1Connection, or a parked one). */
export interface ClientConnection {
  /** Each next response is the last; an idle connection stays open for it. */
  drain (): void
  /** Close if nothing is under way, otherwise after the current responses. */
  closeWhenIdle (): void
  /** Close now. */
  destroy (error?: ProxyError): void
}

/** What a parked connection needs from the proxy around it. */
export interface ParkHost {
  /** A socket of a client connection again: served from here as one just accepted, `initial` read already. */
  acceptHttp (socket: Socket, initial: Buffer | null, tls: null, routes: RouteTable, headSince: number, identity: IdentityHeaders | null): ClientConnection
  /** A connection just parked is one of the proxy's client connections now. */
  adopt (client: ParkedClient): void
  forget (client: ClientConnection): void
  clientError (error: ProxyError, client: string): void
}

export class ParkedClient implements ClientConnection, ParkOwner, Timed {
  readonly #host: ParkHost
  readonly #routes: RouteTable
  readonly #identity: IdentityHeaders | null
  #count: CountTicket | null = null
  /** The client (a trusted PROXY header's, or the socket's peer), carried to the next socket: no getpeername to ask it again. */
  readonly #peer: Peer
  #handle: ParkedHandle | null = null
  /** The idle timeout's end. */
  deadline: number

  constructor (host: ParkHost, routes: RouteTable, identity: IdentityHeaders | null, peer: Peer, idleEnd: number) {
    this.#host = host
    this.#routes = routes
    this.#identity = identity
    this.#peer = peer
    this.deadline = idleEnd
  }

  /**
   * Park `socket`'s handle (every listener of rp4's taken off it, its count under the caps taken
   * as `count`); false, and nothing changed, where that could not be done.
   */
  take (socket: Socket, count: CountTicket | null): boolean {
    const handle = parkHandle(socket, this)
    if (handle === null) return false
    this.#handle = handle
    this.#count = count
    clock.add(this)
    this.#host.adopt(this)
    return true
  }

  onParkedData (chunk: Buffer): void {
    this.#wake(chunk)
  }

  onParkedEnd (status: number): void {
    if (status !== UV_EOF) {
      const err = handleError('read', status)
      const label = peerLabel(this.#peer)
      this.#host.clientError(new ProxyError('client_error', `client ${label}: ${err.code ?? err.message}`, 'downstream', 0, false, err), label)
    }
    this.destroy()
  }

  /** The idle timeout: closed as an idle H1Connection is (a lingering close). */
  onTimeout (): void {
    this.#wake(null)?.closeWhenIdle()
  }

  drain (): void {}

  closeWhenIdle (): void {
    this.#wake(null)?.closeWhenIdle()
  }

  destroy (): void {
    const handle = this.#handle
    if (handle === null) return
    this.#handle = null
    clock.delete(this)
    closeHandle(handle)
    if (this.#count !== null) dropCount(this.#count)
    this.#host.forget(this)
  }

  onInternalError (err: unknown): void {
    this.#host.clientError(new ProxyError('internal_error', `internal error: ${(err as Error).stack ?? String(err)}`, 'internal', 500, false, err), peerLabel(this.#peer))
    this.destroy()
  }

  /** A socket and an H1Connection around the handle again, `chunk` parsed there first. */
  #wake (chunk: Buffer | null): ClientConnection | null {
    const handle = this.#handle
    if (handle === null) return null
    this.#handle = null
    clock.delete(this)
    const socket = unparkHandle(handle)
    ;(socket as Socket & { [kPeer]?: Peer })[kPeer] = this.#peer
    if (this.#count !== null) giveCount(socket, this.#count)
    if (!adoptOwned(socket)) {
      // cannot happen where parking can (core/park.ts checks it at load): closed rather than misread
      socket.destroy()
      this.#host.forget(this)
      return null
    }
    // the new connection is counted among the clients before this one leaves them: a drain waiting for none left sees one
    let client: ClientConnection
    try {
      client = this.#host.acceptHttp(socket, chunk, null, this.#routes, 0, this.#identity)
    } catch (err) {
      // a defect of rp4's own: the connection closes (its count with it), the caller reports it
      this.#host.forget(this)
      socket.destroy()
      throw err
    }
    this.#host.forget(this)
    return client
  }
}
