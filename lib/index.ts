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
import type { Model, RouteModel } from './model/model.js'
import type { Options } from './config/schema.js'
import type { ProxyEvents } from './core/events.js'
import { ProxyCore } from './proxy/core.js'
import { ProxyError, describeSystemError } from './core/errors.js'
import { Listener, type ListenerEvents } from './listener/listener.js'
import type { Filter } from './session/filter.js'

export type { Options } from './config/schema.js'
export type { Model } from './model/model.js'
export type { ProxyEvents, RequestInfo, ResponseInfo } from './core/events.js'
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

/**
 * What `createProxy` takes: a configuration (either form) and the user's filters. Routes of the
 * full form name the filters they use (`routes[].filters: ['auth']`); in the flat form every
 * filter given applies to the one route, in the order given.
 */
export type ProxyOptions = Options & {
  /** Filters with typed hooks (see `Filter`); a filter a route names needs a `name`. */
  filters?: readonly Filter[]
}

export class Proxy extends TypedEmitter<ProxyEvents & ListenerEvents> {
  readonly model: Model
  readonly #core: ProxyCore
  readonly #listeners: readonly Listener[]
  #closed: Promise<void> | null = null

  constructor (options: ProxyOptions) {
    super()
    const { filters = [], ...config } = (options ?? {}) as ProxyOptions
    if (!Array.isArray(filters)) throw new TypeError('option filters must be an array of filters (objects with hooks)')
    const byName = new Map<string, Filter>()
    filters.forEach((filter, i) => {
      if (typeof filter !== 'object' || filter === null) throw new TypeError(`option filters[${i}] must be an object with hooks`)
      const name = filter.name ?? `filter-${i + 1}`
      if (byName.has(name)) throw new TypeError(`option filters[${i}]: a second filter named "${name}"`)
      byName.set(name, filter)
    })
    let model = buildModel(config, { filters: byName.keys() })
    if (!isFullForm(config as Record<string, unknown>) && byName.size > 0) {
      // the flat form's one route takes every filter, in the order given
      const user = [...byName.keys()].map(name => Object.freeze({ kind: 'user' as const, name }))
      model = Object.freeze({
        ...model,
        routes: Object.freeze(model.routes.map((route): RouteModel => Object.freeze({ ...route, filters: Object.freeze([...route.filters, ...user]) }))),
      })
    }
    this.model = model
    this.#core = new ProxyCore(model, this, byName)
    // certificates and access files load here: a file that cannot be used throws now, naming its option
    this.#listeners = model.listeners.map(listener => {
      const l = new Listener(this.#core, listener, { onCertificates: names => this.emit('certificates', names) })
      l.server.on('error', err => {
        // an error while listen() is under way is its rejection; after it resolved, errors of the
        // listening socket (accept failures) are reported, never thrown
        if (!l.server.listening) return
        this.#core.proxyError(new ProxyError('listen_error', `listening socket: ${describeSystemError(err)}`, 'internal', 0, false, err))
      })
      return l
    })
  }

  /** Start accepting on every listener. Resolves with the first listener's bound address (port 0 picks a free port). */
  async listen (): Promise<AddressInfo> {
    const addresses: AddressInfo[] = []
    try {
      for (const listener of this.#listeners) addresses.push(await this.#listen(listener))
    } catch (err) {
      // all or nothing: the ones already listening stop
      for (const listener of this.#listeners) if (listener.server.listening) listener.server.close()
      throw err
    }
    for (const address of addresses) this.emit('listening', address)
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
   * relays (passthrough, relayed TLS), and upstream per target of every group.
   */
  stats (): { connections: number, clients: number, tcp: number, errors: Record<string, number>, upstream: Array<{ group: string, target: string, open: number, idle: number }>, caches: Array<{ route: string, entries: number, bytes: number, loading: boolean, loaded: number, dropped: number }> } {
    return {
      connections: this.#core.caps.open,
      clients: this.#core.clients.size,
      tcp: this.#listeners.reduce((n, l) => n + l.tunnelCount, 0),
      errors: Object.fromEntries(this.#core.errorCounts),
      upstream: [...this.#core.groups.values()].flatMap(group => group.stats().map(s => ({ group: group.settings.name, ...s }))),
      caches: [...this.#core.routes.values()].flatMap(route => route.cache === null ? [] : [{
        route: route.name,
        entries: route.cache.store.count,
        bytes: route.cache.store.bytes,
        // the disk store: still reading its directory back, and what it loaded and dropped
        loading: route.cache.disk?.loading ?? false,
        loaded: route.cache.disk?.loaded ?? 0,
        dropped: route.cache.disk?.dropped ?? 0,
      }]),
    }
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
      let pending = this.#listeners.length + 1
      const done = (): void => {
        if (--pending === 0) {
          this.emit('close')
          resolve()
        }
      }
      for (const listener of this.#listeners) {
        if (listener.server.listening) listener.server.close(() => done())
        else done()
        listener.close()
      }
      this.#core.shutdown(done)
    })
    return this.#closed
  }
}

export function createProxy (options: ProxyOptions): Proxy {
  return new Proxy(options)
}
