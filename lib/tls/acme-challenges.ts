/**
 * The ACME challenges rp4 is answering right now, shared by every listener of a proxy: an HTTP-01
 * challenge is asked for on port 80 (any cleartext listener: `GET
 * /.well-known/acme-challenge/TOKEN`), a TLS-ALPN-01 one on the TLS port itself (a handshake
 * offering only `acme-tls/1`, answered with a certificate that carries the key authorization).
 */
import { createSecureContext, type SecureContext } from 'node:tls'

export const HTTP01_PREFIX = '/.well-known/acme-challenge/'
export const ACME_TLS_ALPN = 'acme-tls/1'

export class AcmeChallenges {
  readonly #http = new Map<string, string>()
  readonly #alpn = new Map<string, SecureContext>()

  /** The key authorization for an HTTP-01 token, or undefined. */
  http01 (token: string): string | undefined { return this.#http.get(token) }

  /** The challenge certificate for a TLS-ALPN-01 handshake asking for `name`, or undefined. */
  tlsAlpn01 (name: string): SecureContext | undefined { return this.#alpn.get(name) }

  get answeringAlpn (): boolean { return this.#alpn.size > 0 }

  addHttp01 (token: string, keyAuthorization: string): void { this.#http.set(token, keyAuthorization) }
  removeHttp01 (token: string): void { this.#http.delete(token) }

  addTlsAlpn01 (name: string, cert: Buffer, key: Buffer): void {
    this.#alpn.set(name, createSecureContext({ cert, key, minVersion: 'TLSv1.2' }))
  }

  removeTlsAlpn01 (name: string): void { this.#alpn.delete(name) }
}
