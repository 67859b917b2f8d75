/**
 * The route that answers ACME HTTP-01 challenges (`GET /.well-known/acme-challenge/TOKEN`) on
 * every cleartext table of a proxy that obtains certificates: the CA asks on port 80, which may
 * be a listener that otherwise redirects everything to https. A token rp4 is not answering gets
 * a 404, as any other unknown path would.
 */
import { compileFilters, type Filter, type FilterSession } from '../session/filter.js'
import { HTTP01_PREFIX, type AcmeChallenges } from '../tls/acme-challenges.js'
import type { CompiledRoute } from './compile.js'

export function acmeChallengeRoute (challenges: AcmeChallenges): CompiledRoute {
  const answer: Filter = {
    name: 'acme-http-01',
    onRequest (session: FilterSession) {
      const path = session.request.path
      const keyAuthorization = path.startsWith(HTTP01_PREFIX) ? challenges.http01(path.slice(HTTP01_PREFIX.length)) : undefined
      if (keyAuthorization === undefined) return session.respond(404, [['Content-Type', 'text/plain; charset=utf-8']], 'no such ACME challenge\n')
      return session.respond(200, [['Content-Type', 'application/octet-stream']], keyAuthorization)
    },
  }
  return Object.freeze({
    name: 'acme-http-01',
    match: { path: { prefix: HTTP01_PREFIX.slice(0, -1) } },
    action: Object.freeze({ kind: 'respond' as const, status: 404, headers: [], body: Buffer.alloc(0) }),
    chain: compileFilters([answer]),
    maxBodySize: 0,
    responseTimeout: 0,
    responseTotalTimeout: 0,
    hsts: null,
    requireClientCertificate: false,
    cache: null,
  })
}
