/**
 * Automatic certificates (ACME, RFC 8555) through acme-client: for each name a listener is
 * allowed to serve, a certificate is obtained when none is stored (at start, or on a handshake's
 * first use for a name the `ask` hook allows), renewed once a third of its lifetime is left,
 * and written to the storage directory, where the listener's certificate store loads it (the
 * reload path: no restart, open connections keep theirs).
 *
 * Only allowed names are ever requested: the configured list, or a name a pattern matches AND
 * the library user's `ask` hook accepts; a stranger's SNI cannot make rp4 ask a CA for anything.
 * A failure is retried with backoff (1 min, doubling, at most 1 h for renewals; a name refused by
 * `ask` is not asked about again for 10 min, at most 16 asks wait at once, and the memory of
 * refusals is bounded), and a certificate already stored keeps being served
 * while its renewal fails; each failure is a `proxyError` (code acme_failed, counted in stats()).
 *
 * Storage (0700 directories, 0600 keys), per CA directory so that staging and production never mix:
 *   STORAGE/HOST_OF_DIRECTORY/account.key            the ACME account's private key
 *   STORAGE/HOST_OF_DIRECTORY/account.json           its URL at the CA, and the contact email
 *   STORAGE/HOST_OF_DIRECTORY/NAME/cert.pem          the certificate chain (leaf first)
 *   STORAGE/HOST_OF_DIRECTORY/NAME/key.pem           its private key
 */
import type * as Acme from 'acme-client'
import { X509Certificate } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { LRUCache } from 'lru-cache'
import { clock, type Timed } from '../core/clock.js'
import { ACME_TLS_ALPN, type AcmeChallenges } from './acme-challenges.js'

export interface AcmeSettings {
  /** Names obtained at start. */
  names: readonly string[]
  /** `*.example.com` style patterns: a name one of them matches is obtained on first use if `ask` says yes. */
  patterns: readonly string[]
  email: string | null
  directory: string
  storage: string
  /** Challenge types in order of preference: 'http-01', 'tls-alpn-01'. */
  challenges: readonly string[]
}

export interface AcmeHooks {
  /** A certificate was written for `name` (obtained or renewed): load it now. */
  onCertificate (name: string, files: { cert: string, key: string }): void
  onError (message: string): void
  onInfo? (message: string): void
  /** Library API: may rp4 obtain a certificate for this name (matched by a pattern)? */
  ask? (name: string): boolean | Promise<boolean>
}

/** Where a name's certificate and key are stored. */
export function certificateFiles (settings: Pick<AcmeSettings, 'storage' | 'directory'>, name: string): { cert: string, key: string } {
  const dir = path.join(caDirectory(settings), name.replace(/^\*/, '_'))
  return { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') }
}

function caDirectory (settings: Pick<AcmeSettings, 'storage' | 'directory'>): string {
  const url = new URL(settings.directory)
  return path.join(settings.storage, (url.host + url.pathname).replace(/[^A-Za-z0-9.-]+/g, '_').replace(/_+$/, ''))
}

let library: typeof Acme | null = null

/**
 * acme-client, loaded on first use: it brings axios and node-forge, seconds of start-up on a busy
 * machine that a proxy without ACME must not pay.
 */
async function acmeClient (): Promise<typeof Acme> {
  if (library !== null) return library
  const acme = await import('acme-client')
  // it retries a failed request itself, up to 5 times 5 s apart and more: rp4 has its own backoff
  // per name (and says when it failed), so one quick retry for a blip is enough
  const settings = (acme.axios.defaults as unknown as { acmeSettings?: { retryMaxAttempts: number, retryDefaultDelay: number } }).acmeSettings
  if (settings !== undefined) {
    settings.retryMaxAttempts = 1
    settings.retryDefaultDelay = 2
  }
  library = acme
  return acme
}

const RETRY_MIN = 60_000
const RETRY_MAX = 3_600_000
const ASK_REFUSED_FOR = 600_000
/**
 * A stranger's SNI can name as many pattern-matching names as it likes: the names `ask` refused
 * are remembered in a bounded set (the oldest forgotten first, asked about again), and at most
 * this many asks wait at once (a name arriving beyond them is not asked now; its next handshake is).
 */
const ASK_REFUSED_MAX = 1024
const ASK_PENDING_MAX = 16

/** When a certificate should be renewed: a third of its lifetime before it ends. */
export function renewalTime (certPem: Buffer | string): number {
  const x509 = new X509Certificate(certPem)
  const from = Date.parse(x509.validFrom)
  const to = Date.parse(x509.validTo)
  return to - (to - from) / 3
}

function matches (pattern: string, name: string): boolean {
  if (!pattern.startsWith('*.')) return pattern === name
  const dot = name.indexOf('.')
  return dot > 0 && name.slice(dot + 1) === pattern.slice(2)
}

class Name implements Timed {
  readonly name: string
  readonly manager: AcmeManager
  deadline = 0
  retry = RETRY_MIN
  busy = false

  constructor (name: string, manager: AcmeManager) {
    this.name = name
    this.manager = manager
  }

  onTimeout (): void {
    this.deadline = 0
    void this.manager.obtain(this)
  }
}

export class AcmeManager {
  readonly settings: AcmeSettings
  readonly #challenges: AcmeChallenges
  readonly #hooks: AcmeHooks
  readonly #names = new Map<string, Name>()
  /** Names `ask` refused (or failed for), for ASK_REFUSED_FOR; bounded. */
  readonly #refused = new LRUCache<string, true>({ max: ASK_REFUSED_MAX, ttl: ASK_REFUSED_FOR, ttlAutopurge: false })
  /** Asks not answered yet. */
  #asking = 0
  #client: Acme.Client | null = null
  #closed = false

  constructor (settings: AcmeSettings, challenges: AcmeChallenges, hooks: AcmeHooks) {
    this.settings = settings
    this.#challenges = challenges
    this.#hooks = hooks
  }

  /** Names with a stored certificate that the configuration still allows: the listed ones, and those a pattern matches (obtained on first use before). */
  #storedNames (): string[] {
    const listed = this.settings.names.filter(name => existsSync(certificateFiles(this.settings, name).cert))
    let onDemand: string[] = []
    try {
      onDemand = readdirSync(caDirectory(this.settings))
        .filter(name => !listed.includes(name) && this.settings.patterns.some(pattern => matches(pattern, name)) && existsSync(certificateFiles(this.settings, name).cert))
    } catch {}
    return [...listed, ...onDemand]
  }

  /** The certificate files of every name already stored (what the store loads at start). */
  storedFiles (): Array<{ cert: string, key: string }> {
    return this.#storedNames().map(name => certificateFiles(this.settings, name)).filter(files => existsSync(files.key))
  }

  /** Every configured name, and every stored one a pattern allowed: stored ones scheduled for renewal, missing ones obtained now. */
  start (): void {
    mkdirSync(this.settings.storage, { recursive: true, mode: 0o700 })
    for (const name of new Set([...this.settings.names, ...this.#storedNames()])) this.#schedule(this.#entry(name))
  }

  /** A handshake asked for `name`, which no certificate covers: obtain one if it is allowed. */
  onUnknownName (name: string): void {
    if (this.#closed || this.#names.has(name)) return
    if (!this.settings.patterns.some(pattern => matches(pattern, name))) return
    if (this.#refused.has(name)) return
    const ask = this.#hooks.ask
    if (ask === undefined || this.#asking >= ASK_PENDING_MAX) return
    const entry = this.#entry(name)
    entry.busy = true
    this.#asking++
    Promise.resolve().then(() => ask(name)).then(allowed => {
      this.#asking--
      entry.busy = false
      if (allowed === true) return this.obtain(entry)
      this.#forget(entry)
      this.#refused.set(name, true)
    }, (err: unknown) => {
      this.#asking--
      entry.busy = false
      this.#forget(entry)
      this.#refused.set(name, true)
      this.#hooks.onError(`ACME: the ask hook failed for ${name}: ${(err as Error)?.message ?? String(err)}`)
    })
  }

  close (): void {
    this.#closed = true
    for (const entry of this.#names.values()) clock.delete(entry)
  }

  #forget (entry: Name): void {
    this.#names.delete(entry.name)
    clock.delete(entry)
  }

  #entry (name: string): Name {
    let entry = this.#names.get(name)
    if (entry === undefined) {
      entry = new Name(name, this)
      this.#names.set(name, entry)
      clock.add(entry)
    }
    return entry
  }

  /** Renew when due (a stored certificate), or obtain now (none). */
  #schedule (entry: Name): void {
    const files = certificateFiles(this.settings, entry.name)
    if (!existsSync(files.cert)) {
      void this.obtain(entry)
      return
    }
    const due = renewalTime(readFileSync(files.cert))
    const wait = due - Date.now()
    if (wait <= 0) {
      void this.obtain(entry)
      return
    }
    this.#hooks.onInfo?.(`ACME: certificate for ${entry.name} loaded from ${files.cert}, renewal due ${new Date(due).toISOString()}`)
    entry.deadline = clock.after(wait)
  }

  /** Obtain (or renew) `entry`'s certificate; on failure, try again later. Resolves whatever happens. */
  async obtain (entry: Name): Promise<void> {
    if (this.#closed || entry.busy) return
    entry.busy = true
    try {
      const files = await this.#order(entry.name)
      if (this.#closed) return
      entry.retry = RETRY_MIN
      this.#hooks.onInfo?.(`ACME: certificate for ${entry.name} obtained, stored in ${files.cert}`)
      this.#hooks.onCertificate(entry.name, files)
      this.#schedule(entry)
    } catch (err) {
      if (this.#closed) return
      const files = certificateFiles(this.settings, entry.name)
      const serving = existsSync(files.cert) ? ', the stored certificate is still served' : ''
      this.#hooks.onError(`ACME: no certificate for ${entry.name} from ${this.settings.directory} (next attempt in ${Math.round(entry.retry / 1000)}s${serving}): ${describe(err)}`)
      entry.deadline = clock.after(entry.retry)
      entry.retry = Math.min(RETRY_MAX, entry.retry * 2)
    } finally {
      entry.busy = false
    }
  }

  async #account (): Promise<Acme.Client> {
    if (this.#client !== null) return this.#client
    const acme = await acmeClient()
    const dir = caDirectory(this.settings)
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const keyFile = path.join(dir, 'account.key')
    const accountFile = path.join(dir, 'account.json')
    if (!existsSync(keyFile)) writeSecret(keyFile, await acme.crypto.createPrivateEcdsaKey())
    const accountKey = readFileSync(keyFile)
    let accountUrl: string | undefined
    try {
      accountUrl = (JSON.parse(readFileSync(accountFile, 'utf8')) as { url?: string }).url
    } catch {}
    const client = new acme.Client({ directoryUrl: this.settings.directory, accountKey, accountUrl })
    if (accountUrl === undefined) {
      await client.createAccount({ termsOfServiceAgreed: true, contact: this.settings.email === null ? undefined : [`mailto:${this.settings.email}`] })
      writeFileSync(accountFile, JSON.stringify({ url: client.getAccountUrl(), email: this.settings.email }, null, 2) + '\n', { mode: 0o600 })
    }
    this.#client = client
    return client
  }

  async #order (name: string): Promise<{ cert: string, key: string }> {
    const client = await this.#account()
    const acme = await acmeClient()
    const key = await acme.crypto.createPrivateEcdsaKey()
    const [, csr] = await acme.crypto.createCsr({ commonName: name, altNames: [name] }, key)
    const challenges = this.#challenges
    const chain = await client.auto({
      csr,
      email: this.settings.email ?? undefined,
      termsOfServiceAgreed: true,
      // rp4 answers the challenge itself: asking its own name over the network first proves nothing more
      skipChallengeVerification: true,
      challengePriority: [...this.settings.challenges],
      challengeCreateFn: async (authz, challenge, keyAuthorization) => {
        const type = challenge.type as string
        if (type === 'http-01') challenges.addHttp01(challenge.token, keyAuthorization)
        else if (type === 'tls-alpn-01') {
          const [alpnKey, alpnCert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization)
          challenges.addTlsAlpn01(authz.identifier.value, alpnCert, alpnKey)
        } else throw new Error(`challenge ${type} is not one rp4 answers`)
      },
      challengeRemoveFn: async (authz, challenge) => {
        const type = challenge.type as string
        if (type === 'http-01') challenges.removeHttp01(challenge.token)
        else if (type === 'tls-alpn-01') challenges.removeTlsAlpn01(authz.identifier.value)
      },
    })
    // checked before it replaces anything: a chain that does not parse must not break the name
    const leaf = new X509Certificate(chain)
    if (!leaf.checkHost(name.replace(/^\*\./, 'x.'))) throw new Error(`the CA issued a certificate for ${leaf.subjectAltName ?? leaf.subject}, not ${name}`)
    const files = certificateFiles(this.settings, name)
    mkdirSync(path.dirname(files.cert), { recursive: true, mode: 0o700 })
    // the key first: the store reloads when the certificate changes, and must find the new key by then
    writeSecret(files.key, key)
    writeAtomically(files.cert, Buffer.from(chain), 0o644)
    return files
  }
}

/** A private key: written whole (another name, then renamed) and readable by its owner only. */
function writeSecret (file: string, data: Buffer): void {
  writeAtomically(file, data, 0o600)
}

function writeAtomically (file: string, data: Buffer, mode: number): void {
  const temporary = `${file}.${process.pid}.tmp`
  writeFileSync(temporary, data, { mode })
  chmodSync(temporary, mode)
  renameSync(temporary, file)
}

function describe (err: unknown): string {
  const e = err as Error & { response?: { data?: { detail?: string } } }
  return e?.response?.data?.detail ?? e?.message ?? String(err)
}

export { ACME_TLS_ALPN }
