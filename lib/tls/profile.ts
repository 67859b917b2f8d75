/**
 * The TLS settings every terminated handshake is made with: Mozilla's server-side profiles
 * (https://wiki.mozilla.org/Security/Server_Side_TLS, version 5.7), so that a scan of a default
 * listener finds nothing to flag.
 *
 * - intermediate (the default): TLS 1.2 and 1.3; on TLS 1.2 only ECDHE key exchange with an AEAD
 *   (AES-GCM, ChaCha20-Poly1305): no CBC, no static RSA, no SHA-1 MACs. The client's preference
 *   decides (every suite offered is strong, and a phone without AES hardware rightly prefers
 *   ChaCha20).
 * - modern: TLS 1.3 only.
 *
 * Whatever the profile: client-initiated renegotiation is refused (OpenSSL answers a
 * no_renegotiation alert; a scanner's "VULNERABLE" and a CPU lever for a client that asks again
 * and again), and TLS 1.3 early data (0-RTT, replayable) is never accepted: Node's server offers
 * none, so tickets carry max_early_data 0.
 */
import { constants } from 'node:crypto'
import { createSecureContext, type SecureContextOptions } from 'node:tls'

export type TlsProfileName = 'intermediate' | 'modern'

export const TLS13_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']

/** Mozilla intermediate's TLS 1.2 suites without the DHE ones (ECDHE is faster and needs no parameters file). */
export const INTERMEDIATE_TLS12_SUITES = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
]

const CURVES = 'X25519:prime256v1:secp384r1'

/** What createSecureContext gets besides the certificate, key and ticket keys. */
export type ProfileOptions = Readonly<Pick<SecureContextOptions, 'minVersion' | 'maxVersion' | 'ciphers' | 'ecdhCurve' | 'honorCipherOrder' | 'secureOptions'>>

/**
 * The context options of a profile. `ciphers`: a custom OpenSSL list instead of the profile's
 * (TLS 1.3 suites by their `TLS_` names, TLS 1.2 ones by OpenSSL's), null for the profile's own.
 */
export function profileOptions (name: TlsProfileName, ciphers: string | null): ProfileOptions {
  const modern = name === 'modern'
  return Object.freeze({
    minVersion: modern ? 'TLSv1.3' : 'TLSv1.2',
    maxVersion: 'TLSv1.3',
    ciphers: ciphers ?? (modern ? TLS13_SUITES : [...TLS13_SUITES, ...INTERMEDIATE_TLS12_SUITES]).join(':'),
    ecdhCurve: CURVES,
    honorCipherOrder: false,
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
  })
}

/** Why OpenSSL cannot use a custom cipher list (no suite it knows, a syntax error); null when it can. */
export function cipherListProblem (ciphers: string): string | null {
  try {
    createSecureContext({ ciphers })
    return null
  } catch (err) {
    return (err as Error).message
  }
}
