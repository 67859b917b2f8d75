/**
 * The listening socket, and the path each accepted connection takes. With `tcp`, every connection
 * is relayed raw to the targets. Otherwise the first bytes decide, per connection:
 *
 *   an HTTP/1.x request line  → the HTTP engine
 *   a TLS ClientHello         → its SNI is read without terminating; a name routed by
 *                               `tls.passthrough` is relayed raw to its backend; otherwise rp4
 *                               terminates with the matching certificate (the first pair by
 *                               default) and serves HTTP inside; with no certificate at all, the
 *                               TLS stream is relayed raw to the targets
 *   anything else, or nothing within `timeouts.detect` (the client waits for a server greeting)
 *                             → relayed raw to `tcpFallback`; when it is disabled, other bytes
 *                               close the connection and a silent client goes to the HTTP engine
 *
 * Bytes read while deciding are never lost: the chosen path gets them first.
 */
import net, { type Server, type Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { Config } from '../config/resolve.js'
import { clock, type Timed } from '../core/clock.js'
import { ProxyError } from '../core/errors.js'
import { kOwner } from '../core/symbols.js'
import type { ProxyCore } from '../proxy/core.js'
import { Passthrough, type PassthroughHost } from '../tcp/passthrough.js'
import { Balancer } from '../upstream/balancer.js'
import { CertificateStore } from '../tls/certificates.js'
import { HelloStatus, parseClientHello } from '../tls/client-hello.js'
import { Handshake, type HandshakeHost } from '../tls/terminate.js'
import { sniff, Verdict } from './sniff.js'
import { AccessControl, parseAddress } from './access.js'
import { Admission, ConnectionCaps } from './caps.js'

/** How often an access file is checked for changes, ms. */
const ACCESS_RELOAD_INTERVAL = 2000

/** Events of the listener, on top of the engine's. */
export interface ListenerEvents {
  /** Certificates were loaded (at start) or reloaded from disk: every name they cover. */
  certificates: (names: string[]) => void
}

export interface ListenerHooks {
  onCertificates (names: string[]): void
}

const enum Phase { SNIFF, HELLO }

interface OwnedSocket extends Socket { [kOwner]: Detection }

/** `IP:PORT` of a client, as the HTTP engine labels it in events. */
function label (socket: Socket): string {
  const address = socket.remoteAddress ?? ''
  const ip = address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
  return (ip.includes(':') ? '[' + ip + ']' : ip) + ':' + (socket.remotePort ?? 0)
}

/** One accepted connection whose protocol is not known yet. */
class Detection implements Timed {
  readonly listener: Listener
  readonly socket: OwnedSocket
  /** Everything read so far: bounded by the sniffer's longest method, then by the ClientHello limit. */
  data: Buffer = Buffer.alloc(0)
  phase = Phase.SNIFF
  deadline = 0

  constructor (listener: Listener, socket: Socket, detectMs: number) {
    this.listener = listener
    this.socket = socket as OwnedSocket
    this.socket[kOwner] = this
    socket.on('data', onDetectData)
    socket.on('end', onDetectEnd)
    socket.on('error', onDetectError)
    socket.on('close', onDetectClose)
    this.deadline = clock.after(detectMs)
    clock.add(this)
  }

  onData (chunk: Buffer): void {
    this.data = this.data.length === 0 ? chunk : Buffer.concat([this.data, chunk])
    if (this.phase === Phase.SNIFF) {
      const verdict = sniff(this.data)
      if (verdict === Verdict.MORE) return
      if (verdict === Verdict.HTTP) return this.listener.toHttp(this)
      if (verdict === Verdict.OTHER) return this.listener.toOther(this)
      this.phase = Phase.HELLO
      this.deadline = clock.after(this.listener.config.timeouts.tlsHandshake)
    }
    const hello = parseClientHello(this.data)
    if (hello.status === HelloStatus.MORE) return
    if (hello.status === HelloStatus.INVALID) return this.fail('tls_bad_client_hello', `unusable TLS ClientHello: ${hello.reason}`)
    this.listener.toTls(this, hello.serverName)
  }

  /** The client half-closed before a verdict. */
  onEnd (): void {
    if (this.phase === Phase.HELLO) return this.fail('tls_bad_client_hello', 'client closed before a complete TLS ClientHello')
    if (this.data.length === 0) return this.listener.drop(this)
    this.listener.toOther(this)
  }

  onTimeout (): void {
    if (this.phase === Phase.HELLO) return this.fail('tls_hello_timeout', 'no complete TLS ClientHello in time')
    // silent: without a fallback, most likely an HTTP client that connected ahead of its first
    // request (browsers preconnect); the engine's own timeouts apply from here
    if (this.data.length === 0 && !this.listener.hasFallback) return this.listener.toHttp(this)
    // a server-first protocol, or the beginning of something that is not finishing
    this.listener.toOther(this)
  }

  fail (code: string, message: string): void {
    this.listener.core.clientError(new ProxyError(code, message, 'downstream', 0), label(this.socket))
    this.listener.drop(this)
  }

  /** Hand the socket over: no listener of the detection stays on it. */
  release (): void {
    const socket = this.socket
    clock.delete(this)
    socket.removeListener('data', onDetectData)
    socket.removeListener('end', onDetectEnd)
    socket.removeListener('error', onDetectError)
    socket.removeListener('close', onDetectClose)
    this.listener.detecting.delete(this)
  }
}

function onDetectData (this: OwnedSocket, chunk: Buffer): void { this[kOwner].onData(chunk) }
function onDetectEnd (this: OwnedSocket): void { this[kOwner].onEnd() }
function onDetectError (): void { /* 'close' follows */ }
function onDetectClose (this: OwnedSocket): void { this[kOwner].release() }

/** Server names mapped to backends: exact names, and `*.domain` for one more label. */
class SniRoutes {
  readonly exact = new Map<string, Balancer>()
  readonly wildcard = new Map<string, Balancer>()

  constructor (config: Config) {
    for (const route of config.tls.passthrough) {
      const group = new Balancer([route.target], config.timeouts.failedTarget)
      if (route.name.startsWith('*.')) this.wildcard.set(route.name.slice(2), group)
      else this.exact.set(route.name, group)
    }
  }

  get size (): number { return this.exact.size + this.wildcard.size }

  find (name: string): Balancer | undefined {
    const found = this.exact.get(name)
    if (found !== undefined) return found
    const dot = name.indexOf('.')
    return dot > 0 ? this.wildcard.get(name.slice(dot + 1)) : undefined
  }
}

export class Listener implements PassthroughHost, HandshakeHost {
  readonly server: Server
  readonly core: ProxyCore
  readonly config: Config
  readonly certificates: CertificateStore | null
  readonly detecting = new Set<Detection>()
  readonly #handshakes = new Set<Handshake>()
  readonly #tunnels = new Set<Passthrough>()
  readonly #targets: Balancer
  readonly #fallback: Balancer | null
  readonly #routes: SniRoutes
  readonly #access: AccessControl | null
  readonly #caps: ConnectionCaps

  constructor (core: ProxyCore, hooks: ListenerHooks) {
    this.core = core
    const config = this.config = core.config
    this.#targets = new Balancer(config.targets, config.timeouts.failedTarget)
    this.#fallback = config.tcpFallback === null ? null : new Balancer(config.tcpFallback, config.timeouts.failedTarget)
    this.#routes = new SniRoutes(config)
    this.certificates = config.tls.certificates.length === 0
      ? null
      : new CertificateStore(config.tls.certificates, config.tls.reloadInterval, {
        onLoad: names => hooks.onCertificates(names),
        onReloadError: err => core.proxyError(new ProxyError('certificate_reload_failed',
          `certificates not reloaded, the previous ones stay: ${err.message}`, 'internal', 0)),
      })
    // the access file loads here: a line that does not parse throws now, naming the file and the line
    this.#access = config.access === null
      ? null
      : new AccessControl(config.access.rules, config.access.file, ACCESS_RELOAD_INTERVAL, {
        onReload: () => {},
        onReloadError: err => core.proxyError(new ProxyError('access_reload_failed',
          `access file not reloaded, the previous lists stay: ${err.message}`, 'internal', 0)),
      })
    this.#caps = new ConnectionCaps(config.limits.maxConnections, config.limits.maxConnectionsPerIp)
    // half-open: a client that sends its requests then shuts down its side still gets the answers
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, socket => this.accept(socket))
  }

  get connectTimeout (): number { return this.config.timeouts.connect }
  get idleTimeout (): number { return this.config.timeouts.tcpIdle }
  get handshakeTimeout (): number { return this.config.timeouts.tlsHandshake }
  get hasFallback (): boolean { return this.#fallback !== null }
  /** Connections relayed raw (passthrough, fallback, relayed TLS), connecting or relaying. */
  get tunnelCount (): number { return this.#tunnels.size }
  /** Accepted client connections not closed yet, of every kind. */
  get connectionCount (): number { return this.#caps.open }

  accept (socket: Socket): void {
    // refused connections are destroyed here, before any byte of theirs is read
    const remote = socket.remoteAddress
    const address = remote === undefined ? null : parseAddress(remote)
    if (address === null) {
      // the client is already gone (no address left to read), or an address no list could judge
      socket.destroy()
      return
    }
    if (this.#access !== null && !this.#access.list.accepts(address)) {
      return this.#refuse(socket, 'access_denied', 'client address refused by the access lists')
    }
    const admission = this.#caps.admit(socket, address)
    if (admission !== Admission.OK) {
      return this.#refuse(socket, 'too_many_connections', admission === Admission.GLOBAL
        ? `${this.#caps.max} connections open (limits.maxConnections)`
        : `${this.#caps.maxPerIp} connections open from this client (limits.maxConnectionsPerIp)`)
    }
    if (this.config.tcp) {
      this.#tunnels.add(new Passthrough(this, socket, null, this.#targets))
      return
    }
    this.detecting.add(new Detection(this, socket, this.config.timeouts.detect))
  }

  toHttp (detection: Detection): void {
    detection.release()
    this.core.acceptHttp(detection.socket, detection.data, false)
  }

  toOther (detection: Detection): void {
    if (this.#fallback === null) {
      this.core.clientError(new ProxyError('unknown_protocol', 'neither HTTP nor TLS, and TCP fallback is disabled', 'downstream', 0), label(detection.socket))
      this.drop(detection)
      return
    }
    detection.release()
    this.#tunnels.add(new Passthrough(this, detection.socket, detection.data, this.#fallback))
  }

  toTls (detection: Detection, serverName: string | null): void {
    detection.release()
    const { socket, data } = detection
    const route = serverName !== null && this.#routes.size > 0 ? this.#routes.find(serverName) : undefined
    if (route !== undefined || this.certificates === null) {
      this.#tunnels.add(new Passthrough(this, socket, data, route ?? this.#targets))
      return
    }
    const context = this.certificates.select(serverName)
    this.#handshakes.add(new Handshake(this, socket, data, context, serverName, label(socket)))
  }

  #refuse (socket: Socket, code: string, message: string): void {
    const client = label(socket)
    socket.on('error', ignore)
    socket.destroy()
    this.core.clientError(new ProxyError(code, message, 'downstream', 0), client)
  }

  /** Close a connection that goes nowhere: after a FIN, so that the client sees a clean end. */
  drop (detection: Detection): void {
    const socket = detection.socket
    detection.release()
    socket.on('error', ignore)
    socket.end()
    socket.destroySoon()
  }

  secured (socket: TLSSocket): void {
    this.core.acceptHttp(socket, null, true)
  }

  clientError (error: ProxyError, client: string): void {
    this.core.clientError(error, client)
  }

  upstreamError (error: ProxyError, target: string): void {
    this.core.upstreamError(error, target)
  }

  forget (item: Passthrough | Handshake): void {
    if (item instanceof Passthrough) this.#tunnels.delete(item)
    else this.#handshakes.delete(item)
  }

  /**
   * Stop: connections still being detected or handshaken close now, and so do raw relays (a TCP
   * stream has no request boundary to wait for). HTTP connections are the engine's to finish.
   */
  close (): void {
    this.certificates?.close()
    this.#access?.close()
    for (const detection of [...this.detecting]) detection.socket.destroy()
    for (const handshake of [...this.#handshakes]) handshake.destroy()
    for (const tunnel of [...this.#tunnels]) tunnel.destroy()
  }
}

function ignore (): void {}
