/**
 * What every connection of one proxy shares, built from the configuration model once: the HTTP
 * engine's settings, the upstream groups, the compiled routes, the connection caps over every
 * listener, the counters, and the doors out to the typed events (emitted only when somebody
 * listens). It is the host the downstream connections and sessions are given; they reach nothing
 * else.
 */
import type { Socket } from 'node:net'
import { isDeepStrictEqual } from 'node:util'
import { peerLabel, peerOf } from '../core/symbols.js'
import type { Model } from '../model/model.js'
import { clock } from '../core/clock.js'
import { ProxyError } from '../core/errors.js'
import type { DiscoveryEvent, ProxyEvents, RequestMeter, TargetHealthEvent } from '../core/events.js'
import { Resolver } from 'node:dns/promises'
import type { DnsResolver } from '../upstream/discovery.js'
import type { DiscoveryModel } from '../model/model.js'
import { H1Connection, type H1Host, type H1Settings } from '../downstream/h1-connection.js'
import { ParkedClient, type ClientConnection } from '../downstream/parked.js'
import type { ForwardContext } from '../http/forwarding.js'
import { ConnectionCaps } from '../admission/caps.js'
import { compileRoute, type CompiledRoute } from '../routing/compile.js'
import { RouteTable } from '../routing/table.js'
import { acmeChallengeRoute } from '../routing/acme.js'
import { AcmeChallenges } from '../tls/acme-challenges.js'
import type { Filter, TlsClient } from '../session/filter.js'
import type { IdentityHeaders } from '../session/sink.js'
import type { Session } from '../session/session.js'
import { Group } from '../upstream/group.js'
import { HealthScheduler } from '../upstream/health/active.js'
import type { Passthrough } from '../tcp/passthrough.js'

/** The emitter side the core needs: a TypedEmitter<ProxyEvents> in practice. */
export interface EventSink {
  emit<E extends keyof ProxyEvents> (event: E, ...args: Parameters<ProxyEvents[E]>): boolean
  listenerCount (event: keyof ProxyEvents): number
  /** The metrics: told of every request directly (null: none kept). */
  readonly metrics: RequestMeter | null
}

export class ProxyCore implements H1Host {
  readonly model: Model
  readonly settings: H1Settings
  readonly via: string
  readonly groups: ReadonlyMap<string, Group>
  /** The active health checks of every group (one scheduler, shared by the generations a reload makes). */
  readonly health: HealthScheduler
  readonly routes: ReadonlyMap<string, CompiledRoute>
  /** Open client connections of every listener, in all and per client IP. */
  readonly caps: ConnectionCaps
  /** The ACME challenges being answered, shared by every listener; null: no listener uses ACME. */
  readonly acmeChallenges: AcmeChallenges | null
  readonly acmeRoute: CompiledRoute | null
  /** Client connections served by the HTTP engine (an H1Connection each, or a parked one: downstream/parked.ts). */
  readonly clients = new Set<ClientConnection>()
  closing = false
  draining = false
  readonly #ids: { n: number }
  #onRetired: (() => void) | null = null
  readonly #events: EventSink
  readonly #underscores: boolean
  /** Some route keeps a response cache: only then is a response's Cache-Status looked at when it is logged. */
  readonly #caching: boolean
  /** Forwarding contexts by client IP: one object per distinct client, not per request. */
  #contexts = new Map<string, ForwardContext>()
  #tlsContexts = new Map<string, ForwardContext>()
  #onIdle: (() => void) | null = null

  /**
   * @param previous the generation this one replaces on a reload: its counters, caps and request
   * ids go on here, and its upstream groups whose configuration did not change are taken over
   * whole (pools, idle connections, health); in a changed group, the targets that stay keep their
   * health, and their pools when their connection settings did not change.
   * @param resolver service discovery's DNS for every group (the library's option); by default each
   * group's `discovery.servers`, or the system's
   */
  constructor (model: Model, events: EventSink, userFilters: ReadonlyMap<string, Filter> = new Map(), previous: ProxyCore | null = null, resolver?: DnsResolver) {
    this.model = model
    this.#events = events
    this.errorCounts = previous?.errorCounts ?? new Map()
    this.healthCounts = previous?.healthCounts ?? new Map()
    this.tlsCounts = previous?.tlsCounts ?? new Map()
    this.#resolvers = previous === null ? [] : previous.#resolvers
    // one sequence over every generation: a request of the old one still being read gets its own number
    this.#ids = previous === null ? { n: 0 } : previous.#ids
    const http = model.http
    this.via = http.via
    this.#underscores = http.underscoresInHeaders
    this.settings = {
      maxHeaderSize: http.maxHeaderSize,
      maxRequestLine: http.maxRequestLine,
      maxHeaders: http.maxHeaders,
      maxPipelinedRequests: http.maxPipelinedRequests,
      minDataRate: http.minDataRate,
      timeouts: http.timeouts,
    }
    const groups = new Map<string, Group>()
    this.health = previous?.health ?? new HealthScheduler()
    for (const [name, group] of model.upstreams) {
      const old = previous?.groups.get(name)
      if (old !== undefined && previous !== null && isDeepStrictEqual(previous.model.upstreams.get(name), group) &&
        previous.model.http.maxHeaderSize === http.maxHeaderSize && previous.model.http.maxHeaders === http.maxHeaders) {
        groups.set(name, old)
        continue
      }
      const created = new Group({
        name,
        targets: group.targets,
        balance: group.policy,
        slowStart: group.slowStart,
        panicThreshold: group.panicThreshold,
        pool: group.pool,
        timeouts: group.timeouts,
        healthCheck: group.healthCheck,
        outlier: group.outlier,
        retries: group.retries,
        limits: group.limits,
        sticky: group.sticky,
        discovery: group.discovery,
        sendProxy: group.sendProxy,
        maxHeaderSize: http.maxHeaderSize,
        maxHeaders: http.maxHeaders,
      }, this, { scheduler: this.health, resolver: group.discovery === null ? undefined : this.#resolverFor(group.discovery, resolver) })
      if (old !== undefined) {
        // discovered targets first: then they are matched like configured ones
        created.takeDiscovered(old)
        created.balancer.takeHealth(old.balancer)
        created.takePools(old)
      }
      groups.set(name, created)
    }
    this.groups = groups
    const context = { groups, filters: userFilters, http }
    this.routes = new Map(model.routes.map(route => [route.name, compileRoute(route, context)]))
    this.#caching = [...this.routes.values()].some(route => route.cache !== null)
    if (previous !== null) {
      this.caps = previous.caps
      this.caps.update(model.limits.maxConnections, model.limits.maxConnectionsPerIp)
    } else {
      this.caps = new ConnectionCaps(model.limits.maxConnections, model.limits.maxConnectionsPerIp)
    }
    const acme = model.listeners.some(listener => listener.tls?.acme != null)
    // challenges under way go on across a reload
    this.acmeChallenges = acme ? (previous?.acmeChallenges ?? new AcmeChallenges()) : null
    this.acmeRoute = this.acmeChallenges === null ? null : acmeChallengeRoute(this.acmeChallenges)
  }

  nextId (): number { return ++this.#ids.n }

  group (name: string): Group {
    const group = this.groups.get(name)
    if (group === undefined) throw new TypeError(`no upstream group named "${name}"`)
    return group
  }

  /** The routes named (all of them, in configuration order, for null); `acme`: HTTP-01 challenges answered first. */
  table (names: readonly string[] | null, acme = false): RouteTable {
    const all = [...this.routes.values()]
    return new RouteTable(names === null ? all : all.filter(route => names.includes(route.name)), acme ? this.acmeRoute : null)
  }

  /** @param secure the client reached rp4 over TLS that rp4 terminated */
  forwardContext (ip: string, secure: boolean): ForwardContext {
    const contexts = secure ? this.#tlsContexts : this.#contexts
    let ctx = contexts.get(ip)
    if (ctx === undefined) {
      if (contexts.size > 4096) contexts.clear()
      ctx = { clientIp: ip, proto: secure ? 'https' : 'http', via: this.via, underscores: this.#underscores }
      contexts.set(ip, ctx)
    }
    return ctx
  }

  /**
   * Serve HTTP/1.x on an accepted socket (plain, or a TLSSocket rp4 terminated: `tls`) with `routes`.
   * `initial` holds bytes already read from it (while detecting the protocol); they are parsed
   * first. `headSince`: when the request head in `initial` began, when that was before this
   * hand-over (0: now).
   */
  acceptHttp (socket: Socket, initial: Buffer | null, tls: TlsClient | null, routes: RouteTable, headSince = 0, identity: IdentityHeaders | null = null): H1Connection {
    const client = new H1Connection(this, socket, tls, routes, identity)
    this.clients.add(client)
    if (initial !== null && initial.length > 0) client.onData(initial)
    if (headSince > 0) client.headBeganAt(headSince)
    // a FIN read while the protocol was being told apart: its 'end' event is gone already
    if (socket.readableEnded) client.onEnd()
    return client
  }

  /** Told each time a client connection is forgotten while a drain waits for the last one. */
  drainWatch: (() => void) | null = null

  /** Of `clients`, those parked (downstream/parked.ts). */
  parkedCount = 0

  adopt (client: ParkedClient): void {
    this.clients.add(client)
    this.parkedCount++
  }

  forget (client: ClientConnection): void {
    if (this.clients.delete(client) && client instanceof ParkedClient) this.parkedCount--
    this.drainWatch?.()
    if (this.#onRetired !== null && this.clients.size === 0) this.#retired()
    if (this.closing && this.clients.size === 0) this.#onIdle?.()
  }

  /** Every client connection's next response is its last; idle ones stay open for it. */
  drain (): void {
    this.draining = true
    for (const client of this.clients) client.drain()
  }

  /**
   * A reload replaced this generation: its connections finish what they are doing, each after
   * one more response at most (Connection: close), then its groups that `next` did not take over
   * close their pools. `onRetired` is called once its last client connection is gone.
   */
  retire (next: ProxyCore, onRetired: () => void): void {
    this.#handedOver = next
    this.#onRetired = onRetired
    this.drain()
    if (this.clients.size === 0) this.#retired()
  }

  #handedOver: ProxyCore | null = null

  #retired (): void {
    const done = this.#onRetired
    this.#onRetired = null
    for (const group of this.groups.values()) {
      if (this.#handedOver?.groups.get(group.settings.name) !== group) group.close()
    }
    done?.()
  }

  /** Cut every client connection still open (a drain ran out of time). Returns how many there were. */
  cut (): number {
    const n = this.clients.size
    for (const client of [...this.clients]) {
      client.destroy(new ProxyError('drain_timeout', 'closed by rp4 with a request in flight: the drain time (drainTimeout) ran out', 'internal', 0))
    }
    return n
  }

  /** Stop taking requests: idle clients close now, busy ones after their current responses. */
  shutdown (onIdle: () => void): void {
    this.closing = true
    this.#onIdle = onIdle
    for (const client of [...this.clients]) client.closeWhenIdle()
    for (const group of this.groups.values()) if (this.#handedOver?.groups.get(group.settings.name) !== group) group.close()
    if (this.#handedOver === null) {
      // the latest generation: what every generation shared stops with it
      this.health.close()
      // a query in flight would keep the process alive through its retries
      for (const resolver of this.#resolvers) resolver.cancel()
    }
    if (this.clients.size === 0) onIdle()
  }

  requestStarted (session: Session): void {
    if (this.#events.listenerCount('request') === 0) return
    const { id, request, client } = session
    this.#events.emit('request', { id, method: request.method, url: request.target, client: client.label })
  }

  /** Upstream timings are taken only for somebody who reads them: the metrics, a `response` listener (an access log). */
  get timing (): boolean { return this.#events.metrics !== null || this.#events.listenerCount('response') > 0 }

  responseDone (session: Session): void {
    const meter = this.#events.metrics
    const listened = this.#events.listenerCount('response') > 0
    if (meter === null && !listened) return
    const duration = clock.refresh() - session.started
    const { request } = session
    const cacheStatus = this.#caching ? session.response?.headers.get('cache-status') : undefined
    const cache = cacheStatus === undefined ? '' : cacheOutcome(cacheStatus)
    if (meter !== null) meter.request(session, request.method, duration, cache)
    if (!listened) return
    const { id, client } = session
    const headers = request.headers
    const tls = session.tlsInfo()
    this.#events.emit('response', {
      id,
      method: request.method,
      url: request.target,
      client: client.label,
      status: session.status,
      target: session.status !== 0 && session.target !== null ? session.target : '',
      duration,
      time: Date.now() - duration,
      protocol: `HTTP/${request.versionMajor}.${request.versionMinor}`,
      host: headers.get('host') ?? '',
      referer: headers.get('referer') ?? '',
      userAgent: headers.get('user-agent') ?? '',
      route: session.route,
      bytesIn: session.bytesIn,
      bytesOut: session.bytesOut,
      upstreamConnect: session.upstreamConnect,
      upstreamFirstByte: session.upstreamFirstByte,
      retries: session.retries,
      cache,
      tls: tls.version,
      sni: tls.sni,
    })
  }

  tcpSessionDone (relay: Passthrough, listener: string): void {
    if (this.#events.listenerCount('tcpSession') === 0) return
    const client = relay.client
    const now = Date.now()
    this.#events.emit('tcpSession', {
      time: relay.started,
      client: peerLabel(peerOf(client)),
      listener,
      target: relay.relayedTo,
      bytesIn: client.bytesRead,
      bytesOut: client.bytesWritten,
      duration: now - relay.started,
      sni: relay.sni,
    })
  }

  /** Every failure and refusal by error code, since the proxy started (client and upstream side). */
  readonly errorCounts: Map<string, number>

  upstreamError (error: ProxyError, target: string): void {
    this.errorCounts.set(error.code, (this.errorCounts.get(error.code) ?? 0) + 1)
    if (this.#events.listenerCount('upstreamError') > 0) this.#events.emit('upstreamError', error, target)
  }

  /**
   * TLS handshakes rp4 terminated since the proxy started: `listener\0version\0resumed|full`
   * when completed, `listener\0\0failed:REASON` when not (a handshake costs far more than this).
   */
  readonly tlsCounts: Map<string, number>

  tlsHandshake (listener: string, version: string, resumed: boolean): void {
    const key = `${listener}\0${version}\0${resumed ? 'resumed' : 'full'}`
    this.tlsCounts.set(key, (this.tlsCounts.get(key) ?? 0) + 1)
  }

  tlsFailure (listener: string, reason: string): void {
    const key = `${listener}\0\0failed:${reason}`
    this.tlsCounts.set(key, (this.tlsCounts.get(key) ?? 0) + 1)
  }

  /** Health transitions by reason, since the proxy started. */
  readonly healthCounts: Map<string, number>

  /** Resolvers made for groups' discovery (a resolver the library user gave is theirs to cancel); shared by the generations. */
  readonly #resolvers: Resolver[]

  /** The resolver a group's discovery asks: the one given, or one of its own (its servers, or the system's). */
  #resolverFor (model: DiscoveryModel, given: DnsResolver | undefined): DnsResolver {
    if (given !== undefined) return given
    const resolver = new Resolver()
    if (model.servers.length > 0) resolver.setServers([...model.servers])
    this.#resolvers.push(resolver)
    return resolver
  }

  discovery (event: DiscoveryEvent): void {
    if (this.#events.listenerCount('discovery') > 0) this.#events.emit('discovery', event)
  }

  targetHealth (event: TargetHealthEvent): void {
    this.healthCounts.set(event.reason, (this.healthCounts.get(event.reason) ?? 0) + 1)
    if (this.#events.listenerCount('targetHealth') > 0) this.#events.emit('targetHealth', event)
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

/**
 * The access log's word for a Cache-Status value rp4 set (filters/cache.ts): `hit`, `stale` (a
 * stale entry served), `revalidated` (a stale entry sent to the backend), `miss`; '' otherwise.
 */
function cacheOutcome (status: string): string {
  if (!status.startsWith('rp4;')) return ''
  const stale = status.includes('fwd=stale')
  if (status.startsWith('rp4; hit')) return stale ? 'stale' : 'hit'
  if (stale) return 'revalidated'
  return status.includes('fwd=') ? 'miss' : ''
}
