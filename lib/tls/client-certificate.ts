/**
 * Client certificates (mutual TLS): what rp4 learned of the one a client presented, read once
 * when its handshake completes, and the headers that carry it to backends.
 *
 * A header a backend trusts as "the verified client" is only worth something when nobody else can
 * set it: rp4 removes any copy the client sent, on every request of a listener that forwards
 * identity (cleartext ones too), before it sets its own.
 */
import type { TLSSocket } from 'node:tls'

/** A client certificate that verified against the listener's CA bundle. */
export interface ClientCertificate {
  /** The subject's distinguished name, `CN=client, O=Example` (non-ASCII bytes percent-encoded). */
  readonly subject: string
  readonly issuer: string
  /** SHA-256 of the DER certificate, as `AB:CD:…` (what `openssl x509 -fingerprint -sha256` prints). */
  readonly fingerprint256: string
  readonly serialNumber: string
  /** Expiry, as OpenSSL prints it. */
  readonly validTo: string
}

/** The outcome of asking for a client certificate. */
export interface PeerCertificate {
  /** Verified: the certificate; null when none was sent or it did not verify. */
  readonly certificate: ClientCertificate | null
  /** The client sent a certificate that did not verify: OpenSSL's reason; null otherwise. */
  readonly error: string | null
}

const NONE: PeerCertificate = Object.freeze({ certificate: null, error: null })

/** A distinguished name as one header-safe line: RDNs joined by `, `, anything outside printable ASCII percent-encoded. */
function distinguishedName (text: string): string {
  return text.split('\n').join(', ').replace(/[^\x20-\x7e]|%/gu, ch => encodeURIComponent(ch))
}

/**
 * The TLS handle's verification result. OpenSSL verified the chain during the handshake and kept
 * the result (Node's verify callback accepts everything, to decide afterwards); tls.Server reads it
 * in its 'secure' handler, which a TLSSocket made around an accepted socket does not get, so rp4
 * reads it the same way itself.
 */
interface VerifyingHandle { verifyError (): (Error & { code?: string }) | null | undefined }

/** The certificate the client presented, once its handshake is done (requestCert). */
export function peerCertificate (socket: TLSSocket): PeerCertificate {
  const x509 = socket.getPeerX509Certificate()
  if (x509 === undefined) return NONE
  const handle = (socket as unknown as { _handle: VerifyingHandle | null })._handle
  if (handle === null || typeof handle.verifyError !== 'function') return { certificate: null, error: 'the connection closed before its certificate was checked' }
  const failed = handle.verifyError()
  if (failed != null) return { certificate: null, error: failed.code ?? failed.message }
  return {
    certificate: Object.freeze({
      subject: distinguishedName(x509.subject),
      issuer: distinguishedName(x509.issuer),
      fingerprint256: x509.fingerprint256,
      serialNumber: x509.serialNumber,
      validTo: x509.validTo,
    }),
    error: null,
  }
}
