/**
 * The listening socket, and the path each accepted connection takes. With `tcp`, every connection
 * is relayed raw to the targets. Otherwise the first bytes decide, per connection:
 *
 *   an HTTP/1.x request       → the HTTP engine
 *   a TLS ClientHello         → its SNI is read without terminating; a name routed by
 *                               `tls.passthrough` is relayed raw to its backend; otherwise rp4
 *                               terminates with the matching certificate (the first pair by
 *                               default) and serves HTTP inside; with no certificate, the TLS
 *                               stream goes to `tcpFallback` when there is one, and is refused
 *                               (`tls_no_certificate`) when there is none
 *   anything else             → relayed raw to `tcpFallback`; without one, text (a first byte that
 *                               is printable ASCII) gets the HTTP engine's 400 and binary bytes
 *                               are closed on (`unknown_protocol`)
 *   nothing at all            → with `tcpFallback`, relayed there after `timeouts.detect` (the
 *                               client waits for a server greeting) or at its FIN; without one,
 *                               the HTTP engine after `timeouts.detect` (its idle timeout applies)
 *
 * No fallback is the default, and then the HTTP engine gets a connection at its first byte that
 * can start a request: the engine's head timeout, minimum data rate and 400 apply from there.
 * With a fallback, telling HTTP from a text protocol takes the whole request line (sniff.ts);
 * while the line is a prefix of a request, the client is held under the HTTP head timeout and
 * minimum data rate, and when either runs out the engine answers 408. The detect timeout only
 * ever applies to a client that has sent nothing: a pause after `G` never turns HTTP into a raw
 * relay, where no HTTP protection applies.
 *
 * Bytes read while deciding are never lost: the chosen path gets them first.
 */
import net, { type Server, type Socket } from 'node:net'
import type { SecureContextOptions, TLSSocket } from 'node:tls'
import type { ListenerModel, ListenerTls } from '../model/model.js'
import { clock, type Timed } from '../core/clock.js'
import { ProxyError } from '../core/errors.js'
import { kOwner, peerLabel, peerOf } from '../core/symbols.js'
import { skipReadMore } from '../core/read-more.js'
import { disown, own, type SocketOwner } from '../core/owner.js'
import type { ProxyCore } from '../proxy/core.js'
import { belowMinRate, rateCheckInterval } from '../downstream/meter.js'
import { Passthrough, type PassthroughHost } from '../tcp/passthrough.js'
import type { Group } from '../upstream/group.js'
import { httpsRedirectTable, type RouteTable } from '../routing/table.js'
import { CertificateStore } from '../tls/certificates.js'
import { profileOptions } from '../tls/profile.js'
import { TicketKeys, type TicketKeySource } from '../tls/ticket-keys.js'
import { AcmeManager } from '../tls/acme.js'
import { ACME_TLS_ALPN } from '../tls/acme-challenges.js'
import { HelloStatus, parseClientHello } from '../tls/client-hello.js'
import { Handshake, HandshakeServer, type ClientAuth, type HandshakeHost } from '../tls/terminate.js'
import { SessionCache } from '../tls/session-cache.js'
import { peerCertificate } from '../tls/client-certificate.js'
import type { TlsClient } from '../session/filter.js'
import type { IdentityHeaders } from '../session/sink.js'
import { Sniffer, Verdict } from './sniff.js'
import { AccessControl, AccessList, parseAddress, type Address } from '../admission/access.js'
import { ProxyHeaderRead, type ProxyAcceptHost } from './proxy-accept.js'
import { looksLikeProxyHeader } from '../http/proxy-header.js'
import { Admission, type ConnectionCaps } from '../admission/caps.js'

/** The only protocol a TLS-ALPN-01 validation handshake may agree on (RFC 8737). */
const ACME_ALPN = [ACME_TLS_ALPN]

/** How often an access file is checked for changes, ms. */
const ACCESS_RELOAD_INTERVAL = 2000

/**
 * A fatal `handshake_failure` alert (TLS 1.2 record version, which TLS 1.3 also writes): a TLS
 * client that rp4 cannot serve reports a handshake failure instead of an unexplained close.
 */
const HANDSHAKE_FAILURE = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])

/** Events of the listener, on top of the engine's. */
export interface ListenerEvents {
  /** Certificates were loaded (at start) or reloaded from disk: every name they cover. */
  certificates: (names: string[]) => void
  /** ACME progress: a certificate obtained, or loaded from storage with its renewal date (failures are proxyErrors, code acme_failed). */
  acme: (message: string) => void
}

export interface ListenerHooks {
  onCertificates (names: string[]): void
  /** ACME progress worth a log line (a certificate obtained, loaded from storage). */
  onAcme? (message: string): void
  /** Library API: may ACME obtain a certificate for `name` (matched by tls.acme.patterns)? */
  acmeAsk? (name: string): boolean | Promise<boolean>
  /**
   * Where this listener's session ticket keys come from (kept across reloads by the proxy, or the
   * library's `ticketKeys` source); none: keys made and rotated here, for this listener alone.
   */
  ticketKeys? (model: ListenerModel): TicketKeySource
}

const enum Phase {
  /** Nothing read yet, or a TLS record's first byte alone. */
  SNIFF,
  /** The start of an HTTP request line, with a fallback that the rest of the line may still choose. */
  HEAD,
  /** A TLS record: reading the ClientHello. */
  HELLO,
}

interface OwnedSocket extends Socket { [kOwner]: Detection }

/** `IP:PORT` of a client (the one a PROXY header named), as the HTTP engine labels it in events. */
function label (socket: Socket): string {
  return peerLabel(peerOf(socket))
}

/** One accepted connection whose protocol is not known yet. */
class Detection implements Timed, SocketOwner {
  readonly listener: Listener
  readonly socket: OwnedSocket
  readonly #sniffer: Sniffer
  /**
   * Everything read so far, in order. Bounded: a request line's prefix is HTTP once its target
   * passes the request-line limit, a ClientHello by its own limit.
   */
  #chunks: Buffer[] = []
  length = 0
  phase = Phase.SNIFF
  /** When the first byte of a request line arrived (Phase.HEAD): the head timeout counts from it. */
  headSince = 0
  deadline = 0

  /** @param initial bytes already read (after a PROXY header), looked at first */
  constructor (listener: Listener, socket: Socket, detectMs: number, initial: Buffer | null = null) {
    this.listener = listener
    this.socket = socket as OwnedSocket
    this.#sniffer = new Sniffer(listener.core.settings.maxRequestLine, listener.hasFallback)
    own(socket, this)
    this.deadline = clock.after(detectMs)
    clock.add(this)
    if (initial !== null) this.onData(initial)
  }

  /** The bytes read so far, as one buffer. */
  get data (): Buffer {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks, this.length)]
    return this.#chunks.length === 0 ? Buffer.alloc(0) : this.#chunks[0]
  }

  onData (chunk: Buffer): void {
    const first = this.length === 0
    this.#chunks.push(chunk)
    this.length += chunk.length
    if (this.phase === Phase.HELLO) return this.#hello()
    const verdict = this.#sniffer.feed(chunk)
    const listener = this.listener
    switch (verdict) {
      case Verdict.HTTP:
        return this.listener.toHttp(this)
      case Verdict.OTHER:
        return this.listener.toOther(this)
      case Verdict.TLS:
        if (first) this.deadline = clock.after(listener.model.timeouts.tlsHandshake)
        this.phase = Phase.HELLO
        return this.#hello()
      case Verdict.HTTP_PREFIX:
        // without a fallback, whatever starts like a request is the engine's from its first byte
        if (!this.listener.hasFallback) return this.listener.toHttp(this)
        if (this.phase !== Phase.HEAD) {
          this.phase = Phase.HEAD
          this.headSince = clock.refresh()
          const timeouts = listener.core.settings.timeouts
          this.deadline = this.headSince + Math.min(rateCheckInterval(timeouts), timeouts.requestHead)
        }
        return
      case Verdict.MORE:
        // a TLS record's first byte: the handshake timeout runs from here, not the detect timeout
        // (an empty line's CR waits for its LF under the detect timeout)
        if (first && !this.#sniffer.awaitsLineFeed) this.deadline = clock.after(listener.model.timeouts.tlsHandshake)
    }
  }

  #hello (): void {
    const hello = parseClientHello(this.data)
    if (hello.status === HelloStatus.MORE) return
    if (hello.status === HelloStatus.INVALID) return this.fail('tls_bad_client_hello', `unusable TLS ClientHello: ${hello.reason}`)
    this.listener.toTls(this, hello.serverName, hello.acme, hello.tls13)
  }

  /** The client half-closed before a verdict. */
  onEnd (): void {
    if (this.phase === Phase.HEAD) return this.listener.toHttp(this) // the engine's answer to a truncated head
    // a CR that no LF followed is no empty line: another protocol's bytes
    if (this.#sniffer.awaitsLineFeed) return this.listener.toOther(this)
    if (this.length > 0) return this.fail('tls_bad_client_hello', 'client closed before a complete TLS ClientHello')
    // nothing sent, nothing more to come: only a greeting can follow, as after the detect timeout
    if (this.listener.hasFallback) return this.listener.toOther(this)
    this.listener.drop(this)
  }

  onTimeout (): void {
    if (this.phase === Phase.HEAD) return this.#headCheck(clock.now)
    if (this.#sniffer.awaitsLineFeed) return this.listener.toOther(this)
    if (this.length > 0) return this.fail('tls_hello_timeout', 'no complete TLS ClientHello in time')
    // silent as far as was read. A busy process runs its timers before reading the sockets that
    // became readable while it was busy: bytes that came in time may not be read yet. The
    // verdict waits for this turn's reads (immediates run after them), so that such bytes, not
    // the timer, decide.
    setImmediate(decideSilent, this)
  }

  /** Still nothing read, a turn of reads after the detect timeout. */
  onSilent (): void {
    if (this.length > 0 || !this.listener.detecting.has(this) || this.socket.destroyed) return
    // without a fallback, most likely an HTTP client that connected ahead of its first request
    // (browsers preconnect); the engine's own timeouts apply from here
    if (!this.listener.hasFallback) return this.listener.toHttp(this)
    // a server-first protocol: the backend speaks first
    this.listener.toOther(this)
  }

  /**
   * A request line still incomplete: held under the engine's head timeout and minimum data rate,
   * and handed to the engine (which answers 408, counting from the first byte) once either runs out.
   */
  #headCheck (now: number): void {
    const settings = this.listener.core.settings
    const end = this.headSince + settings.timeouts.requestHead
    if (now >= end || belowMinRate(this.length, now - this.headSince, settings.minDataRate)) return this.listener.toHttp(this)
    this.deadline = Math.min(now + rateCheckInterval(settings.timeouts), end)
  }

  /** A defect of rp4's own while handing over from the clock: this connection closes, nothing is left holding it. */
  onInternalError (err: unknown): void {
    this.listener.core.clientError(new ProxyError('internal_error', `internal error: ${(err as Error).stack ?? String(err)}`, 'internal', 0, false, err), label(this.socket))
    this.release()
    this.socket.destroy()
  }

  fail (code: string, message: string, last?: Buffer): void {
    this.listener.core.clientError(new ProxyError(code, message, 'downstream', 0), label(this.socket))
    this.listener.drop(this, last)
  }

  onSocketError (): void { /* 'close' follows */ }

  onClose (): void { this.release() }

  /**
   * Hand the socket over. `toEngine`: to the HTTP/1 connection, which takes the same listeners
   * over (core/owner.ts); otherwise none of them stays on it.
   */
  release (toEngine = false): void {
    clock.delete(this)
    this.deadline = 0
    if (!toEngine) disown(this.socket)
    this.listener.detecting.delete(this)
  }
}

function decideSilent (detection: Detection): void {
  try {
    detection.onSilent()
  } catch (err) {
    detection.onInternalError(err)
  }
}

/**
 * Server names relayed as raw TLS: exact names, `*.domain` for one more label, and `*` for every
 * other name (and a ClientHello without SNI).
 */
class SniRoutes {
  readonly exact = new Map<string, Group>()
  readonly wildcard = new Map<string, Group>()
  any: Group | null = null

  constructor (routes: ReadonlyArray<Readonly<{ name: string, upstream: string }>>, core: ProxyCore) {
    for (const route of routes) {
      const group = core.group(route.upstream)
      if (route.name === '*') this.any = group
      else if (route.name.startsWith('*.')) this.wildcard.set(route.name.slice(2), group)
      else this.exact.set(route.name, group)
    }
  }

  get size (): number { return this.exact.size + this.wildcard.size + (this.any === null ? 0 : 1) }

  find (name: string | null): Group | undefined {
    if (name === null) return this.any ?? undefined
    const found = this.exact.get(name)
    if (found !== undefined) return found
    const dot = name.indexOf('.')
    return (dot > 0 ? this.wildcard.get(name.slice(dot + 1)) : undefined) ?? this.any ?? undefined
  }
}

export class Listener implements PassthroughHost, HandshakeHost, ProxyAcceptHost {
  server: Server
  readonly core: ProxyCore
  readonly model: ListenerModel
  readonly certificates: CertificateStore | null
  /** Certificates obtained by ACME (tls.acme); started once the proxy listens. */
  readonly acme: AcmeManager | null
  readonly detecting = new Set<Detection>()
  readonly #handshakes = new Set<Handshake>()
  readonly #tunnels = new Set<Passthrough>()
  /** A raw TCP listener's group. */
  readonly #upstream: Group | null
  readonly #fallback: Group | null
  readonly #sni: SniRoutes
  /** The routes HTTP is served with (over TLS, and in the clear unless `cleartext` says otherwise). */
  readonly #routes: RouteTable
  /** Cleartext HTTP on a port with certificates: redirected (a table), refused (null), or served (`#routes`). */
  readonly #cleartext: RouteTable | null
  readonly #access: AccessControl | null
  readonly #caps: ConnectionCaps
  /** What every TLS connection here shares when no client certificate is asked for (HSTS only). */
  readonly #tlsClient: TlsClient
  readonly #clientAuth: ClientAuth | null
  /** The TLS 1.2 session-ID cache (tls.sessionCache); null: off. */
  readonly sessions: SessionCache | null
  /** What handshakes look sessions up through when nothing is stapled (null: no cache). */
  readonly #sessionServer: HandshakeServer | null
  /** Headers the verified client certificate goes in (client copies removed, cleartext too); null: none. */
  readonly #identity: IdentityHeaders | null
  /** Senders whose PROXY headers are taken (null: none expected). */
  readonly #proxySenders: AccessList | null
  readonly #proxyReads = new Set<ProxyHeaderRead>()

  constructor (core: ProxyCore, model: ListenerModel, hooks: ListenerHooks) {
    this.core = core
    this.model = model
    this.#upstream = model.protocol === 'tcp' && model.upstream !== null ? core.group(model.upstream) : null
    this.#fallback = model.tcpFallback === null ? null : core.group(model.tcpFallback)
    const tls = model.tls
    this.#sni = new SniRoutes(tls?.passthrough ?? [], core)
    const acmeRoute = core.acmeRoute
    this.#routes = model.redirectToHttps ? httpsRedirectTable(false, acmeRoute) : core.table(model.routes, acmeRoute !== null)
    const terminates = tls !== null && (tls.certificates.length > 0 || tls.acme !== null)
    this.#cleartext = !terminates || tls.cleartext === 'serve' ? this.#routes : tls.cleartext === 'redirect' ? httpsRedirectTable(true, acmeRoute) : null
    const acme = tls?.acme ?? null
    this.acme = acme === null
      ? null
      : new AcmeManager(acme, core.acmeChallenges!, {
        onCertificate: (_name, files) => this.certificates?.add(files),
        onError: message => core.proxyError(new ProxyError('acme_failed', message, 'internal', 0)),
        onInfo: message => hooks.onAcme?.(message),
        ask: hooks.acmeAsk,
      })
    this.sessions = terminates && tls.sessionCache > 0 ? new SessionCache(tls.sessionCache, tls.sessionTimeout) : null
    this.#sessionServer = this.sessions === null ? null : new HandshakeServer(null, null, this.sessions)
    this.certificates = !terminates
      ? null
      : new CertificateStore([...tls.certificates, ...(this.acme?.storedFiles() ?? [])], tls.reloadInterval, {
        onLoad: names => hooks.onCertificates(names),
        onReloadError: err => core.proxyError(new ProxyError('certificate_reload_failed',
          `certificates not reloaded, the previous ones stay: ${err.message}`, 'internal', 0)),
        ocsp: !tls.ocspStapling
          ? null
          : { onError: message => core.proxyError(new ProxyError('ocsp_failed', message, 'internal', 0)) },
      }, contextOptions(tls), ticketKeys(tls, hooks.ticketKeys?.(model), core))
    // the access file loads here: a line that does not parse throws now, naming the file and the line
    this.#access = model.access === null
      ? null
      : new AccessControl(model.access.rules, model.access.file, ACCESS_RELOAD_INTERVAL, {
        onReload: () => {},
        onReloadError: err => core.proxyError(new ProxyError('access_reload_failed',
          `access file not reloaded, the previous lists stay: ${err.message}`, 'internal', 0)),
      })
    this.#caps = core.caps
    this.#tlsClient = Object.freeze({ hsts: tls?.hsts ?? null, certificate: null, refusal: null })
    const clientCertificates = tls?.clientCertificates ?? null
    this.#clientAuth = clientCertificates === null
      ? null
      : Object.freeze({ rejectUnauthorized: clientCertificates.mode === 'require' && clientCertificates.onFailure === 'handshake' })
    this.#identity = clientCertificates === null || (clientCertificates.subjectHeader === null && clientCertificates.fingerprintHeader === null)
      ? null
      : Object.freeze({ subject: clientCertificates.subjectHeader, fingerprint: clientCertificates.fingerprintHeader })
    this.#proxySenders = model.acceptProxy === null ? null : new AccessList(model.acceptProxy.from)
    // half-open: a client that sends its requests then shuts down its side still gets the answers
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, socket => this.accept(socket))
  }

  /** The proxy listens: ACME obtains what is missing and schedules renewals. */
  started (): void {
    this.acme?.start()
  }

  /**
   * Take over a running listener's socket (a reload keeps the socket of a listener whose address
   * stays, so that no connection is refused meanwhile): what it accepts from now on is served
   * here, with this configuration. Its error listener goes with it.
   */
  adopt (server: Server): void {
    server.removeAllListeners('connection')
    server.on('connection', socket => this.accept(socket))
    this.server = server
  }

  /**
   * A reload replaced this listener: its connections still being told apart, handshaken or
   * relayed go on under it; only its file watchers stop. `close()` still cuts them at shutdown.
   */
  retire (): void {
    this.certificates?.close()
    // its keys stop following the proxy's (a reload would otherwise leave one subscriber each)
    this.certificates?.tickets.close()
    this.#access?.close()
  }

  /** Connections still under this listener's care (told apart, handshaken, relayed). */
  get pending (): number { return this.#proxyReads.size + this.detecting.size + this.#handshakes.size + this.#tunnels.size }

  get idleTimeout (): number { return this.model.timeouts.tcpIdle }
  get handshakeTimeout (): number { return this.model.timeouts.tlsHandshake }
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
    if (this.#proxySenders !== null && this.#proxySenders.accepts(address)) {
      // a balancer in front: the client its header names is the one judged and served
      this.#proxyReads.add(new ProxyHeaderRead(this, socket, this.model.acceptProxy!.timeout))
      return
    }
    this.#admit(socket, address, null)
  }

  proxied (socket: Socket, rest: Buffer | null): void {
    const address = parseAddress(peerOf(socket).ip)
    if (address === null) {
      socket.destroy()
      return
    }
    this.#admit(socket, address, rest)
  }

  forgetProxyRead (read: ProxyHeaderRead): void {
    this.#proxyReads.delete(read)
  }

  #admit (socket: Socket, address: Address, initial: Buffer | null): void {
    if (this.#access !== null && !this.#access.list.accepts(address)) {
      return this.#refuse(socket, 'access_denied', 'client address refused by the access lists')
    }
    const admission = this.#caps.admit(socket, address)
    if (admission !== Admission.OK) {
      return this.#refuse(socket, 'too_many_connections', admission === Admission.GLOBAL
        ? `${this.#caps.max} connections open (limits.maxConnections)`
        : `${this.#caps.maxPerIp} connections open from this client (limits.maxConnectionsPerIp)`)
    }
    if (this.#upstream !== null) {
      this.#tunnels.add(new Passthrough(this, socket, initial, this.#upstream))
      return
    }
    // read by 'data' listeners from its first byte on, whoever owns it next (core/read-more.ts)
    skipReadMore(socket)
    this.detecting.add(new Detection(this, socket, this.model.timeouts.detect, initial))
  }

  toHttp (detection: Detection): void {
    const routes = this.#cleartext
    if (routes === null) {
      return detection.fail('cleartext_refused', 'cleartext HTTP on a port that serves TLS (tls.cleartext: refuse)')
    }
    detection.release(true)
    this.core.acceptHttp(detection.socket, detection.data, null, routes, detection.phase === Phase.HEAD ? detection.headSince : 0, this.#identity)
  }

  toOther (detection: Detection): void {
    if (isProxyHeader(detection.data)) {
      // only a trusted sender may say who the client is; relayed raw, the header would say it to the backend
      return detection.fail('proxy_untrusted', 'a PROXY protocol header from a sender not in acceptProxy.from', Buffer.alloc(0))
    }
    if (this.#fallback === null) {
      // text that is no request (`get / HTTP/1.1`, a typo, a line of another protocol) gets the
      // engine's 400, as nginx and HAProxy answer it; binary bytes are closed on
      const first = detection.data[0]
      if (first !== undefined && first >= 0x21 && first <= 0x7e) return this.toHttp(detection)
      this.core.clientError(new ProxyError('unknown_protocol', 'neither HTTP nor TLS, and no TCP fallback (tcpFallback, --tcp-to) to relay it to', 'downstream', 0), label(detection.socket))
      this.drop(detection)
      return
    }
    detection.release()
    this.#tunnels.add(new Passthrough(this, detection.socket, detection.data, this.#fallback))
  }

  toTls (detection: Detection, serverName: string | null, acme = false, tls13 = false): void {
    const route = this.#sni.size > 0 ? this.#sni.find(serverName) : undefined
    if (route === undefined && this.certificates === null) {
      // rp4 cannot terminate it: relayed raw only where the user asked for raw relays
      if (this.#fallback !== null) return this.toOther(detection)
      const name = serverName === null ? 'without SNI' : `for "${serverName}"`
      return detection.fail('tls_no_certificate', `TLS ClientHello ${name}, but no certificate (tls.certificates, --cert), ` +
        'no passthrough route (tls.passthrough, --sni) and no TCP fallback (tcpFallback, --tcp-to)', HANDSHAKE_FAILURE)
    }
    detection.release()
    const { socket, data } = detection
    if (route !== undefined) {
      this.#tunnels.add(new Passthrough(this, socket, data, route, serverName ?? ''))
      return
    }
    const challenges = this.core.acmeChallenges
    if (acme && challenges !== null && serverName !== null) {
      // a CA validating TLS-ALPN-01: its own certificate, and nothing else on this connection
      const challenge = challenges.tlsAlpn01(serverName)
      if (challenge !== undefined) {
        this.#handshakes.add(new Handshake(this, socket, data, challenge, serverName, label(socket), null, null, ACME_ALPN))
        return
      }
    }
    const certificates = this.certificates!
    if (this.acme !== null && serverName !== null && !certificates.covers(serverName)) this.acme.onUnknownName(serverName)
    const context = certificates.select(serverName)
    if (context === null) {
      const name = serverName === null ? 'without SNI' : `for "${serverName}"`
      this.core.clientError(new ProxyError('tls_no_certificate', `TLS ClientHello ${name}: no certificate obtained yet (tls.acme)`, 'downstream', 0), label(socket))
      socket.on('error', ignore)
      socket.end(HANDSHAKE_FAILURE)
      socket.destroySoon()
      return
    }
    const staple = certificates.stapling ? certificates.staple(context) : null
    // a TLS 1.3 handshake resumes by ticket alone: the session-ID cache has nothing to give it,
    // and to ask it Node runs the ClientHello through its own parser and a JS callback before the
    // handshake, and every session it issues (a ticket each) through another
    const server = staple === null ? (tls13 ? null : this.#sessionServer) : new HandshakeServer(staple, context, tls13 ? null : this.sessions)
    this.#handshakes.add(new Handshake(this, socket, data, context, serverName, label(socket), this.#clientAuth, server))
  }

  #refuse (socket: Socket, code: string, message: string): void {
    const client = label(socket)
    socket.on('error', ignore)
    socket.destroy()
    this.core.clientError(new ProxyError(code, message, 'downstream', 0), client)
  }

  /** Close a connection that goes nowhere: after a FIN, so that the client sees a clean end. */
  drop (detection: Detection, last?: Buffer): void {
    const socket = detection.socket
    detection.release()
    socket.on('error', ignore)
    if (last === undefined) socket.end()
    else socket.end(last)
    socket.destroySoon()
  }

  secured (socket: TLSSocket): void {
    this.core.tlsHandshake(this.model.name, socket.getProtocol() ?? 'unknown', socket.isSessionReused())
    if (socket.alpnProtocol === ACME_TLS_ALPN) {
      // the CA saw the challenge certificate: that was the whole exchange
      socket.on('error', ignore)
      socket.end()
      return
    }
    const clientCertificates = this.model.tls!.clientCertificates
    if (clientCertificates === null) {
      this.core.acceptHttp(socket, null, this.#tlsClient, this.#routes)
      return
    }
    const peer = peerCertificate(socket)
    const refusal = peer.error !== null
      ? `client certificate not verified: ${peer.error}`
      : peer.certificate === null && clientCertificates.mode === 'require' ? 'no client certificate' : null
    if (refusal !== null && clientCertificates.onFailure === 'handshake') {
      // only a certificate that fails to verify gets here (OpenSSL refuses a missing one itself):
      // Node verifies once OpenSSL accepted the handshake, so the connection closes right after it
      this.core.clientError(new ProxyError('tls_client_certificate_refused', `TLS handshake refused: ${refusal}`, 'downstream', 0), label(socket))
      socket.on('error', ignore)
      socket.destroy()
      return
    }
    const tls: TlsClient = Object.freeze({ hsts: this.#tlsClient.hsts, certificate: peer.certificate, refusal })
    this.core.acceptHttp(socket, null, tls, this.#routes, 0, this.#identity)
  }

  clientError (error: ProxyError, client: string): void {
    this.core.clientError(error, client)
  }

  handshakeFailed (reason: string): void {
    this.core.tlsFailure(this.model.name, reason)
  }

  upstreamError (error: ProxyError, target: string): void {
    this.core.upstreamError(error, target)
  }

  forget (item: Passthrough | Handshake): void {
    if (item instanceof Passthrough) {
      this.#tunnels.delete(item)
      this.core.tcpSessionDone(item, this.model.name)
    } else this.#handshakes.delete(item)
  }

  /**
   * Stop: connections still being detected or handshaken close now, and so do raw relays (a TCP
   * stream has no request boundary to wait for). HTTP connections are the engine's to finish.
   */
  close (): void {
    this.certificates?.close()
    this.certificates?.tickets.close()
    this.sessions?.clear()
    this.acme?.close()
    this.#access?.close()
    for (const read of [...this.#proxyReads]) read.destroy()
    for (const detection of [...this.detecting]) detection.socket.destroy()
    for (const handshake of [...this.#handshakes]) handshake.destroy()
    for (const tunnel of [...this.#tunnels]) tunnel.destroy()
  }
}

function ignore (): void {}

/** The listener's ticket keys: following `source` when there is one, else its own. */
function ticketKeys (tls: ListenerTls, source: TicketKeySource | undefined, core: ProxyCore): TicketKeys {
  if (source === undefined) return new TicketKeys(tls.ticketKeyRotation)
  const interval = source instanceof TicketKeys ? source.interval : 0
  try {
    return TicketKeys.following(source, interval, err => core.proxyError(new ProxyError('ticket_keys_refused',
      `session ticket keys from the ticketKeys source not taken, the previous ones stay: ${err.message}`, 'internal', 0)))
  } catch (err) {
    throw new TypeError(`option ticketKeys: ${(err as Error).message}`)
  }
}

/** What every certificate context of a listener is made with besides its pair. */
function contextOptions (tls: ListenerTls): SecureContextOptions {
  const options: SecureContextOptions = { ...profileOptions(tls.profile, tls.ciphers) }
  if (tls.sessionCache > 0) options.sessionTimeout = Math.max(1, Math.floor(tls.sessionTimeout / 1000))
  const clientCertificates = tls.clientCertificates
  if (clientCertificates !== null) options.ca = [...clientCertificates.ca]
  return options
}

/** Enough of a PROXY protocol header (v1 `PROXY `, or v2's signature) to know it for one. */
function isProxyHeader (data: Buffer): boolean {
  return data.length >= 6 && looksLikeProxyHeader(data)
}
