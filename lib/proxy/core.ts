/**
 * What every connection of one proxy shares: the frozen config, the pools and balancer, the
 * counters, and the doors out to the typed events (emitted only when somebody listens).
 */
import type { Config } from '../config/resolve.js'
import type { ProxyError } from '../core/errors.js'
import type { ProxyEvents } from '../core/events.js'
import type { ForwardContext } from '../http1/serialize.js'
import { Balancer } from '../upstream/balancer.js'
import { Pool } from '../upstream/pool.js'
import { clock } from '../core/clock.js'
import { RateLimiter } from './rate-limit.js'
import type { Socket } from 'node:net'
import { ClientConnection } from './client.js'
import type { Exchange } from './exchange.js'

/** The emitter side the core needs: a TypedEmitter<ProxyEvents> in practice. */
export interface EventSink {
  emit<E extends keyof ProxyEvents> (event: E, ...args: Parameters<ProxyEvents[E]>): boolean
  listenerCount (event: keyof ProxyEvents): number
}

export class ProxyCore {
  readonly config: Config
  readonly pools: Pool[]
  readonly balancer: Balancer
  readonly clients = new Set<ClientConnection>()
  closing = false
  /** Null without a rate limit. */
  readonly rateLimiter: RateLimiter | null
  #ids = 0
  readonly #events: EventSink
  /** Forwarding contexts by client IP: one object per distinct client, not per request. */
  #contexts = new Map<string, ForwardContext>()
  #tlsContexts = new Map<string, ForwardContext>()
  #onIdle: (() => void) | null = null

  constructor (config: Config, events: EventSink) {
    this.config = config
    this.#events = events
    this.pools = config.targets.map((target, i) => new Pool(this, target, i))
    this.balancer = new Balancer(config.targets, config.timeouts.failedTarget)
    this.rateLimiter = config.rateLimit === null ? null : new RateLimiter(config.rateLimit.rate, config.rateLimit.burst)
  }

  nextId (): number { return ++this.#ids }

  /** @param secure the client reached rp4 over TLS that rp4 terminated */
  forwardContext (ip: string, secure: boolean): ForwardContext {
    const contexts = secure ? this.#tlsContexts : this.#contexts
    let ctx = contexts.get(ip)
    if (ctx === undefined) {
      if (contexts.size > 4096) contexts.clear()
      ctx = { clientIp: ip, proto: secure ? 'https' : 'http', via: this.config.via }
      contexts.set(ip, ctx)
    }
    return ctx
  }

  /**
   * Serve HTTP/1.x on an accepted socket (plain, or a TLSSocket rp4 terminated). `initial` holds
   * bytes already read from it (while detecting the protocol); they are parsed first.
   */
  /** `headSince`: when the request head in `initial` began, when that was before this hand-over (0: now). */
  acceptHttp (socket: Socket, initial: Buffer | null, secure: boolean, headSince = 0): ClientConnection {
    const client = new ClientConnection(this, socket, secure)
    this.clients.add(client)
    if (initial !== null && initial.length > 0) client.onData(initial)
    if (headSince > 0) client.headBeganAt(headSince)
    // a FIN read while the protocol was being told apart: its 'end' event is gone already
    if (socket.readableEnded) client.onEnd()
    return client
  }

  forget (client: ClientConnection): void {
    this.clients.delete(client)
    if (this.closing && this.clients.size === 0) this.#onIdle?.()
  }

  /** Stop taking requests: idle clients close now, busy ones after their current exchanges. */
  shutdown (onIdle: () => void): void {
    this.closing = true
    this.#onIdle = onIdle
    for (const client of this.clients) client.closeWhenIdle()
    for (const pool of this.pools) pool.closeIdle()
    if (this.clients.size === 0) onIdle()
  }

  requestStarted (exchange: Exchange): void {
    if (this.#events.listenerCount('request') === 0) return
    const { id, head, client } = exchange
    this.#events.emit('request', { id, method: head.method, url: head.url, client: client.label })
  }

  responseDone (exchange: Exchange): void {
    if (this.#events.listenerCount('response') === 0) return
    const { id, head, client } = exchange
    this.#events.emit('response', {
      id,
      method: head.method,
      url: head.url,
      client: client.label,
      status: exchange.status,
      target: exchange.status !== 0 && exchange.pool !== null ? exchange.pool.target.authority : '',
      duration: clock.refresh() - exchange.started,
    })
  }

  /** Every failure and refusal by error code, since the proxy started (client and upstream side). */
  readonly errorCounts = new Map<string, number>()

  upstreamError (error: ProxyError, target: string): void {
    this.errorCounts.set(error.code, (this.errorCounts.get(error.code) ?? 0) + 1)
    if (this.#events.listenerCount('upstreamError') > 0) this.#events.emit('upstreamError', error, target)
  }

  clientError (error: ProxyError, client: string): void {
    this.errorCounts.set(error.code, (this.errorCounts.get(error.code) ?? 0) + 1)
    if (this.#events.listenerCount('clientError') > 0) this.#events.emit('clientError', error, client)
  }
}
