/**
 * The certificates rp4 terminates TLS with: loaded from PEM files, chosen per connection by the
 * server name the client asked for, and reloaded when the files change on disk (a renewal) without
 * a restart. A reload swaps whole sets: connections already established keep the context they
 * were handshaken with; the next handshake gets the new one. A set that fails to load (a key that
 * does not match its certificate, a file half written) is reported and the previous set stays.
 *
 * Every context shares the listener's ticket keys (ticket-keys.ts), kept across reloads, so that
 * session tickets (resumption without a full handshake) stay valid whichever certificate issued
 * them and after a renewal, until the keys rotate.
 */
import { X509Certificate } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls'
/** A certificate chain and its key, PEM file names. */
interface CertificateFiles { readonly cert: string, readonly key: string }
import { clock, type Timed } from '../core/clock.js'
import { installTicketKey, TicketKeys, type TicketKeyUser } from './ticket-keys.js'
import { ocspEntryFor, type OcspEntry, type OcspHooks } from './ocsp.js'

const SESSION_ID_CONTEXT = 'rp4'

interface Entry {
  names: string[]
  context: SecureContext
  /** OCSP stapling for this certificate; null: it names no responder, or stapling is off. */
  ocsp: OcspEntry | null
}

interface Loaded {
  entries: Entry[]
  exact: Map<string, SecureContext>
  /** The entries by context: what a handshake staples. */
  byContext: Map<SecureContext, Entry>
  /** `*.b.test` under `b.test`: the name with its first label removed is looked up here. */
  wildcard: Map<string, SecureContext>
}

export interface CertificateHooks {
  /** After the initial load and after each successful reload: every name, in file order. */
  onLoad (names: string[]): void
  onReloadError (error: Error): void
  /** OCSP stapling: given, certificates that name a responder are stapled (tls.ocspStapling); null: off. */
  ocsp?: OcspHooks | null
}

/** Names a certificate is valid for: its subjectAltName DNS entries, or else its subject CN. */
export function certificateNames (pem: Buffer | string): string[] {
  const x509 = new X509Certificate(pem)
  const names: string[] = []
  for (const entry of (x509.subjectAltName ?? '').split(/,\s*/)) {
    if (entry.startsWith('DNS:')) names.push(entry.slice(4).toLowerCase().replace(/\.$/, ''))
  }
  if (names.length === 0) {
    const cn = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject)
    if (cn !== null) names.push(cn[1].toLowerCase())
  }
  return names
}

function stamp (file: string): string {
  try {
    const st = statSync(file)
    return `${st.ino}:${st.size}:${st.mtimeMs}`
  } catch {
    return 'missing'
  }
}

export class CertificateStore implements Timed, TicketKeyUser {
  readonly #files: CertificateFiles[]
  readonly #interval: number
  readonly #hooks: CertificateHooks
  readonly #options: SecureContextOptions
  readonly #tickets: TicketKeys
  /** OCSP state by certificate fingerprint, kept across reloads. */
  #stapling = new Map<string, OcspEntry>()
  #loaded: Loaded
  #stamps: string[]
  deadline = 0

  /**
   * Loads every pair now; throws a TypeError naming the option when one cannot be used.
   * @param options what every context is made with besides its pair (the profile: tls/profile.ts)
   */
  constructor (files: readonly CertificateFiles[], reloadInterval: number, hooks: CertificateHooks, options: SecureContextOptions = {}, tickets: TicketKeys = new TicketKeys(0)) {
    this.#files = [...files]
    this.#options = options
    this.#tickets = tickets
    this.#interval = reloadInterval
    this.#hooks = hooks
    this.#stamps = this.#currentStamps()
    try {
      this.#loaded = this.#load()
    } catch (err) {
      throw new TypeError(`option ${(err as Error).message}`)
    }
    hooks.onLoad(this.names())
    tickets.use(this)
    if (reloadInterval > 0) {
      this.deadline = clock.after(reloadInterval)
      clock.add(this)
    }
  }

  /** The ticket keys every context here issues and accepts tickets with (their owner closes them). */
  get tickets (): TicketKeys { return this.#tickets }

  names (): string[] {
    return this.#loaded.entries.flatMap(entry => entry.names)
  }

  /** Whether some certificate is valid for `name` (exact or wildcard); the default one does not count. */
  covers (name: string): boolean {
    return this.#match(name) !== undefined
  }

  /**
   * The context for a handshake asking for `name` (null: no SNI): the matching certificate, else
   * the first; null when there is none at all (ACME has not obtained one yet).
   */
  select (name: string | null): SecureContext | null {
    return (name === null ? undefined : this.#match(name)) ?? this.#loaded.entries[0]?.context ?? null
  }

  /** A pair that came into being (an ACME certificate): loaded now, and watched from now on. */
  add (pair: CertificateFiles): void {
    if (!this.#files.some(f => f.cert === pair.cert && f.key === pair.key)) this.#files.push(pair)
    this.check()
  }

  #match (name: string): SecureContext | undefined {
    const { exact, wildcard } = this.#loaded
    const found = exact.get(name)
    if (found !== undefined) return found
    const dot = name.indexOf('.')
    // a wildcard stands for exactly one label: *.b.test covers x.b.test, not b.test nor y.x.b.test
    return dot > 0 ? wildcard.get(name.slice(dot + 1)) : undefined
  }

  /** Load now if the files changed since the last look (also what the periodic check runs). */
  check (): boolean {
    const stamps = this.#currentStamps()
    if (stamps.every((s, i) => s === this.#stamps[i])) return false
    // remembered even when loading fails: a broken set is reported once, and retried on the next change
    this.#stamps = stamps
    try {
      this.#loaded = this.#load()
    } catch (err) {
      this.#hooks.onReloadError(err as Error)
      return false
    }
    this.#hooks.onLoad(this.names())
    return true
  }

  onTimeout (): void {
    this.check()
    this.deadline = clock.after(this.#interval)
  }

  ticketKeysChanged (key: Buffer): void {
    for (const entry of this.#loaded.entries) installTicketKey(entry.context, key)
  }

  close (): void {
    clock.delete(this)
    this.#tickets.release(this)
    for (const entry of this.#stapling.values()) entry.close()
  }

  #currentStamps (): string[] {
    return this.#files.flatMap(pair => [stamp(pair.cert), stamp(pair.key)])
  }

  #load (): Loaded {
    const loaded: Loaded = { entries: [], exact: new Map(), wildcard: new Map(), byContext: new Map() }
    const stapling = new Map<string, OcspEntry>()
    this.#files.forEach((pair, i) => {
      const cert = read(pair.cert, `tls.certificates[${i}].cert`)
      const key = read(pair.key, `tls.certificates[${i}].key`)
      let names: string[]
      let context: SecureContext
      try {
        names = certificateNames(cert)
        // sessionIdContext: OpenSSL refuses to resume a session whose client certificate it
        // verified unless the context names the application (tls.Server sets one; a bare context has none)
        context = createSecureContext({
          ...this.#options,
          cert,
          key,
          ticketKeys: this.#tickets.current,
          // a listener with a session cache gives its own session lifetime (tickets carry it too)
          sessionTimeout: this.#options.sessionTimeout ?? this.#tickets.lifetime,
          sessionIdContext: SESSION_ID_CONTEXT,
        })
      } catch (err) {
        throw new Error(`tls.certificates[${i}] (${pair.cert}, ${pair.key}): ${(err as Error).message}`)
      }
      const ocsp = this.#stapler(cert, stapling)
      const entry = { names, context, ocsp }
      loaded.entries.push(entry)
      loaded.byContext.set(context, entry)
      for (const name of names) {
        // the first pair naming a host wins, as in the order given
        if (name.startsWith('*.')) {
          if (!loaded.wildcard.has(name.slice(2))) loaded.wildcard.set(name.slice(2), context)
        } else if (!loaded.exact.has(name)) {
          loaded.exact.set(name, context)
        }
      }
    })
    // responses already fetched are kept for certificates still here; the others stop
    for (const [fingerprint, entry] of this.#stapling) if (!stapling.has(fingerprint)) entry.close()
    for (const [fingerprint, entry] of stapling) if (!this.#stapling.has(fingerprint)) entry.start()
    this.#stapling = stapling
    return loaded
  }

  /** The OCSP state of the certificate in `chain`: the one already kept for it, or a new one. */
  #stapler (chain: Buffer, into: Map<string, OcspEntry>): OcspEntry | null {
    const hooks = this.#hooks.ocsp
    if (hooks == null) return null
    const fingerprint = new X509Certificate(chain).fingerprint256
    const entry = this.#stapling.get(fingerprint) ?? into.get(fingerprint) ?? ocspEntryFor(chain, hooks)
    if (entry !== null) into.set(fingerprint, entry)
    return entry
  }

  /** The OCSP response to staple in a handshake made with `context` (from `select`); null: none. */
  staple (context: SecureContext): Buffer | null {
    return this.#loaded.byContext.get(context)?.ocsp?.response ?? null
  }

  /** Whether any certificate here is stapled (a handshake then looks for a response). */
  get stapling (): boolean { return this.#stapling.size > 0 }
}

function read (file: string, name: string): Buffer {
  try {
    return readFileSync(file)
  } catch (err) {
    throw new Error(`${name}: cannot read "${file}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}
