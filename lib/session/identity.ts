/**
 * The verified client certificate, forwarded to backends in headers the listener names
 * (tls.clientCertificates.subjectHeader, fingerprintHeader). The client's own copies are removed
 * first, whatever it sent and whether or not it has a certificate: otherwise a client without one
 * (or over cleartext on the same listener) could claim any identity.
 */
import type { HeaderList } from '../http/headers.js'
import type { ClientCertificate } from '../tls/client-certificate.js'
import type { IdentityHeaders } from './sink.js'

export function forwardIdentity (headers: HeaderList, names: IdentityHeaders, certificate: ClientCertificate | null): void {
  if (names.subject !== null) {
    headers.delete(names.subject)
    if (certificate !== null) headers.append(names.subject, certificate.subject)
  }
  if (names.fingerprint !== null) {
    headers.delete(names.fingerprint)
    if (certificate !== null) headers.append(names.fingerprint, certificate.fingerprint256)
  }
}
