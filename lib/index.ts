/**
 * rp4's public API: `createProxy(options)` returns a proxy with typed events.
 *
 *   const proxy = createProxy({ listen: ':8080', targets: ['127.0.0.1:3000'] })
 *   proxy.on('response', info => console.log(info.status, info.url))
 *   await proxy.listen()
 *
 * The options are those of a configuration file (the flat form of one proxy, or listeners,
 * routes and upstreams), plus `filters`: the library user's own, with typed hooks.
 */
import type { AddressInfo } from 'node:net'
import { TypedEmitter } from 'tiny-typed-emitter'
import { buildModel } from './config/build.js'
import { isFullForm } from './config/consistency.js'
import { isDeepStrictEqual } from 'node:util'
import type { ListenerModel, Model, RouteModel } from './model/model.js'
import type { Options } from './config/schema.js'
import type { ProxyEvents } from './core/events.js'
import type { DnsResolver } from './upstream/discovery.js'
import { ProxyCore } from './proxy/core.js'
import { ProxyError, describeSystemError } from './core/errors.js'
import { Listener, type ListenerEvents } from './listener/listener.js'
import { TicketKeys, type TicketKeySource } from './tls/ticket-keys.js'
import type { Filter } from './session/filter.js'
import { AccessLog } from './observe/access-log.js'
import { AdminEndpoint } from './admin/admin.js'
import { Metrics } from './observe/metrics.js'

export type { Options } from './config/schema.js'
export type { Model } from './model/model.js'
export type { DiscoveryEvent, ProxyEvents, RequestInfo, ResponseInfo, TargetHealthEvent, TcpSessionInfo } from './core/events.js'
export type { DnsResolver } from './upstream/discovery.js'
export type { ListenerEvents } from './listener/listener.js'
export type { Filter, FilterSession, Verdict, HeaderInit } from './session/filter.js'
export type { RequestHead, ResponseHead } from './http/message.js'
export type { HeaderList } from './http/headers.js'
export { ProxyError, type ErrorSource } from './core/errors.js'
export { ConfigError } from './config/problems.js'
export { buildModel } from './config/build.js'
export { loadConfig } from './config/load.js'
export { parseHostPort, formatHostPort, parseTarget } from './config/address.js'
export { parseCidr } from './admission/access.js'
export { TicketKeys, TICKET_KEY_BYTES, type TicketKeySource } from './tls/ticket-keys.js'

/**
 * What `createProxy` takes: a configuration (either form) and the user's filters. Routes of the
 * full form name the filters they use (`routes[].filters: ['auth']`); in the flat form every
 * filter given applies to the one route, in the order given.
 */
export type ProxyOptions = Options & {
  /** Filters with typed hooks (see `Filter`); a filter a route names needs a `name`. */
  filters?: readonly Filter[]
  /** The DNS that service discovery asks (`discovery` in an upstream group); a `dns.promises.Resolver` by default. */
  resolver?: DnsResolver
  /**
   * ACME on first use: a handshake asked for `name`, which one of a listener's tls.acme.patterns
   * matches and no certificate covers yet. Return true to obtain one (the next handshakes get it).
   * Without this hook, patterns obtain nothing: a stranger's SNI never makes rp4 ask a CA.
   */
  acmeAsk?: (name: string) => boolean | Promise<boolean>
  /**
   * Session ticket keys from outside: every TLS listener takes this source's key and each later
   * one instead of making and rotating its own (tls.ticketKeyRotation then is the source's
   * business). For processes that must accept each other's tickets: a primary holds one
   * `TicketKeys` with the rotation and sends each key it `subscribe`s to to every worker, whose
   * source passes them on. Without it, each listener's keys are its own, kept across reloads.
   */
  ticketKeys?: TicketKeySource
  /**
   * Set by rp4's worker processes (bin/worker.ts), not by a library user: this proxy is one of
   * several. The admin endpoint is the primary's (`admin` is not opened here), metrics are kept
   * for the primary to sum, and TLS listeners take their session ticket keys from `ticketKeys`
   * (the primary's, the same in every worker) instead of making their own.
   */
  worker?: WorkerHooks
}

export interface WorkerHooks {
  /** This worker's number, 1 to N (the `worker` label of its process metrics). */
  id: string
  /** The ticket keys of the listener named `listener` (rotated every `rotation` ms), shared by every worker. */
  ticketKeys (listener: string, rotation: number): TicketKeys
}

/** A configuration replaced by a reload, whose connections are still finishing. */
interface Generation {
  core: ProxyCore
  listeners: readonly Listener[]
}

export class Proxy extends TypedEmitter<ProxyEvents & ListenerEvents> {
  #core: ProxyCore
  #listeners: readonly Listener[]
  readonly #filters: ReadonlyMap<string, Filter>
  /** The library's DNS for service discovery and ACME's ask hook, kept for the generations a reload makes. */
  readonly #resolver: DnsResolver | undefined
  readonly #acmeAsk: ((name: string) => boolean | Promise<boolean>) | undefined
  /** The library's ticket key source, or else each TLS listener's own keys by name, kept across reloads. */
  readonly #ticketSource: TicketKeySource | undefined
  readonly #ownTickets = new Map<string, TicketKeys>()
  readonly #replacedTickets: TicketKeys[] = []
  /** Generations replaced by reloads whose connections are still finishing. */
  readonly #retired = new Set<Generation>()
  #accessLog: AccessLog | null = null
  readonly #admin: AdminEndpoint | null = null
  /** With an admin endpoint, or under workers (where the primary asks for them); null otherwise. */
  readonly metrics: Metrics | null = null
  readonly #worker: WorkerHooks | null
  /** Read the configuration again (the CLI's `rp4 run FILE` sets it); null: nothing to read. */
  reload: (() => Promise<{ ok: true } | { ok: false, problems: string[] }>) | null = null
  #closed: Promise<void> | null = null
  #drained: Promise<{ cut: number }> | null = null
  #listening = false

  constructor (options: ProxyOptions) {
    super()
    const { filters = [], resolver, acmeAsk, ticketKeys, worker, ...config } = (options ?? {}) as ProxyOptions
    if (ticketKeys !== undefined && (typeof ticketKeys !== 'object' || ticketKeys === null || typeof ticketKeys.subscribe !== 'function')) {
      throw new TypeError('option ticketKeys must be a source of session ticket keys: { current: Buffer, subscribe (onKey) }')
    }
    this.#ticketSource = ticketKeys
    this.#worker = worker ?? null
    if (!Array.isArray(filters)) throw new TypeError('option filters must be an array of filters (objects with hooks)')
    const byName = new Map<string, Filter>()
    filters.forEach((filter, i) => {
      if (typeof filter !== 'object' || filter === null) throw new TypeError(`option filters[${i}] must be an object with hooks`)
      const name = filter.name ?? `filter-${i + 1}`
      if (byName.has(name)) throw new TypeError(`option filters[${i}]: a second filter named "${name}"`)
      byName.set(name, filter)
    })
    this.#filters = byName
    this.#resolver = resolver
    this.#acmeAsk = acmeAsk
    const model = modelOf(config, byName)
    this.#core = new ProxyCore(model, this, byName, null, resolver)
    // certificates and access files load here: a file that cannot be used throws now, naming its option
    try {
      this.#listeners = model.listeners.map(listener => this.#listener(this.#core, listener))
    } catch (err) {
      // a certificate that cannot be loaded: the keys made for the listeners before it stop too
      for (const keys of this.#ownTickets.values()) keys.close()
      throw err
    }
    this.#openAccessLog(model)
    if (model.admin !== null || worker !== undefined) {
      // the cores tell it of each request themselves (they read `metrics` as a RequestMeter): no
      // event record is built for it
      const metrics = this.metrics = new Metrics(this, worker?.id ?? null)
      this.on('tcpSession', metrics.tcpSession)
      this.on('targetHealth', metrics.targetHealth)
      if (worker === undefined) this.#admin = new AdminEndpoint(this, model.admin!, metrics)
    }
  }

  /** The configuration in effect (the latest one loaded). */
  get model (): Model {
    return this.#core.model
  }

  #listener (core: ProxyCore, model: ListenerModel): Listener {
    const l = new Listener(core, model, {
      onCertificates: names => this.emit('certificates', names),
      onAcme: message => this.emit('acme', message),
      acmeAsk: this.#acmeAsk,
      ticketKeys: model => this.#ticketKeysFor(model),
    })
    l.server.on('error', err => {
      // an error while listen() is under way is its rejection; after it resolved, errors of the
      // listening socket (accept failures) are reported, never thrown
      if (!l.server.listening) return
      this.#core.proxyError(new ProxyError('listen_error', `listening socket: ${describeSystemError(err)}`, 'internal', 0, false, err))
    })
    return l
  }

  /**
   * A listener's ticket keys: the library's source, or the keys this listener name had before a
   * reload (tickets issued before it still resume after it), new ones when its rotation changed.
   */
  #ticketKeysFor (model: ListenerModel): TicketKeySource {
    if (this.#ticketSource !== undefined) return this.#ticketSource
    const rotation = model.tls?.ticketKeyRotation ?? 0
    // a worker: the keys of this listener name that the primary rotates and sends to every worker
    if (this.#worker !== null) return this.#worker.ticketKeys(model.name, rotation)
    let keys = this.#ownTickets.get(model.name)
    if (keys === undefined || keys.interval !== rotation) {
      // the replaced keys go on rotating for the listeners still following them (a reload that
      // fails keeps those); they stop with the proxy
      if (keys !== undefined) this.#replacedTickets.push(keys)
      keys = new TicketKeys(rotation)
      this.#ownTickets.set(model.name, keys)
    }
    return keys
  }

  #openAccessLog (model: Model): void {
    if (model.accessLog === null) return
    const log = this.#accessLog = new AccessLog(model.accessLog)
    log.onError = err => this.#core.proxyError(new ProxyError('access_log_failed', `access log ${log.model.file}: ${describeSystemError(err)}`, 'internal', 0, false, err))
    this.on('response', log.response)
    this.on('tcpSession', log.tcpSession)
  }

  /**
   * Replace the configuration while running (SIGHUP, the admin /reload). `options` is checked
   * whole first: a problem throws (a ConfigError naming each) and nothing changes. Then new
   * connections get the new configuration at once; connections open under the old one finish
   * what they are doing, each after one more response at most (Connection: close); upstream
   * groups whose configuration did not change go on with their pools and health, and changed
   * groups keep the health of the targets that stay. A listener whose address stays keeps its
   * listening socket (no connection is refused meanwhile), new ones listen, removed ones stop
   * accepting; certificates are read again. Resolves with notes on what a reload cannot change
   * (the admin endpoint's settings apply on restart).
   */
  update (options: Options): Promise<{ notes: string[] }> {
    // one at a time: a second SIGHUP while new listeners are opening waits its turn
    const next = this.#updating.then(() => this.#update(options))
    this.#updating = next.catch(() => {})
    return next
  }

  #updating: Promise<unknown> = Promise.resolve()

  async #update (options: Options): Promise<{ notes: string[] }> {
    if (this.draining) throw new Error('the proxy is draining or closed: nothing to reload')
    if (!this.#listening) throw new Error('reload before listen()')
    const model = modelOf(options, this.#filters)
    const old = this.#core
    const core = new ProxyCore(model, this, this.#filters, old, this.#resolver)
    // certificate and access files load here: one that cannot be used throws before anything changed
    const listeners = model.listeners.map(listener => this.#listener(core, listener))
    const kept = new Map<string, Listener>()
    for (const listener of this.#listeners) kept.set(addressKey(listener.model), listener)
    const fresh = listeners.filter(l => !kept.has(addressKey(l.model)))
    try {
      for (const listener of fresh) await this.#listen(listener)
    } catch (err) {
      for (const listener of fresh) if (listener.server.listening) listener.server.close()
      for (const listener of listeners) listener.retire()
      throw err
    }
    // from here on nothing fails: the new generation takes over
    core.caps.update(model.limits.maxConnections, model.limits.maxConnectionsPerIp)
    for (const listener of listeners) {
      const previous = kept.get(addressKey(listener.model))
      if (previous === undefined) continue
      kept.delete(addressKey(listener.model))
      listener.adopt(previous.server)
    }
    for (const removed of kept.values()) removed.server.close()
    for (const listener of this.#listeners) listener.retire()
    const generation: Generation = { core: old, listeners: this.#listeners }
    this.#retired.add(generation)
    old.retire(core, () => { this.#retired.delete(generation) })
    this.#core = core
    this.#listeners = listeners
    const notes: string[] = []
    if (!isDeepStrictEqual(old.model.accessLog, model.accessLog)) {
      const log = this.#accessLog
      if (log !== null) {
        this.off('response', log.response)
        this.off('tcpSession', log.tcpSession)
        void log.close()
        this.#accessLog = null
      }
      this.#openAccessLog(model)
    }
    if (!isDeepStrictEqual(old.model.admin, model.admin)) notes.push('admin: the admin endpoint keeps its settings until rp4 restarts')
    for (const listener of fresh) this.emit('listening', listener.server.address() as AddressInfo)
    return { notes }
  }

  /** The admin endpoint's address (null without one, or before listen()). */
  adminAddress (): AddressInfo | null {
    return this.#admin?.address() ?? null
  }

  /** Every target of every upstream group: weight, health, connections, requests waiting for one now and that waited since its pool began. */
  upstreams (): Array<{ group: string, target: string, weight: number, open: number, idle: number, waiting: number, waits: number, up: boolean }> {
    return [...this.#core.groups.values()].flatMap(group => group.health().map(h => ({ group: group.settings.name, ...h })))
  }

  /** Open the access log file again under its name (after logrotate moved it: SIGUSR1). */
  reopenLogs (): void {
    this.#accessLog?.reopen()
  }

  /** Start accepting on every listener. Resolves with the first listener's bound address (port 0 picks a free port). */
  async listen (): Promise<AddressInfo> {
    const addresses: AddressInfo[] = []
    try {
      for (const listener of this.#listeners) addresses.push(await this.#listen(listener))
      if (this.#admin !== null) await this.#admin.listen()
    } catch (err) {
      // all or nothing: the ones already listening stop
      for (const listener of this.#listeners) if (listener.server.listening) listener.server.close()
      throw err
    }
    this.#listening = true
    for (const address of addresses) this.emit('listening', address)
    // ACME needs the listeners up: a CA validates a challenge as soon as it is told to
    for (const listener of this.#listeners) listener.started()
    return addresses[0]
  }

  #listen (listener: Listener): Promise<AddressInfo> {
    const { host, port } = listener.model.listen
    const server = listener.server
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err)
      server.once('error', onError)
      // no host: every interface, IPv6 and IPv4 (dual stack) where the system has IPv6
      server.listen(host === '' ? { port } : { host, port }, () => {
        server.removeListener('error', onError)
        resolve(server.address() as AddressInfo)
      })
    })
  }

  /** The first listener's address (null before listen()). */
  address (): AddressInfo | null {
    return this.#listeners[0]?.server.address() as AddressInfo | null
  }

  /** Every listener's address, in configuration order, by name. */
  addresses (): Array<{ name: string, address: AddressInfo | null }> {
    return this.#listeners.map(l => ({ name: l.model.name, address: l.server.address() as AddressInfo | null }))
  }

  /**
   * Open connections: every accepted client connection counted by the caps, HTTP clients, raw TCP
   * relays (passthrough, relayed TLS), and upstream per target of every group: its connections,
   * what it carries now (`active`: requests or relays) and whether it is in rotation (`up`).
   * `health`: the targets' transitions out of and back into rotation since start, by reason.
   * `groups`: per group since start, retries sent, retries the budget refused, requests the
   * circuit breaker answered with 503. `tlsSessions`: per listener with a session cache, what it
   * holds now and its stores, hits and misses since start. `tls`: handshakes terminated since start, by
   * listener, version and whether the session was resumed, and those that failed, by reason.
   */
  stats (): { connections: number, clients: number, parked: number, tcp: number, errors: Record<string, number>, health: Record<string, number>, upstream: Array<{ group: string, target: string, open: number, idle: number, active: number, up: boolean }>, groups: Array<{ group: string, retries: number, budgetExhausted: number, circuitOpen: number }>, accessLog: { written: number, dropped: number } | null, caches: Array<{ route: string, entries: number, bytes: number, loading: boolean, loaded: number, dropped: number }>, tlsSessions: Array<{ listener: string, entries: number, bytes: number, stored: number, hits: number, misses: number }>, tls: { handshakes: Array<{ listener: string, version: string, resumed: boolean, count: number }>, failures: Array<{ listener: string, reason: string, count: number }> } } {
    const log = this.#accessLog
    const tls: { handshakes: Array<{ listener: string, version: string, resumed: boolean, count: number }>, failures: Array<{ listener: string, reason: string, count: number }> } = { handshakes: [], failures: [] }
    for (const [key, count] of this.#core.tlsCounts) {
      const [listener, version, outcome] = key.split('\0')
      if (outcome.startsWith('failed:')) tls.failures.push({ listener, reason: outcome.slice(7), count })
      else tls.handshakes.push({ listener, version, resumed: outcome === 'resumed', count })
    }
    return {
      tls,
      accessLog: log === null ? null : { written: log.written, dropped: log.dropped },
      connections: this.#core.caps.open,
      clients: this.#cores().reduce((n, core) => n + core.clients.size, 0),
      parked: this.#cores().reduce((n, core) => n + core.parkedCount, 0),
      tcp: this.#allListeners().reduce((n, l) => n + l.tunnelCount, 0),
      errors: Object.fromEntries(this.#core.errorCounts),
      health: Object.fromEntries(this.#core.healthCounts),
      upstream: [...this.#core.groups.values()].flatMap(group => group.stats().map(s => ({ group: group.settings.name, ...s }))),
      groups: [...this.#core.groups.values()].map(group => ({ group: group.settings.name, ...group.counts })),
      caches: [...this.#core.routes.values()].flatMap(route => route.cache === null ? [] : [{
        route: route.name,
        entries: route.cache.store.count,
        bytes: route.cache.store.bytes,
        // the disk store: still reading its directory back, and what it loaded and dropped
        loading: route.cache.disk?.loading ?? false,
        loaded: route.cache.disk?.loaded ?? 0,
        dropped: route.cache.disk?.dropped ?? 0,
      }]),
      // the TLS 1.2 session-ID cache of each listener that has one (tls.sessionCache)
      tlsSessions: this.#listeners.flatMap(l => l.sessions === null ? [] : [{
        listener: l.model.name,
        entries: l.sessions.count,
        bytes: l.sessions.bytes,
        stored: l.sessions.stored,
        hits: l.sessions.hits,
        misses: l.sessions.misses,
      }]),
    }
  }

  /**
   * Ready for traffic: listening, and neither draining nor closing. What /readyz answers, so that
   * an outer balancer stops sending at the first moment of a drain.
   */
  get ready (): boolean {
    return this.#listening && this.#drained === null && this.#closed === null
  }

  /** A drain or close has begun. */
  get draining (): boolean {
    return this.#drained !== null || this.#closed !== null
  }

  /**
   * Drain (SIGTERM): stop accepting at once, answer every request still coming on open
   * connections with `Connection: close`, and give requests in flight `timeout` ms (the
   * `drainTimeout` option by default) to finish; then close, cutting what is still open.
   * Resolves with how many client connections had to be cut.
   */
  drain (timeout = this.model.drainTimeout): Promise<{ cut: number }> {
    if (this.#drained !== null) return this.#drained
    this.#drained = new Promise(resolve => {
      const cores = this.#cores()
      for (const core of cores) core.drain()
      const delay = this.model.drainDelay
      if (delay > 0) setTimeout(() => this.#stopAccepting(cores, timeout, resolve), delay)
      else this.#stopAccepting(cores, timeout, resolve)
    })
    return this.#drained
  }

  /** The second half of a drain: the listeners close, the connections get `timeout` to finish. */
  #stopAccepting (cores: ProxyCore[], timeout: number, resolve: (result: { cut: number }) => void): void {
    for (const listener of this.#listeners) {
      if (listener.server.listening) listener.server.close()
    }
    // connections accepted during the delay belong to the current generation, draining too
    if (!cores.includes(this.#core)) cores.push(this.#core)
    const open = (): number => cores.reduce((n, core) => n + core.clients.size, 0)
    let timer: NodeJS.Timeout | null = null
    const finish = (cut: number): void => {
      if (timer !== null) clearTimeout(timer)
      for (const core of cores) core.drainWatch = null
      void this.close().then(() => resolve({ cut }))
    }
    if (open() === 0) return finish(0)
    for (const core of cores) core.drainWatch = () => { if (open() === 0) finish(0) }
    timer = setTimeout(() => finish(cores.reduce((n, core) => n + core.cut(), 0)), timeout)
  }

  /** The configuration in effect first, then those replaced by reloads whose connections are still finishing. */
  #cores (): ProxyCore[] {
    return [this.#core, ...[...this.#retired].map(g => g.core)]
  }

  #allListeners (): Listener[] {
    return [...this.#listeners, ...[...this.#retired].flatMap(g => g.listeners)]
  }

  /**
   * Remove a URL from every route's response cache, with all its variants: `http://host/path?query`
   * as clients ask for it (scheme, the Host they send, the target). Returns how many entries went.
   */
  purge (url: string): number {
    let n = 0
    for (const route of this.#core.routes.values()) n += route.cache?.purge(url) ?? 0
    return n
  }

  /** Remove every cached URL starting with `prefix` (`http://host/assets/`); how many entries went. */
  purgePrefix (prefix: string): number {
    let n = 0
    for (const route of this.#core.routes.values()) n += route.cache?.purgePrefix(prefix) ?? 0
    return n
  }

  /** Stop accepting; requests in flight finish, idle connections close. Resolves once all are closed. */
  close (): Promise<void> {
    if (this.#closed !== null) return this.#closed
    this.#closed = new Promise(resolve => {
      const retired = [...this.#retired]
      let pending = this.#listeners.length + 1 + retired.reduce((n, g) => n + g.listeners.length + 1, 0)
      const done = (): void => {
        if (--pending === 0) {
          // the admin endpoint answers /readyz (503) until the proxy has closed
          const admin = this.#admin === null ? Promise.resolve() : this.#admin.close()
          // the last lines (those of the requests just finished) are written before close() resolves
          const log = this.#accessLog === null ? Promise.resolve() : this.#accessLog.close()
          void Promise.all([admin, log]).then(() => {
            this.emit('close')
            resolve()
          })
        }
      }
      for (const listener of this.#allListeners()) {
        if (listener.server.listening && this.#listeners.includes(listener)) listener.server.close(() => done())
        else done()
        listener.close()
      }
      for (const keys of [...this.#ownTickets.values(), ...this.#replacedTickets]) keys.close()
      this.#core.shutdown(done)
      for (const generation of retired) generation.core.shutdown(done)
    })
    return this.#closed
  }
}

/** The model of `config`; in the flat form, the user's filters go on its one route, in the order given. */
function modelOf (config: Options, filters: ReadonlyMap<string, Filter>): Model {
  const model = buildModel(config, { filters: filters.keys() })
  if (isFullForm(config as Record<string, unknown>) || filters.size === 0) return model
  const user = [...filters.keys()].map(name => Object.freeze({ kind: 'user' as const, name }))
  return Object.freeze({
    ...model,
    routes: Object.freeze(model.routes.map((route): RouteModel => Object.freeze({ ...route, filters: Object.freeze([...route.filters, ...user]) }))),
  })
}

/** What decides whether a reloaded listener takes over a running one's socket: its address as configured. */
function addressKey (model: ListenerModel): string {
  return `${model.listen.host}|${model.listen.port}`
}

export function createProxy (options: ProxyOptions): Proxy {
  return new Proxy(options)
}
