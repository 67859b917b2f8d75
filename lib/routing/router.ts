/**
 * Which route serves a request: by host first, then by path, method and headers, in the order the
 * routes were written.
 *
 * Host: routes naming the exact host come first, then those naming `*.suffix` wildcards that
 * cover it (the longest suffix first; a wildcard covers any depth of labels, as nginx's does),
 * then routes with no host condition. Within each of those, the first route (in configuration
 * order) whose path, method and header conditions all hold wins. Hosts are compared lowercased,
 * without port or trailing dot.
 *
 * Path: `exact` compares the whole path; `prefix` matches whole segments (`/api` matches `/api`
 * and `/api/x`, not `/apix`; a prefix ending in `/` matches what starts with it). Both match the
 * normalized path (see path.ts), never the query.
 */
import type { RequestHead } from '../http/message.js'
import type { HeaderCondition, RouteMatch } from '../model/model.js'
import { matchesPrefix, matchingPath } from '../http/path.js'

interface Candidate<R> {
  route: R
  /** Position in the configuration: the order within each host class. */
  order: number
  exact: string | null
  prefix: string | null
  methods: readonly string[] | null
  headers: readonly HeaderCondition[] | null
}

export class Router<R> {
  readonly #byHost = new Map<string, Array<Candidate<R>>>()
  readonly #bySuffix = new Map<string, Array<Candidate<R>>>()
  readonly #anyHost: Array<Candidate<R>> = []
  /** The longest wildcard suffix, in labels: no need to look further up a long host name. */
  #deepestSuffix = 0

  constructor (routes: ReadonlyArray<{ match: RouteMatch, route: R }>) {
    routes.forEach(({ match, route }, order) => {
      const path = match.path ?? null
      const candidate: Candidate<R> = {
        route,
        order,
        exact: path !== null && 'exact' in path ? path.exact : null,
        prefix: path !== null && 'prefix' in path ? path.prefix : null,
        methods: match.methods !== undefined && match.methods !== null && match.methods.length > 0 ? match.methods : null,
        headers: match.headers !== undefined && match.headers !== null && match.headers.length > 0 ? match.headers : null,
      }
      const hosts = match.hosts ?? []
      if (hosts.length === 0) this.#anyHost.push(candidate)
      for (const host of hosts) {
        if (host.startsWith('*.')) {
          const suffix = host.slice(2)
          push(this.#bySuffix, suffix, candidate)
          this.#deepestSuffix = Math.max(this.#deepestSuffix, suffix.split('.').length)
        } else {
          push(this.#byHost, host, candidate)
        }
      }
    })
  }

  /** The route for `head`, or null when none matches. Host and path are worked out only when a route asks about them. */
  find (head: RequestHead): R | null {
    const lookup: Lookup = { head, path: null }
    if (this.#byHost.size === 0 && this.#bySuffix.size === 0) return first(this.#anyHost, lookup)
    const host = head.host
    const exact = this.#byHost.get(host)
    if (exact !== undefined) {
      const found = first(exact, lookup)
      if (found !== null) return found
    }
    if (this.#bySuffix.size > 0) {
      // longest suffix first: for a.b.example.com, b.example.com then example.com then com
      let dot = host.indexOf('.')
      const labels = host.split('.').length
      let depth = labels - 1
      while (dot !== -1) {
        if (depth <= this.#deepestSuffix) {
          const list = this.#bySuffix.get(host.slice(dot + 1))
          if (list !== undefined) {
            const found = first(list, lookup)
            if (found !== null) return found
          }
        }
        dot = host.indexOf('.', dot + 1)
        depth--
      }
    }
    return first(this.#anyHost, lookup)
  }
}

function push<R> (map: Map<string, Array<Candidate<R>>>, key: string, candidate: Candidate<R>): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [candidate])
  else list.push(candidate)
}

/** One request being routed: its normalized path, worked out on first need. */
interface Lookup {
  readonly head: RequestHead
  path: string | null
}

function routingPath (lookup: Lookup): string {
  if (lookup.path !== null) return lookup.path
  const path = lookup.head.path
  return (lookup.path = path === '' ? '/' : matchingPath(path))
}

function first<R> (list: ReadonlyArray<Candidate<R>>, lookup: Lookup): R | null {
  const head = lookup.head
  for (let i = 0; i < list.length; i++) {
    const c = list[i]
    if (c.exact !== null && routingPath(lookup) !== c.exact) continue
    if (c.prefix !== null && !matchesPrefix(routingPath(lookup), c.prefix)) continue
    if (c.methods !== null && !c.methods.includes(head.method)) continue
    if (c.headers !== null && !headersMatch(c.headers, head)) continue
    return c.route
  }
  return null
}

function headersMatch (conditions: readonly HeaderCondition[], head: RequestHead): boolean {
  for (const condition of conditions) {
    const value = head.headers.get(condition.name)
    if (value === undefined) return false
    if (condition.value !== undefined && value.trim() !== condition.value) return false
  }
  return true
}
