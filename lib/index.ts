/**
 * rp4's public API: `createProxy(options)` returns a proxy with typed events.
 *
 *   const proxy = createProxy({ listen: ':8080', targets: ['127.0.0.1:3000'] })
 *   proxy.on('response', info => console.log(info.status, info.url))
 *   await proxy.listen()
 */
import type { AddressInfo, Server } from 'node:net'
import { TypedEmitter } from 'tiny-typed-emitter'
import { resolveConfig, type Config } from './config/resolve.js'
import type { ProxyOptions } from './config/options.js'
import type { ProxyEvents } from './core/events.js'
import { ProxyCore } from './proxy/core.js'
import { ProxyError, describeSystemError } from './core/errors.js'
import { Listener, type ListenerEvents } from './listener/listener.js'

export type { ProxyOptions, TimeoutOptions, UpstreamOptions, TlsOptions, UpstreamTlsOptions, CertificateFiles, AccessOptions, LimitOptions } from './config/options.js'
export type { ProxyEvents, RequestInfo, ResponseInfo } from './core/events.js'
export type { ListenerEvents } from './listener/listener.js'
export type { Config } from './config/resolve.js'
export { ProxyError, type ErrorSource } from './core/errors.js'
export { resolveConfig, parseTarget, DEFAULT_TIMEOUTS, DEFAULT_UPSTREAM, DEFAULT_TLS, DEFAULT_LIMITS, DEFAULTS } from './config/resolve.js'
export { parseHostPort, formatHostPort } from './config/address.js'
export { parseCidr } from './listener/access.js'

export class Proxy extends TypedEmitter<ProxyEvents & ListenerEvents> {
  readonly config: Config
  readonly #core: ProxyCore
  readonly #listener: Listener
  readonly #server: Server
  #closed: Promise<void> | null = null

  constructor (options: ProxyOptions) {
    super()
    this.config = resolveConfig(options)
    this.#core = new ProxyCore(this.config, this)
    // certificates load here: a file that cannot be used throws now, naming its option
    this.#listener = new Listener(this.#core, { onCertificates: names => this.emit('certificates', names) })
    this.#server = this.#listener.server
    this.#server.on('error', err => {
      // an error while listen() is under way is its rejection; after it resolved, errors of the
      // listening socket (accept failures) are reported, never thrown
      if (!this.#server.listening) return
      this.#core.proxyError(new ProxyError('listen_error', `listening socket: ${describeSystemError(err)}`, 'internal', 0, false, err))
    })
  }

  /** Start accepting. Resolves with the bound address (port 0 picks a free port). */
  listen (): Promise<AddressInfo> {
    const { host, port } = this.config.listen
    return new Promise((resolve, reject) => {
      const server = this.#server
      const onError = (err: Error): void => reject(err)
      server.once('error', onError)
      // no host: every interface, IPv6 and IPv4 (dual stack) where the system has IPv6
      server.listen(host === '' ? { port } : { host, port }, () => {
        server.removeListener('error', onError)
        const address = server.address() as AddressInfo
        this.emit('listening', address)
        resolve(address)
      })
    })
  }

  address (): AddressInfo | null {
    return this.#server.address() as AddressInfo | null
  }

  /**
   * Open connections: every accepted client connection counted by the caps, HTTP clients, raw TCP
   * relays (passthrough, relayed TLS), and upstream per target.
   */
  stats (): { connections: number, clients: number, tcp: number, errors: Record<string, number>, upstream: Array<{ target: string, open: number, idle: number }> } {
    return {
      connections: this.#listener.connectionCount,
      clients: this.#core.clients.size,
      tcp: this.#listener.tunnelCount,
      errors: Object.fromEntries(this.#core.errorCounts),
      upstream: this.#core.group.stats(),
    }
  }

  /** Stop accepting; requests in flight finish, idle connections close. Resolves once all are closed. */
  close (): Promise<void> {
    if (this.#closed !== null) return this.#closed
    this.#closed = new Promise(resolve => {
      let pending = 2
      const done = (): void => {
        if (--pending === 0) {
          this.emit('close')
          resolve()
        }
      }
      if (this.#server.listening) this.#server.close(() => done())
      else done()
      this.#listener.close()
      this.#core.shutdown(done)
    })
    return this.#closed
  }
}

export function createProxy (options: ProxyOptions): Proxy {
  return new Proxy(options)
}
