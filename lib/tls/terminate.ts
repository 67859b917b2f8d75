/**
 * TLS that rp4 terminates: the accepted socket is wrapped in a server-side TLSSocket with the
 * certificate chosen from the ClientHello's SNI, and once the handshake completes the decrypted
 * stream goes to the HTTP engine (X-Forwarded-Proto: https).
 *
 * The ClientHello was already read (to learn the SNI): it is put back into the socket's read
 * buffer, which the TLSSocket consumes before anything new arrives on the handle. A handshake that
 * fails or takes too long is reported and closes that connection only.
 */
import type { Socket } from 'node:net'
import { TLSSocket, type SecureContext, type Server, type TLSSocketOptions } from 'node:tls'
import { clock, type Timed } from '../core/clock.js'
import { ProxyError, describeSystemError } from '../core/errors.js'
import { kOwner, kPeer, peerOf, type Peer } from '../core/symbols.js'
import type { SessionCache } from './session-cache.js'

/** What a handshake needs from the proxy around it. */
export interface HandshakeHost {
  readonly handshakeTimeout: number
  /** The handshake completed: serve HTTP on the decrypted stream. */
  secured (socket: TLSSocket): void
  clientError (error: ProxyError, client: string): void
  /** A handshake failed: `reason` is OpenSSL's (`no_shared_cipher`...), `timeout` or `aborted` (the rp4_tls_handshake_failures_total label). */
  handshakeFailed (reason: string): void
  forget (handshake: Handshake): void
}

/** HTTP/1.1 only: a client offering h2 and http/1.1 picks http/1.1; one offering only h2 is refused. */
const ALPN = ['http/1.1']

interface OwnedSocket extends TLSSocket { [kOwner]: Handshake }

export interface ClientAuth { readonly rejectUnauthorized: boolean }

/**
 * What a TLSSocket asks of its server: Node staples OCSP only through a tls.Server's
 * 'OCSPRequest' event, and looks sessions up and stores them through its 'resumeSession' and
 * 'newSession' events; rp4 makes its TLSSockets around sockets it accepted itself, so this
 * stands in for the server, and nothing else of one is used.
 *
 * The OCSP answer is ready (cached) before the handshake starts: it never waits on a responder.
 * Only a client that asks (status_request) is given it. A listener without stapling shares one
 * of these for its session cache; one with stapling makes one per handshake (its response).
 */
export class HandshakeServer {
  readonly #response: Buffer | null
  readonly #sessions: SessionCache | null
  /** The handshake's context: Node reads its certificate and issuer to pass along with the event. */
  readonly _sharedCreds: SecureContext | null
  readonly _contexts: unknown[] = []

  constructor (response: Buffer | null, context: SecureContext | null, sessions: SessionCache | null) {
    this.#response = response
    this._sharedCreds = context
    this.#sessions = sessions
  }

  listenerCount (event: string): number {
    if (event === 'OCSPRequest') return this.#response === null ? 0 : 1
    return (event === 'newSession' || event === 'resumeSession') && this.#sessions !== null ? 1 : 0
  }

  emit (event: string, ...args: unknown[]): boolean {
    switch (event) {
      case 'OCSPRequest': {
        if (this.#response === null) return false
        const done = args[2] as (err: Error | null, response: Buffer) => void
        done(null, this.#response)
        return true
      }
      case 'newSession': {
        const done = args[2] as () => void
        this.#sessions?.store(args[0] as Buffer, args[1] as Buffer)
        done()
        return true
      }
      case 'resumeSession': {
        const session = this.#sessions?.find(args[0] as Buffer) ?? null
        // false: Node goes on with a full handshake itself, no callback
        if (session === null) return false
        const done = args[1] as (err: Error | null, session: Buffer) => void
        done(null, session)
        return true
      }
      default:
        return false
    }
  }
}

export class Handshake implements Timed {
  readonly #host: HandshakeHost
  readonly #socket: OwnedSocket
  readonly #label: string
  readonly #serverName: string | null
  #done = false
  deadline = 0

  /**
   * @param clientAuth client certificates asked for (`requestCert`), and whether OpenSSL refuses
   *   the handshake without a verified one (`rejectUnauthorized`); null: none asked for
   * @param server the OCSP response to staple and the session cache; null: neither
   */
  constructor (host: HandshakeHost, raw: Socket, hello: Buffer, context: SecureContext, serverName: string | null, label: string, clientAuth: ClientAuth | null = null, server: HandshakeServer | null = null, alpn: string[] = ALPN) {
    this.#host = host
    this.#label = label
    this.#serverName = serverName
    // paused, so that the put-back bytes stay in the read buffer for the TLSSocket to take first
    raw.pause()
    raw.unshift(hello)
    raw.on('error', ignore)
    const options: TLSSocketOptions = clientAuth === null
      ? { isServer: true, secureContext: context, ALPNProtocols: alpn }
      : { isServer: true, secureContext: context, ALPNProtocols: alpn, requestCert: true, rejectUnauthorized: clientAuth.rejectUnauthorized }
    if (server !== null) options.server = server as unknown as Server
    const socket = new TLSSocket(raw, options) as OwnedSocket
    socket[kOwner] = this
    // the client a PROXY header named stays the client over TLS; without one, the accepted
    // socket's address (read when it was admitted) is not asked of the kernel again
    ;(socket as Socket & { [kPeer]?: Peer })[kPeer] = peerOf(raw)
    socket.on('secure', onSecure)
    socket.on('error', onError)
    socket.on('end', onEnd)
    socket.on('close', onClose)
    this.#socket = socket
    this.deadline = clock.after(host.handshakeTimeout)
    clock.add(this)
  }

  onSecure (): void {
    const socket = this.#socket
    this.#release()
    socket.removeListener('secure', onSecure)
    socket.removeListener('error', onError)
    socket.removeListener('end', onEnd)
    socket.removeListener('close', onClose)
    this.#host.secured(socket)
  }

  /**
   * The client sent its FIN before the handshake completed here. The socket inherits the accepted
   * socket's half-open mode, so nothing would close it until the handshake timeout: it is ended
   * from this side now. What was already received still decides: when it held the client's
   * Finished, 'secure' follows and the connection is served (as one already ended); otherwise it
   * closes, reported as aborted.
   */
  onEnd (): void {
    if (!this.#done) this.#socket.end()
  }

  onError (err: Error): void {
    if (!this.#done) this.#host.handshakeFailed(failureReason(err))
    this.#fail('tls_handshake_failed', `TLS handshake${this.#forName()} failed: ${describeTlsError(err)}`, err)
  }

  onTimeout (): void {
    if (!this.#done) this.#host.handshakeFailed('timeout')
    this.#fail('tls_handshake_timeout', `TLS handshake${this.#forName()} not completed in time`)
  }

  onClose (): void {
    if (this.#done) return
    this.#host.handshakeFailed('aborted')
    this.#fail('tls_handshake_aborted', `client closed the connection during the TLS handshake${this.#forName()}`)
  }

  destroy (): void {
    this.#release()
    this.#socket.destroy()
  }

  #forName (): string {
    return this.#serverName === null ? '' : ` for ${this.#serverName}`
  }

  #fail (code: string, message: string, cause?: unknown): void {
    if (this.#done) return
    this.#host.clientError(new ProxyError(code, message, 'downstream', 0, false, cause), this.#label)
    this.destroy()
  }

  #release (): void {
    if (this.#done) return
    this.#done = true
    clock.delete(this)
    this.#host.forget(this)
  }
}

/**
 * One line: OpenSSL's own message names its source file and line and ends with a newline (a blank
 * line in a log); its reason (`unsupported protocol`) says what the client did.
 */
function describeTlsError (err: Error): string {
  const { code, reason } = err as NodeJS.ErrnoException & { reason?: unknown }
  if (typeof reason === 'string' && reason !== '' && code !== undefined) return `${reason} (${code})`
  return describeSystemError(err).trim().replace(/\s*\n\s*/g, ' ')
}

function onSecure (this: OwnedSocket): void { this[kOwner].onSecure() }
function onError (this: OwnedSocket, err: Error): void { this[kOwner].onError(err) }
function onEnd (this: OwnedSocket): void { this[kOwner].onEnd() }
function onClose (this: OwnedSocket): void { this[kOwner].onClose() }
/** The raw socket's handle now belongs to the TLSSocket, which reports its failures. */
function ignore (): void {}

/**
 * A handshake error as a metric label: OpenSSL's reason when Node gives one
 * (`ERR_SSL_NO_SHARED_CIPHER` → `no_shared_cipher`, an alert the client sent as
 * `sslv3_alert_...`), a socket error's code otherwise (`econnreset`); a bounded set either way.
 */
export function failureReason (err: Error): string {
  const code = (err as Error & { code?: unknown }).code
  if (typeof code !== 'string') return 'other'
  return code.replace(/^ERR_SSL_/, '').toLowerCase().slice(0, 64)
}
