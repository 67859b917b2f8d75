/**
 * The admin endpoint: a listener of its own, on loopback unless told otherwise, served by rp4's
 * own engine (a one-route configuration whose filter answers every request), so that it gets the
 * same parsing, limits and timeouts as any other listener and no second HTTP stack.
 *
 *   GET  /healthz     200 while the process serves (no token needed: a probe may not send one)
 *   GET  /readyz      200 while accepting traffic, 503 from the first moment of a drain (no token)
 *   GET  /metrics     Prometheus text
 *   GET  /config      the configuration in effect, as JSON, secrets redacted
 *   GET  /upstreams   every target with its health, connections, pool waits and weight
 *   POST /drain       start a drain, as SIGTERM does (the process exits once it ends under the CLI)
 *   POST /reload      read the configuration file again, as SIGHUP does (when the proxy has one)
 *
 * With a token, every request but /healthz and /readyz must carry `Authorization: Bearer TOKEN`
 * (compared in constant time); without one, anyone who can connect may drain the proxy, which
 * is why the endpoint listens on 127.0.0.1 by default.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { TypedEmitter } from 'tiny-typed-emitter'
import { buildModel } from '../config/build.js'
import { formatHostPort } from '../config/address.js'
import type { ProxyEvents } from '../core/events.js'
import { Listener } from '../listener/listener.js'
import type { AdminModel, Model } from '../model/model.js'
import { ProxyCore } from '../proxy/core.js'
import type { Filter, FilterSession, Verdict } from '../session/filter.js'

/** One target as /upstreams shows it. */
export interface UpstreamState { group: string, target: string, weight: number, open: number, idle: number, waiting: number, up: boolean }

/** What answers /metrics: one process's metrics, or the primary's sum over its workers. */
export interface MetricsText {
  text (): Promise<{ contentType: string, body: string }>
}

/**
 * What the admin endpoint sees of the proxy it serves: a `Proxy`, or the primary of workers
 * (bin/primary.ts), which asks its workers (hence a promise may come back).
 */
export interface AdminSubject {
  readonly model: Model
  readonly ready: boolean
  upstreams (): UpstreamState[] | Promise<UpstreamState[]>
  readonly draining: boolean
  drain (): Promise<{ cut: number }>
  /** Null when the proxy has no file to read again (built from an options object). */
  readonly reload: (() => Promise<{ ok: true } | { ok: false, problems: string[] }>) | null
}

const JSON_TYPE = 'application/json'
const TEXT_TYPE = 'text/plain; charset=utf-8'

/** Keys whose values are secrets wherever they appear in the configuration. */
const SECRET_KEYS = new Set(['key', 'pfx', 'passphrase', 'token', 'cert'])

/** The model as JSON: maps as objects, sets as lists, secrets and key material replaced. */
export function redactedConfig (model: Model): string {
  return JSON.stringify(model, (key, value: unknown) => {
    if (SECRET_KEYS.has(key) && value !== null && value !== undefined && typeof value !== 'boolean') {
      // a certificate's file name is not secret; what was read from it is not shown either way
      return typeof value === 'string' && key === 'cert' ? value : '[redacted]'
    }
    if (value instanceof Map) return Object.fromEntries(value)
    if (value instanceof Set) return [...value]
    if (value instanceof RegExp) return value.source
    if (typeof value === 'object' && value !== null && (value as { type?: string }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
      return `[${(value as { data: unknown[] }).data.length} bytes]`
    }
    return value
  }, 2) + '\n'
}

function digest (value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

export class AdminEndpoint {
  readonly model: Readonly<AdminModel>
  readonly metrics: MetricsText
  readonly #subject: AdminSubject
  readonly #core: ProxyCore
  readonly #listener: Listener
  readonly #token: Buffer | null

  constructor (subject: AdminSubject, model: Readonly<AdminModel>, metrics: MetricsText) {
    this.model = model
    this.#subject = subject
    this.#token = model.token === null ? null : digest(model.token)
    this.metrics = metrics
    const filter: Filter = { name: 'admin', onRequest: session => this.#answer(session) }
    const config = buildModel({
      listeners: [{ name: 'admin', listen: formatHostPort(model.listen.host, model.listen.port) }],
      routes: [{ name: 'admin', respond: { status: 404 }, filters: ['admin'] }],
      // an admin request is small and quick: nothing here waits long for a slow client
      http: { maxHeaderSize: '16k', timeouts: { requestHead: '5s', clientIdle: '30s', requestBody: '5s' } },
    }, { filters: ['admin'] })
    // the admin listener's own requests are neither metered nor logged
    this.#core = new ProxyCore(config, Object.assign(new TypedEmitter<ProxyEvents>(), { metrics: null }), new Map([['admin', filter]]))
    this.#listener = new Listener(this.#core, config.listeners[0], { onCertificates: () => {} })
  }

  listen (): Promise<AddressInfo> {
    const server = this.#listener.server
    const { host, port } = this.model.listen
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host, port }, () => {
        server.removeListener('error', reject)
        resolve(server.address() as AddressInfo)
      })
    })
  }

  address (): AddressInfo | null {
    return this.#listener.server.address() as AddressInfo | null
  }

  close (): Promise<void> {
    return new Promise(resolve => {
      let pending = 2
      const done = (): void => { if (--pending === 0) resolve() }
      const server = this.#listener.server
      if (server.listening) server.close(() => done())
      else done()
      this.#listener.close()
      this.#core.shutdown(done)
    })
  }

  #authorized (session: FilterSession): boolean {
    if (this.#token === null) return true
    const header = session.request.headers.get('authorization') ?? ''
    const m = /^Bearer +(\S+) *$/i.exec(header)
    return m !== null && timingSafeEqual(digest(m[1]), this.#token)
  }

  #answer (session: FilterSession): Verdict | Promise<Verdict> {
    const { method, path } = session.request
    const subject = this.#subject
    if (path === '/healthz') return only(session, 'GET', () => session.respond(200, { 'Content-Type': TEXT_TYPE }, 'ok\n'))
    if (path === '/readyz') {
      return only(session, 'GET', () => subject.ready
        ? session.respond(200, { 'Content-Type': TEXT_TYPE }, 'ready\n')
        : session.respond(503, { 'Content-Type': TEXT_TYPE }, subject.draining ? 'draining\n' : 'not listening\n'))
    }
    if (!this.#authorized(session)) {
      return session.respond(401, { 'Content-Type': TEXT_TYPE, 'WWW-Authenticate': 'Bearer realm="rp4 admin"' }, 'a bearer token is required (admin.token)\n')
    }
    switch (path) {
      case '/metrics':
        if (method !== 'GET') return notAllowed(session, 'GET')
        return this.metrics.text().then(({ contentType, body }) => session.respond(200, { 'Content-Type': contentType }, body))
      case '/config':
        return only(session, 'GET', () => session.respond(200, { 'Content-Type': JSON_TYPE }, redactedConfig(subject.model)))
      case '/upstreams': {
        if (method !== 'GET' && method !== 'HEAD') return notAllowed(session, 'GET')
        const answer = (list: UpstreamState[]): Verdict => session.respond(200, { 'Content-Type': JSON_TYPE }, JSON.stringify(groupsOf(list), null, 2) + '\n')
        const list = subject.upstreams()
        return Array.isArray(list) ? answer(list) : list.then(answer, (err: Error) => session.respond(503, { 'Content-Type': TEXT_TYPE }, `${err.message}\n`))
      }
      case '/drain':
        if (method !== 'POST') return notAllowed(session, 'POST')
        void subject.drain()
        return session.respond(202, { 'Content-Type': TEXT_TYPE }, `draining: up to ${subject.model.drainTimeout / 1000}s for requests in flight\n`)
      case '/reload': {
        if (method !== 'POST') return notAllowed(session, 'POST')
        const reload = subject.reload
        if (reload === null) return session.respond(409, { 'Content-Type': TEXT_TYPE }, 'this proxy has no configuration file to read again\n')
        return reload().then(result => result.ok
          ? session.respond(200, { 'Content-Type': TEXT_TYPE }, 'reloaded\n')
          : session.respond(422, { 'Content-Type': TEXT_TYPE }, 'not reloaded, the running configuration stays:\n' + result.problems.join('\n') + '\n'))
      }
    }
    return session.respond(404, { 'Content-Type': TEXT_TYPE }, 'not found: /healthz /readyz /metrics /config /upstreams /drain /reload\n')
  }
}

function only (session: FilterSession, method: string, answer: () => Verdict): Verdict {
  const asked = session.request.method
  if (asked === method || (method === 'GET' && asked === 'HEAD')) return answer()
  return notAllowed(session, method)
}

function notAllowed (session: FilterSession, method: string): Verdict {
  return session.respond(405, { 'Content-Type': TEXT_TYPE, Allow: method === 'GET' ? 'GET, HEAD' : method }, `${session.request.path}: ${method} only\n`)
}

function groupsOf (list: UpstreamState[]): Record<string, Array<{ target: string, weight: number, up: boolean, open: number, idle: number, waiting: number }>> {
  const groups: Record<string, Array<{ target: string, weight: number, up: boolean, open: number, idle: number, waiting: number }>> = {}
  for (const u of list) {
    (groups[u.group] ??= []).push({ target: u.target, weight: u.weight, up: u.up, open: u.open, idle: u.idle, waiting: u.waiting })
  }
  return groups
}
