/**
 * What every connection of one proxy shares: the settings of the HTTP engine, the routes and the
 * upstream groups, the counters, and the doors out to the typed events (emitted only when
 * somebody listens). It is the host the downstream connections and sessions are given; they reach
 * nothing else.
 */
import type { Socket } from 'node:net'
import type { Config } from '../config/resolve.js'
import { clock } from '../core/clock.js'
import type { ProxyError } from '../core/errors.js'
import type { ProxyEvents } from '../core/events.js'
import { H1Connection, type H1Host, type H1Settings } from '../downstream/h1-connection.js'
import { hideHeadersFilter, interceptErrorsFilter, rateLimitFilter } from '../filters/builtin.js'
import type { ForwardContext } from '../http/forwarding.js'
import type { RequestHead } from '../http/message.js'
import { compileFilters, type Filter } from '../session/filter.js'
import type { Session, SessionRoute } from '../session/session.js'
import { Group } from '../upstream/group.js'

/** The emitter side the core needs: a TypedEmitter<ProxyEvents> in practice. */
export interface EventSink {
  emit<E extends keyof ProxyEvents> (event: E, ...args: Parameters<ProxyEvents[E]>): boolean
  listenerCount (event: keyof ProxyEvents): number
}

export class ProxyCore implements H1Host {
  readonly config: Config
  readonly settings: H1Settings
  readonly via: string
  /** The upstream group every request goes to (routes and several groups come with the configuration file). */
  readonly group: Group
  readonly #route: SessionRoute
  readonly clients = new Set<H1Connection>()
  closing = false
  #ids = 0
  readonly #events: EventSink
  /** Forwarding contexts by client IP: one object per distinct client, not per request. */
  #contexts = new Map<string, ForwardContext>()
  #tlsContexts = new Map<string, ForwardContext>()
  #onIdle: (() => void) | null = null

  constructor (config: Config, events: EventSink, userFilters: readonly Filter[] = []) {
    this.config = config
    this.#events = events
    this.via = config.via
    this.settings = {
      maxHeaderSize: config.maxHeaderSize,
      maxRequestLine: config.maxRequestLine,
      maxHeaders: config.maxHeaders,
      maxPipelinedRequests: config.maxPipelinedRequests,
      minDataRate: config.minDataRate,
      timeouts: { clientIdle: config.timeouts.clientIdle, requestHead: config.timeouts.requestHead, requestBody: config.timeouts.requestBody },
    }
    this.group = new Group({
      name: 'default',
      targets: config.targets,
      pool: { ...config.upstream, idleTimeout: config.timeouts.upstreamIdle },
      timeouts: { connect: config.timeouts.connect, failedTarget: config.timeouts.failedTarget },
      maxHeaderSize: config.maxHeaderSize,
      maxHeaders: config.maxHeaders,
    }, this)
    // the built-in policies first, so that a refused request costs no user filter; on the way
    // back (reverse order) the user's filters see the response before rp4 hides headers or
    // replaces an error page
    const filters: Filter[] = []
    if (config.rateLimit !== null) filters.push(rateLimitFilter(config.rateLimit.rate, config.rateLimit.burst))
    if (config.hideHeaders !== null) filters.push(hideHeadersFilter(config.hideHeaders.names))
    if (config.interceptErrors) filters.push(interceptErrorsFilter())
    filters.push(...userFilters)
    this.#route = Object.freeze({
      name: 'default',
      action: Object.freeze({ kind: 'proxy' as const, group: this.group }),
      chain: compileFilters(filters),
      maxBodySize: config.maxBodySize,
      responseTimeout: config.timeouts.response,
      responseTotalTimeout: config.timeouts.responseTotal,
    })
  }

  nextId (): number { return ++this.#ids }

  route (_head: RequestHead, _secure: boolean): SessionRoute | null {
    return this.#route
  }

  /** @param secure the client reached rp4 over TLS that rp4 terminated */
  forwardContext (ip: string, secure: boolean): ForwardContext {
    const contexts = secure ? this.#tlsContexts : this.#contexts
    let ctx = contexts.get(ip)
    if (ctx === undefined) {
      if (contexts.size > 4096) contexts.clear()
      ctx = { clientIp: ip, proto: secure ? 'https' : 'http', via: this.config.via, underscores: this.config.allowUnderscoresInHeaders }
      contexts.set(ip, ctx)
    }
    return ctx
  }

  /**
   * Serve HTTP/1.x on an accepted socket (plain, or a TLSSocket rp4 terminated). `initial` holds
   * bytes already read from it (while detecting the protocol); they are parsed first.
   */
  /** `headSince`: when the request head in `initial` began, when that was before this hand-over (0: now). */
  acceptHttp (socket: Socket, initial: Buffer | null, secure: boolean, headSince = 0): H1Connection {
    const client = new H1Connection(this, socket, secure)
    this.clients.add(client)
    if (initial !== null && initial.length > 0) client.onData(initial)
    if (headSince > 0) client.headBeganAt(headSince)
    // a FIN read while the protocol was being told apart: its 'end' event is gone already
    if (socket.readableEnded) client.onEnd()
    return client
  }

  forget (client: H1Connection): void {
    this.clients.delete(client)
    if (this.closing && this.clients.size === 0) this.#onIdle?.()
  }

  /** Stop taking requests: idle clients close now, busy ones after their current responses. */
  shutdown (onIdle: () => void): void {
    this.closing = true
    this.#onIdle = onIdle
    for (const client of [...this.clients]) client.closeWhenIdle()
    this.group.close()
    if (this.clients.size === 0) onIdle()
  }

  requestStarted (session: Session): void {
    if (this.#events.listenerCount('request') === 0) return
    const { id, request, client } = session
    this.#events.emit('request', { id, method: request.method, url: request.target, client: client.label })
  }

  responseDone (session: Session): void {
    if (this.#events.listenerCount('response') === 0) return
    const { id, request, client } = session
    this.#events.emit('response', {
      id,
      method: request.method,
      url: request.target,
      client: client.label,
      status: session.status,
      target: session.status !== 0 && session.target !== null ? session.target : '',
      duration: clock.refresh() - session.started,
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

  proxyError (error: ProxyError): void {
    this.errorCounts.set(error.code, (this.errorCounts.get(error.code) ?? 0) + 1)
    if (this.#events.listenerCount('proxyError') > 0) this.#events.emit('proxyError', error)
  }
}
