/**
 * The routes one listener serves, and the two fixed tables a listener may use instead: every
 * request redirected to https (a :80 listener beside a :443 one, or cleartext HTTP that reached a
 * port with certificates).
 */
import type { RequestHead } from '../http/message.js'
import { EMPTY_CHAIN } from '../session/filter.js'
import type { SessionRoute } from '../session/session.js'
import type { CompiledRoute } from './compile.js'
import { Router } from './router.js'
import { HTTP01_PREFIX } from '../tls/acme-challenges.js'

export class RouteTable {
  readonly #router: Router<SessionRoute>
  /** Answers ACME HTTP-01 challenges ahead of every route (routing/acme.ts); null: none asked for. */
  readonly #acme: SessionRoute | null

  constructor (routes: readonly CompiledRoute[], acme: SessionRoute | null = null) {
    this.#router = new Router(routes.map(route => ({ match: route.match, route })))
    this.#acme = acme
  }

  /** The route for `head`, or null when none matches (rp4 answers 404). */
  find (head: RequestHead): SessionRoute | null {
    // the CA asks with the name's Host: a route of the user's for that host must not take it
    if (this.#acme !== null && head.path.startsWith(HTTP01_PREFIX)) return this.#acme
    return this.#router.find(head)
  }
}

/**
 * Every request answered with a permanent redirect to the same URL over https (308: the method
 * and body are kept). `samePort`: the https URL keeps the Host header's port (cleartext that
 * reached the TLS port itself); otherwise it drops it (a :80 listener, https on 443).
 */
export function httpsRedirectTable (samePort: boolean, acme: SessionRoute | null = null): RouteTable {
  const route: CompiledRoute = Object.freeze({
    name: samePort ? 'https-redirect-same-port' : 'https-redirect',
    match: {},
    cache: null,
    action: Object.freeze({ kind: 'redirect' as const, location: samePort ? 'https://$host$path$query' : 'https://$hostname$path$query', status: 308 }),
    chain: EMPTY_CHAIN,
    maxBodySize: 0,
    responseTimeout: 0,
    responseTotalTimeout: 0,
    hsts: null,
    requireClientCertificate: false,
  })
  return new RouteTable([route], acme)
}
