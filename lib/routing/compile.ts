/**
 * Routes of the configuration compiled once, at load: the action resolved to its upstream group,
 * the body of a fixed response encoded, and the filters (rp4's built-in policies, the route's own
 * rewrites, the library user's filters by name) compiled into one array per hook.
 */
import type { HttpModel, RouteModel } from '../model/model.js'
import { hideHeadersFilter, interceptErrorsFilter, rateLimitFilter } from '../filters/builtin.js'
import { forwardedFilter } from '../filters/forwarded.js'
import { requestHeadersFilter, responseHeadersFilter, rewritePathFilter, stripPrefixFilter } from '../filters/rewrite.js'
import { HttpCache } from '../filters/cache.js'
import { compressFilter } from '../filters/compress.js'
import { StaticFiles } from '../handlers/static.js'
import { compileFilters, type Filter } from '../session/filter.js'
import type { SessionAction, SessionRoute } from '../session/session.js'
import type { Group } from '../upstream/group.js'
import type { RouteMatch } from '../model/model.js'

export interface CompiledRoute extends SessionRoute {
  readonly match: RouteMatch
  /** The route's response cache, for purges; null without one. */
  readonly cache: HttpCache | null
}

export interface CompileContext {
  readonly groups: ReadonlyMap<string, Group>
  /** The library user's filters, by name. */
  readonly filters: ReadonlyMap<string, Filter>
  readonly http: HttpModel
}

export function compileRoute (route: RouteModel, context: CompileContext): CompiledRoute {
  const hop = [forwardedFilter(context.http.via)]
  const filters: Filter[] = []
  // rp4's policies first: a refused request costs no other filter, and on the way back (reverse
  // order) they see the response last, after the user's filters
  if (route.rateLimit !== null) filters.push(rateLimitFilter(route.rateLimit.rate, route.rateLimit.burst))
  if (context.http.hideHeaders.size > 0) filters.push(hideHeadersFilter(context.http.hideHeaders))
  if (route.interceptErrors) filters.push(interceptErrorsFilter())
  // nearest the client: what the user's filters and the cache produce is compressed per client
  if (route.compress !== null) filters.push(compressFilter(route.compress))
  for (const filter of route.filters) {
    switch (filter.kind) {
      case 'stripPrefix': filters.push(stripPrefixFilter(filter.prefix)); break
      case 'rewritePath': filters.push(rewritePathFilter(filter.pattern, filter.replacement)); break
      case 'requestHeaders': filters.push(requestHeadersFilter(filter)); break
      case 'responseHeaders': filters.push(responseHeadersFilter(filter)); break
      case 'user': {
        const user = context.filters.get(filter.name)
        if (user === undefined) throw new TypeError(`route ${route.name}: no filter named "${filter.name}" was given to createProxy({ filters })`)
        filters.push(user)
        break
      }
    }
  }
  // nearest the upstream: it stores what the backend sent, before anything above edits it
  const cache = route.cache === null ? null : new HttpCache(route.cache)
  if (cache !== null) filters.push(cache)
  return Object.freeze({
    name: route.name,
    match: route.match,
    cache,
    action: compileAction(route, context),
    chain: compileFilters(filters, hop),
    maxBodySize: route.maxBodySize,
    responseTimeout: route.timeouts.response,
    responseTotalTimeout: route.timeouts.responseTotal,
    hsts: route.hsts,
    requireClientCertificate: route.requireClientCertificate,
  })
}

function compileAction (route: RouteModel, context: CompileContext): SessionAction {
  const action = route.action
  switch (action.kind) {
    case 'proxy': {
      const group = context.groups.get(action.upstream)
      if (group === undefined) throw new TypeError(`route ${route.name}: no upstream group named "${action.upstream}"`)
      return Object.freeze({ kind: 'proxy', group })
    }
    case 'respond':
      return Object.freeze({ kind: 'respond', status: action.status, headers: action.headers, body: Buffer.from(action.body) })
    case 'redirect':
      return Object.freeze({ kind: 'redirect', location: action.location, status: action.status })
    case 'static': {
      const fallback = action.fallback === null ? null : context.groups.get(action.fallback)
      if (fallback === undefined) throw new TypeError(`route ${route.name}: no upstream group named "${action.fallback}"`)
      return Object.freeze({ kind: 'handler', handler: new StaticFiles(action), fallback })
    }
  }
}
