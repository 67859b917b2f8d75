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
import type { ClientConnection } from './client.js'
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
  #ids = 0
  readonly #events: EventSink
  readonly #proto: string
  /** Forwarding contexts by client IP: one object per distinct client, not per request. */
  #contexts = new Map<string, ForwardContext>()
  #onIdle: (() => void) | null = null

  constructor (config: Config, events: EventSink, proto = 'http') {
    this.config = config
    this.#events = events
    this.#proto = proto
    this.pools = config.targets.map((target, i) => new Pool(this, target, i))
    this.balancer = new Balancer(this.pools, config.timeouts.failedTarget)
  }

  nextId (): number { return ++this.#ids }

  forwardContext (ip: string): ForwardContext {
    let ctx = this.#contexts.get(ip)
    if (ctx === undefined) {
      if (this.#contexts.size > 4096) this.#contexts.clear()
      ctx = { clientIp: ip, proto: this.#proto, via: this.config.via }
      this.#contexts.set(ip, ctx)
    }
    return ctx
  }

  adopt (client: ClientConnection): void {
    this.clients.add(client)
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

  upstreamError (error: ProxyError, target: string): void {
    if (this.#events.listenerCount('upstreamError') > 0) this.#events.emit('upstreamError', error, target)
  }

  clientError (error: ProxyError, client: string): void {
    if (this.#events.listenerCount('clientError') > 0) this.#events.emit('clientError', error, client)
  }
}
