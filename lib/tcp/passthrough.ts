/**
 * A client connection relayed as raw bytes to a backend: rp4 picks a backend (round robin, the
 * next one when a connect fails), replays what it already read from the client (bytes read while
 * detecting the protocol, a ClientHello read for its SNI), then relays both ways until both sides
 * are done, either fails, or nothing crossed for the idle timeout.
 *
 * Nothing is read from the client while connecting (it stays paused) and nothing is written to
 * it: a server-first protocol's greeting comes from the backend once connected.
 */
import net, { type Socket } from 'node:net'
import { clock, type Timed } from '../core/clock.js'
import { ProxyError } from '../core/errors.js'
import { kOwner, localOf, peerOf } from '../core/symbols.js'
import { encodeProxyHeader } from '../http/proxy-header.js'
import { relay, type Relay } from './relay.js'
import type { Group } from '../upstream/group.js'
import type { Target } from '../upstream/target.js'

/** What a passthrough needs from the proxy around it. */
export interface PassthroughHost {
  readonly idleTimeout: number
  upstreamError (error: ProxyError, target: string): void
  /** The passthrough is over: both sockets closed or being destroyed. */
  forget (passthrough: Passthrough): void
}

interface OwnedSocket extends Socket { [kOwner]: Passthrough }

export class Passthrough implements Timed {
  readonly #host: PassthroughHost
  readonly #client: OwnedSocket
  readonly #group: Group
  /** Bytes already read from the client, sent to the backend first (kept until one connects, for failover). */
  readonly #initial: Buffer | null
  #upstream: OwnedSocket | null = null
  /** Targets tried before the current one; null: none. */
  #tried: number[] | null = null
  #index = -1
  /** The target this connection counts against (least-conn, bounded hash loads). */
  #counted = -1
  #error: ProxyError | null = null
  #relay: Relay | null = null
  #done = false
  deadline = 0
  /** When it was accepted, ms since the epoch (for the access log). */
  readonly started = Date.now()
  /** The server name of the ClientHello it is relayed by, '' otherwise. */
  readonly sni: string

  constructor (host: PassthroughHost, client: Socket, initial: Buffer | null, group: Group, sni = '') {
    this.#host = host
    this.sni = sni
    this.#client = client as OwnedSocket
    this.#group = group
    this.#initial = initial !== null && initial.length > 0 ? initial : null
    client.pause()
    this.#client[kOwner] = this
    client.on('error', onClientError)
    client.on('close', onClientClose)
    clock.add(this)
    this.#connect()
  }

  #connect (): void {
    const group = this.#group
    const policy = group.balancer.policy
    // only the client's address is known of a relayed connection: other keys fall back to round robin
    const key = policy.kind === 'hash' && policy.by === 'ip' ? this.#client.remoteAddress ?? null : null
    const index = group.pick(key, this.#tried)
    if (index === -1) {
      this.destroy()
      return
    }
    this.#count(index)
    this.#index = index
    this.#error = null
    const { host, port } = this.#group.targets[index].config
    const upstream = net.connect({ host, port, allowHalfOpen: true, noDelay: true }) as OwnedSocket
    upstream[kOwner] = this
    upstream.on('connect', onUpstreamConnect)
    upstream.on('error', onUpstreamError)
    upstream.on('close', onUpstreamClose)
    this.#upstream = upstream
    this.deadline = clock.after(this.#group.settings.timeouts.connect)
  }

  get target (): Target { return this.#group.targets[this.#index] }
  /** The backend it was relayed to ('' when none could be reached). */
  get relayedTo (): string { return this.#relay === null ? '' : this.target.authority }
  get client (): Socket { return this.#client }

  onUpstreamConnect (): void {
    const upstream = this.#upstream!
    const client = this.#client
    clock.delete(this)
    this.deadline = 0
    this.#group.balancer.markUp(this.#index)
    upstream.removeListener('connect', onUpstreamConnect)
    upstream.removeListener('error', onUpstreamError)
    upstream.removeListener('close', onUpstreamClose)
    client.removeListener('error', onClientError)
    client.removeListener('close', onClientClose)
    const version = this.#group.settings.sendProxy
    if (version !== null) {
      upstream.write(encodeProxyHeader(version === 'v1' ? 1 : 2, peerOf(client), localOf(client), { authority: this.sni }))
    }
    if (this.#initial !== null) upstream.write(this.#initial)
    const r = relay(client, upstream, this.#host.idleTimeout)
    r.onDone = this.#relayDone
    this.#relay = r
  }

  readonly #relayDone = (): void => {
    this.#finish()
  }

  onUpstreamError (err: Error): void {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    this.#error ??= new ProxyError('connect_failed', `cannot connect to ${this.target.authority}: ${code}`, 'upstream', 0, true, err)
  }

  /** Closed before connecting: report it, and fail over to the next backend. */
  onUpstreamClose (): void {
    if (this.#done) return
    const error = this.#error ?? new ProxyError('connect_failed', `cannot connect to ${this.target.authority}`, 'upstream', 0, true)
    this.#group.relayFailed(this.#index)
    this.#host.upstreamError(error, this.target.authority)
    this.#upstream = null
    ;(this.#tried ??= []).push(this.#index)
    this.#connect()
  }

  onTimeout (): void {
    if (this.#upstream === null) return
    this.#error = new ProxyError('connect_timeout', `connect to ${this.target.authority} timed out`, 'upstream', 0, true)
    this.#upstream.destroy()
  }

  /** The client went away while a backend was being connected. */
  onClientClose (): void {
    this.destroy()
  }

  destroy (): void {
    if (this.#relay !== null) {
      this.#relay.destroy()
      return
    }
    if (this.#done) return
    this.#client.destroy()
    this.#finish()
    this.#upstream?.destroy()
  }

  #count (index: number): void {
    const balancer = this.#group.balancer
    if (this.#counted !== -1) balancer.release(this.#counted)
    balancer.acquire(index)
    this.#counted = index
  }

  #finish (): void {
    if (this.#done) return
    this.#done = true
    if (this.#counted !== -1) {
      this.#group.balancer.release(this.#counted)
      this.#counted = -1
    }
    clock.delete(this)
    this.#host.forget(this)
  }
}

function onUpstreamConnect (this: OwnedSocket): void { this[kOwner].onUpstreamConnect() }
function onUpstreamError (this: OwnedSocket, err: Error): void { this[kOwner].onUpstreamError(err) }
function onUpstreamClose (this: OwnedSocket): void { this[kOwner].onUpstreamClose() }
function onClientError (): void { /* the 'close' that follows ends the passthrough */ }
function onClientClose (this: OwnedSocket): void { this[kOwner].onClientClose() }
