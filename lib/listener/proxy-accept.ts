/**
 * A connection from a trusted PROXY protocol sender, until its header is read: nothing else is
 * done with it before (no access list, no cap, no protocol detection: those judge the client
 * the header names). Bounded in bytes (the parser's limits) and in time (`acceptProxy.timeout`).
 */
import type { Socket } from 'node:net'
import { clock, type Timed } from '../core/clock.js'
import { ProxyError } from '../core/errors.js'
import { kOwner, kPeer, peerLabel, peerOf, type Peer } from '../core/symbols.js'
import { parseProxyHeader } from '../http/proxy-header.js'

/** What the reader hands the connection back to. */
export interface ProxyAcceptHost {
  /** The header was read: the connection goes on as the client it named, with what followed the header. */
  proxied (socket: Socket, rest: Buffer | null): void
  clientError (error: ProxyError, client: string): void
  forgetProxyRead (read: ProxyHeaderRead): void
}

interface OwnedSocket extends Socket { [kOwner]: ProxyHeaderRead, [kPeer]?: Peer }

export class ProxyHeaderRead implements Timed {
  readonly #host: ProxyAcceptHost
  readonly socket: OwnedSocket
  #data: Buffer | null = null
  #done = false
  deadline = 0

  constructor (host: ProxyAcceptHost, socket: Socket, timeoutMs: number) {
    this.#host = host
    this.socket = socket as OwnedSocket
    this.socket[kOwner] = this
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('error', onError)
    socket.on('close', onClose)
    this.deadline = clock.after(timeoutMs)
    clock.add(this)
  }

  onData (chunk: Buffer): void {
    const data = this.#data = this.#data === null ? chunk : Buffer.concat([this.#data, chunk])
    const header = parseProxyHeader(data)
    if (header.state === 'more') return
    if (header.state === 'error') return this.#fail('proxy_header_invalid', header.reason)
    this.#release()
    if (header.source !== null) this.socket[kPeer] = header.source
    const rest = data.length > header.length ? data.subarray(header.length) : null
    this.#host.proxied(this.socket, rest)
  }

  onEnd (): void {
    this.#fail('proxy_header_invalid', 'closed before a complete PROXY header')
  }

  onTimeout (): void {
    this.#fail('proxy_header_timeout', 'no complete PROXY header in time (acceptProxy.timeout)')
  }

  onClose (): void {
    this.#release()
  }

  /** Stop waiting (the proxy is closing). */
  destroy (): void {
    this.#release()
    this.socket.destroy()
  }

  #fail (code: string, message: string): void {
    if (!this.#release()) return
    this.socket.destroy()
    this.#host.clientError(new ProxyError(code, message, 'downstream', 0), peerLabel(peerOf(this.socket)))
  }

  /** Give the socket up; false when it was given up already. */
  #release (): boolean {
    if (this.#done) return false
    this.#done = true
    this.deadline = 0
    clock.delete(this)
    const socket = this.socket
    socket.removeListener('data', onData)
    socket.removeListener('end', onEnd)
    socket.removeListener('error', onError)
    socket.removeListener('close', onClose)
    // the next owner attaches its listeners in this same turn (proxied): no byte is read meanwhile
    this.#host.forgetProxyRead(this)
    return true
  }
}

function onData (this: OwnedSocket, chunk: Buffer): void { this[kOwner].onData(chunk) }
function onEnd (this: OwnedSocket): void { this[kOwner].onEnd() }
function onError (): void { /* the 'close' that follows ends it */ }
function onClose (this: OwnedSocket): void { this[kOwner].onClose() }
