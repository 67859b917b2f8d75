/**
 * OCSP stapling: for a certificate that names an OCSP responder (its Authority Information
 * Access), rp4 asks the responder about it in the background and hands the signed answer to
 * clients in the handshake (status_request), so that they need not ask the CA themselves (a
 * privacy leak, a delay, and a soft failure most browsers ignore).
 *
 * A handshake never waits for a responder: it staples what is cached, or nothing. A response is
 * checked before it is used (a successful response about this very certificate, signed by its
 * issuer or a responder the issuer delegated to, current), kept until shortly before its
 * `nextUpdate` and refreshed halfway through its validity; a failed fetch is retried with backoff,
 * and the previous response stays stapled while it is still valid.
 *
 * The issuer certificate is the one after the leaf in the certificate file (the chain the
 * handshake sends anyway); without it there is nothing to ask about.
 */
import type * as Asn1js from 'asn1js'
import { X509Certificate } from 'node:crypto'
import type * as Pkijs from 'pkijs'
import { clock, type Timed } from '../core/clock.js'

/** pkijs and asn1js, loaded at the first fetch: a proxy whose certificates name no responder never pays their start-up. */
let libraries: { pkijs: typeof Pkijs, asn1js: typeof Asn1js } | null = null
async function load (): Promise<{ pkijs: typeof Pkijs, asn1js: typeof Asn1js }> {
  libraries ??= { pkijs: await import('pkijs'), asn1js: await import('asn1js') }
  return libraries
}

/** What the stapler needs from the proxy around it. */
export interface OcspHooks {
  /** A fetch failed or its response was unusable: reported, retried later. */
  onError (message: string): void
  /** A response was fetched and will be stapled from now on. */
  onUpdate? (subject: string, nextUpdate: number): void
}

/** Refreshing is retried after this long at first, doubling up to the maximum, ms. */
const RETRY_MIN = 10_000
const RETRY_MAX = 3_600_000
/** A response without nextUpdate is asked again after this long, and stapled no longer than that, ms. */
const NO_NEXT_UPDATE = 3_600_000
/** Stop stapling this long before nextUpdate: a client whose clock runs ahead must not see it expired, ms. */
const EXPIRY_MARGIN = 60_000
const FETCH_TIMEOUT = 10_000
const OCSP_RESPONSE_SUCCESSFUL = 0
const ID_PKIX_OCSP_BASIC = '1.3.6.1.5.5.7.48.1.1'

/** The responder URL a certificate names (AIA `OCSP - URI:`), or null. */
export function responderUrl (x509: X509Certificate): string | null {
  const match = /OCSP - URI:(\S+)/.exec(x509.infoAccess ?? '')
  return match === null ? null : match[1]
}


/** The OCSP state of one certificate (leaf and issuer from one file). */
export class OcspEntry implements Timed {
  readonly subject: string
  readonly #url: string
  readonly #leaf: X509Certificate
  readonly #issuer: X509Certificate
  readonly #hooks: OcspHooks
  /** The DER response handshakes staple; null: none valid. */
  #response: Buffer | null = null
  /** When the cached response stops being stapled (shortly before its nextUpdate), ms since the epoch. */
  #staleAt = 0
  #retry = RETRY_MIN
  #fetching = false
  #closed = false
  deadline = 0

  constructor (leaf: X509Certificate, issuer: X509Certificate, url: string, hooks: OcspHooks) {
    this.subject = leaf.subject.replace(/\n/g, ', ')
    this.#url = url
    this.#leaf = leaf
    this.#issuer = issuer
    this.#hooks = hooks
  }

  /** What a handshake staples now: the cached response while it is valid, else nothing. */
  get response (): Buffer | null {
    if (this.#response !== null && Date.now() >= this.#staleAt) this.#response = null
    return this.#response
  }

  /** Fetch now, and from then on on schedule. */
  start (): void {
    clock.add(this)
    void this.refresh()
  }

  onTimeout (): void {
    this.deadline = 0
    void this.refresh()
  }

  close (): void {
    this.#closed = true
    clock.delete(this)
  }

  /** Ask the responder; on success the response is stapled from now on. Resolves whatever happens. */
  async refresh (): Promise<void> {
    if (this.#fetching || this.#closed) return
    this.#fetching = true
    try {
      const { der, thisUpdate, nextUpdate } = await this.#fetch()
      if (this.#closed) return
      const now = Date.now()
      const end = nextUpdate ?? now + NO_NEXT_UPDATE
      this.#response = der
      this.#staleAt = end - Math.min(EXPIRY_MARGIN, (end - now) / 4)
      this.#retry = RETRY_MIN
      // halfway through its validity, so that a few failed attempts still leave time
      const refreshAt = Math.max(now + RETRY_MIN / 10, thisUpdate + (end - thisUpdate) / 2)
      this.deadline = clock.after(refreshAt - now)
      this.#hooks.onUpdate?.(this.subject, end)
    } catch (err) {
      if (this.#closed) return
      const keeps = this.#response !== null && Date.now() < this.#staleAt
      this.#hooks.onError(`OCSP response for ${this.subject} from ${this.#url} not updated (next attempt in ${Math.round(this.#retry / 1000)}s` +
        `${keeps ? ', the previous one is stapled meanwhile' : ', nothing stapled meanwhile'}): ${(err as Error).message}`)
      this.deadline = clock.after(this.#retry)
      this.#retry = Math.min(RETRY_MAX, this.#retry * 2)
    } finally {
      this.#fetching = false
    }
  }

  async #fetch (): Promise<{ der: Buffer, thisUpdate: number, nextUpdate: number | null }> {
    const { pkijs, asn1js } = await load()
    const leaf = pkijs.Certificate.fromBER(new Uint8Array(this.#leaf.raw))
    const issuer = pkijs.Certificate.fromBER(new Uint8Array(this.#issuer.raw))
    const request = new pkijs.OCSPRequest()
    await request.createForCertificate(leaf, { hashAlgorithm: 'SHA-1', issuerCertificate: issuer })
    const body = Buffer.from(request.toSchema(true).toBER())
    const answer = await fetch(this.#url, {
      method: 'POST',
      headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response' },
      body,
      signal: AbortSignal.timeout(FETCH_TIMEOUT),
    })
    if (answer.status !== 200) throw new Error(`the responder answered ${answer.status}`)
    const der = Buffer.from(await answer.arrayBuffer())
    const parsed = asn1js.fromBER(new Uint8Array(der))
    if (parsed.offset === -1) throw new Error('the response is not DER')
    const response = new pkijs.OCSPResponse({ schema: parsed.result })
    const status = response.responseStatus.valueBlock.valueDec
    if (status !== OCSP_RESPONSE_SUCCESSFUL) throw new Error(`the responder refused (OCSPResponseStatus ${status})`)
    if (response.responseBytes === undefined || response.responseBytes.responseType !== ID_PKIX_OCSP_BASIC) throw new Error('not a basic OCSP response')
    const basic = pkijs.BasicOCSPResponse.fromBER(response.responseBytes.response.valueBlock.valueHexView)
    if (!await basic.verify({ trustedCerts: [issuer], issuerCerts: [issuer] })) throw new Error('the response\'s signature does not verify against the issuer')
    const single = await basic.getCertificateStatus(leaf, issuer)
    if (!single.isForCertificate) throw new Error('the response is about another certificate')
    // 0 good, 1 revoked, 2 unknown: a revoked certificate's response is stapled all the same (clients must see it)
    if (single.status === 2) throw new Error('the responder does not know this certificate')
    if (single.status === 1) this.#hooks.onError(`OCSP: the certificate ${this.subject} is REVOKED according to ${this.#url}`)
    const data = basic.tbsResponseData.responses.find(r => r.certID.serialNumber.isEqual(leaf.serialNumber))!
    const thisUpdate = data.thisUpdate.getTime()
    const nextUpdate = data.nextUpdate?.getTime() ?? null
    const now = Date.now()
    // a little clock skew either way is normal; a response from the future or already stale is not
    if (thisUpdate > now + 5 * 60_000) throw new Error('the response\'s thisUpdate is in the future')
    if (nextUpdate !== null && nextUpdate <= now) throw new Error('the response is already past its nextUpdate')
    return { der, thisUpdate, nextUpdate }
  }
}

/** Every certificate of a store that can be stapled, by the PEM file's content. */
export function ocspEntryFor (chainPem: Buffer, hooks: OcspHooks): OcspEntry | null {
  const blocks = chainPem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  if (blocks.length === 0) return null
  const leaf = new X509Certificate(blocks[0]!)
  const url = responderUrl(leaf)
  if (url === null) return null
  const issuer = blocks.slice(1).map(pem => new X509Certificate(pem)).find(candidate => leaf.checkIssued(candidate))
  if (issuer === undefined) {
    hooks.onError(`OCSP: ${leaf.subject.replace(/\n/g, ', ')} names a responder but its file holds no issuer certificate after it: nothing to staple`)
    return null
  }
  return new OcspEntry(leaf, issuer, url, hooks)
}
