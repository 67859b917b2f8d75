/**
 * The checks across keys, after each value was checked on its own: which form the options are
 * in (the flat shorthand and the full form do not mix), names and the references to them (a
 * route's `proxy`, a listener's `routes`, `upstream`, `tcpFallback` and passthrough groups, filter
 * names), duplicates (listener addresses and names, route names), one action per route, and the
 * settings that mean nothing where they were put. Each problem points at the reference or the
 * key that is wrong, not at what it refers to.
 */
import { parseHostPort, type HostPort } from './address.js'
import { matchesPrefix } from '../http/path.js'
import { FLAT_KEYS, FLAT_TO_FULL, FULL_KEYS } from './schema.js'
import { suggest, type Path, type Problem } from './problems.js'
import type { BadPaths, ValidateContext } from './problems.js'

type Obj = Record<string, unknown>

function isObj (value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function list (value: unknown): unknown[] {
  return Array.isArray(value) ? value : []
}

/** `a, b, c` (at most ten), for "(upstreams: ...)". */
function names (all: Iterable<string>): string {
  const items = [...all]
  return items.length > 10 ? items.slice(0, 10).join(', ') + ', ...' : items.join(', ')
}

export const ACTIONS = ['proxy', 'respond', 'redirect', 'static'] as const
/** Route keys that act on a forwarded request only. */
const PROXY_ONLY = ['stripPrefix', 'rewritePath', 'requestHeaders', 'timeouts', 'interceptErrors'] as const
/** Headers that frame a message or belong to one hop: rp4 writes them itself. */
const FRAMING = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer', 'proxy-connection'])

/** The default name of the route at `index` (from 0). */
export function defaultRouteName (index: number): string {
  return `route-${index + 1}`
}

/** A listener's address as written. */
export function listenText (listen: unknown): string {
  return typeof listen === 'number' ? String(listen) : typeof listen === 'string' ? listen.trim() : '?'
}

/**
 * The name of each listener: its own, or its address as written (`listeners[i]` when another
 * listener has that name already, as two on port 0 may).
 */
export function listenerNames (listeners: readonly unknown[]): string[] {
  const given = new Set(listeners.map(l => isObj(l) && typeof l.name === 'string' ? l.name : null).filter(n => n !== null))
  const used = new Set<string>()
  return listeners.map((l, i) => {
    if (isObj(l) && typeof l.name === 'string') return l.name
    let name = listenText(isObj(l) ? l.listen : undefined)
    if (given.has(name) || used.has(name)) name = `listeners[${i}]`
    used.add(name)
    return name
  })
}

export function isFullForm (options: Obj): boolean {
  return FULL_KEYS.some(key => options[key] !== undefined)
}

export function checkConsistency (options: Obj, context: ValidateContext, bad: BadPaths, problems: Problem[]): void {
  const full = FULL_KEYS.filter(key => options[key] !== undefined)
  const flat = FLAT_KEYS.filter(key => options[key] !== undefined)
  if (full.length > 0) {
    for (const key of flat) {
      problems.push({
        path: [key],
        at: 'key',
        message: `the flat shorthand cannot be mixed with the full form (${full.join(', ')}): there it is ${FLAT_TO_FULL[key]}`,
      })
    }
    checkFull(options, context, bad, problems)
    return
  }
  if (flat.length === 0) {
    problems.push({ path: [], message: 'nothing to run: give listen and targets (one proxy), or listeners, routes and upstreams' })
    return
  }
  checkFlat(options, bad, problems)
}

function checkFlat (o: Obj, bad: BadPaths, problems: Problem[]): void {
  if (o.listen === undefined) problems.push({ path: [], missing: 'listen', message: 'where to accept connections, [HOST]:PORT' })
  if (o.targets === undefined && o.static === undefined) problems.push({ path: [], missing: 'targets', message: 'the backend to forward to' })
  if (o.tcp !== true) return
  const tls = o.tls
  if (isObj(tls) && !bad.has(['tls']) && (list(tls.certificates).length > 0 || (isObj(tls.passthrough) && Object.keys(tls.passthrough).length > 0))) {
    problems.push({ path: ['tls'], at: 'key', with: ['tcp'], message: 'cannot be combined with {with}: a raw TCP relay neither terminates nor routes TLS' })
  }
  if (o.tcpFallback !== undefined && !bad.has(['tcpFallback'])) {
    problems.push({ path: ['tcpFallback'], at: 'key', with: ['tcp'], message: 'cannot be combined with {with}: every connection is relayed to the targets, none falls back' })
  }
}

function checkFull (o: Obj, context: ValidateContext, bad: BadPaths, problems: Problem[]): void {
  const upstreams = isObj(o.upstreams) ? o.upstreams : {}
  const filters = new Set(context.filters ?? [])
  if (o.listeners === undefined) problems.push({ path: [], missing: 'listeners', message: 'where to accept connections' })

  const groupRef = (path: Path, name: unknown): void => {
    if (typeof name !== 'string' || bad.has(path) || Object.hasOwn(upstreams, name)) return
    const known = Object.keys(upstreams)
    const close = suggest(name, known)
    const hint = known.length === 0 ? 'no upstreams are defined' : `upstreams: ${names(known)}`
    problems.push({ path, message: `no upstream named "${name}"${close !== null ? `: did you mean ${close}?` : ''} (${hint})` })
  }

  const routeNames = new Map<string, number>()
  list(o.routes).forEach((route, i) => {
    if (!isObj(route) || bad.has(['routes', i])) return
    checkRoute(route, i, routeNames, filters, groupRef, bad, problems)
  })

  const seenNames = new Map<string, number>()
  const addresses: Array<{ address: HostPort, index: number }> = []
  const named = listenerNames(list(o.listeners))
  list(o.listeners).forEach((listener, i) => {
    if (!isObj(listener) || bad.has(['listeners', i])) return
    const at = (...rest: Array<string | number>): Path => ['listeners', i, ...rest]
    const name = named[i]
    const same = seenNames.get(name)
    if (same !== undefined) {
      problems.push({ path: at('name'), message: `duplicate listener name "${name}" (also listeners[${same}])` })
    } else {
      seenNames.set(name, i)
    }
    if (!bad.has(at('listen')) && listener.listen !== undefined) {
      const address = parseHostPort(listenText(listener.listen), { hostRequired: false, portZero: true })
      if (typeof address !== 'string') {
        const clash = addresses.find(other => conflicts(other.address, address))
        if (clash !== undefined) {
          problems.push({ path: at('listen'), message: `"${listenText(listener.listen)}" is already listened on by listeners[${clash.index}]` })
        }
        addresses.push({ address, index: i })
      }
    }
    checkListener(listener, at, routeNames, groupRef, bad, problems)
  })

  for (const [name, group] of Object.entries(upstreams)) {
    if (!isObj(group) || bad.has(['upstreams', name])) continue
    const tls = group.tls
    if (!isObj(tls) || bad.has(['upstreams', name, 'tls'])) continue
    const secure = list(group.targets).some(t => /^\s*https:\/\//i.test(typeof t === 'string' ? t : isObj(t) && typeof t.address === 'string' ? t.address : ''))
    if (!secure) {
      problems.push({ path: ['upstreams', name, 'tls'], at: 'key', message: 'no target of this group uses TLS: write them as https://HOST[:PORT]' })
    }
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      problems.push({ path: ['upstreams', name, 'tls', tls.cert === undefined ? 'key' : 'cert'], at: 'key', message: 'cert and key go together (a client certificate for mutual TLS)' })
    }
  }
}

const WILDCARDS = new Set(['', '0.0.0.0', '::'])

/** Two listening addresses that cannot both be bound: the same port on the same or every interface. */
function conflicts (a: HostPort, b: HostPort): boolean {
  if (a.port !== b.port || a.port === 0) return false
  return a.host === b.host || WILDCARDS.has(a.host) || WILDCARDS.has(b.host)
}

function checkRoute (route: Obj, i: number, routeNames: Map<string, number>, filters: Set<string>,
  groupRef: (path: Path, name: unknown) => void, bad: BadPaths, problems: Problem[]): void {
  const at = (...rest: Array<string | number>): Path => ['routes', i, ...rest]
  const name = typeof route.name === 'string' ? route.name : defaultRouteName(i)
  const same = routeNames.get(name)
  if (same !== undefined) {
    problems.push({ path: route.name !== undefined ? at('name') : at(), message: `duplicate route name "${name}" (also routes[${same}])` })
  } else {
    routeNames.set(name, i)
  }

  const actions = ACTIONS.filter(key => route[key] !== undefined)
  if (actions.length === 0) {
    problems.push({ path: at(), message: 'no action: give one of proxy (an upstream group), respond, redirect or static' })
  } else if (actions.length > 1) {
    for (const extra of actions.slice(1)) {
      problems.push({ path: at(extra), at: 'key', message: `a second action beside ${actions[0]}: a route has exactly one of proxy, respond, redirect, static` })
    }
  }
  const files = route.static
  if (isObj(files) && files.fallback !== undefined && !bad.has(at('static', 'fallback'))) groupRef(at('static', 'fallback'), files.fallback)
  if (route.proxy !== undefined) {
    groupRef(at('proxy'), route.proxy)
  } else if (actions.length === 1 && !(isObj(files) && files.fallback !== undefined)) {
    for (const key of PROXY_ONLY) {
      if (route[key] !== undefined) problems.push({ path: at(key), at: 'key', message: `applies to proxy routes only (this one has ${actions[0]})` })
    }
  }

  const match = route.match
  if (isObj(match) && !bad.has(at('match'))) {
    if (match.path !== undefined && match.pathExact !== undefined) {
      problems.push({ path: at('match', 'pathExact'), at: 'key', message: 'give path (a prefix) or pathExact, not both' })
    }
    const prefix = match.path
    const strip = route.stripPrefix
    if (typeof prefix === 'string' && typeof strip === 'string' && !bad.has(at('match', 'path')) && !bad.has(at('stripPrefix')) &&
      !matchesPrefix(prefix, strip) && !matchesPrefix(strip, prefix)) {
      problems.push({ path: at('stripPrefix'), message: `"${strip}" is never a prefix of the paths this route matches (match.path "${prefix}")` })
    }
  }

  list(route.filters).forEach((filter, j) => {
    if (typeof filter !== 'string' || bad.has(at('filters', j)) || filters.has(filter)) return
    const hint = filters.size === 0
      ? 'filters are registered by the library, createProxy({ filters }), and none are here'
      : `registered: ${names(filters)}`
    problems.push({ path: at('filters', j), message: `no filter named "${filter}" (${hint})` })
  })

  for (const side of ['requestHeaders', 'responseHeaders'] as const) {
    const edits = route[side]
    if (!isObj(edits) || bad.has(at(side))) continue
    for (const op of ['set', 'add'] as const) {
      if (isObj(edits[op])) framing(Object.keys(edits[op] as Obj), name => at(side, op, name), 'key', problems)
    }
    list(edits.remove).forEach((header, j) => {
      if (typeof header === 'string') framing([header], () => at(side, 'remove', j), 'value', problems)
    })
  }
  const respond = route.respond
  if (isObj(respond) && isObj(respond.headers) && !bad.has(at('respond', 'headers'))) {
    framing(Object.keys(respond.headers), name => at('respond', 'headers', name), 'key', problems)
  }
}

function framing (headers: string[], path: (name: string) => Path, where: 'key' | 'value', problems: Problem[]): void {
  for (const header of headers) {
    if (FRAMING.has(header.toLowerCase())) {
      problems.push({ path: path(header), at: where, message: `"${header}" frames the message or belongs to one hop: rp4 writes it itself` })
    }
  }
}

function checkListener (listener: Obj, at: (...rest: Array<string | number>) => Path, routeNames: Map<string, number>,
  groupRef: (path: Path, name: unknown) => void, bad: BadPaths, problems: Problem[]): void {
  if (listener.protocol === 'tcp') {
    if (listener.upstream === undefined) {
      problems.push({ path: at(), missing: 'upstream', message: 'protocol tcp relays every connection to this upstream group' })
    } else {
      groupRef(at('upstream'), listener.upstream)
    }
    for (const key of ['tls', 'tcpFallback', 'routes', 'redirectToHttps'] as const) {
      if (listener[key] !== undefined) problems.push({ path: at(key), at: 'key', message: 'does not apply to protocol tcp: every connection is relayed raw to upstream' })
    }
    return
  }
  if (listener.upstream !== undefined) {
    problems.push({ path: at('upstream'), at: 'key', message: 'only for protocol: tcp (here HTTP goes by routes, other bytes to tcpFallback)' })
  }
  if (listener.tcpFallback !== undefined) groupRef(at('tcpFallback'), listener.tcpFallback)

  const tls = listener.tls
  let passthrough = 0
  if (isObj(tls) && !bad.has(at('tls'))) {
    const seen = new Map<string, string>()
    if (isObj(tls.passthrough)) {
      for (const [name, group] of Object.entries(tls.passthrough)) {
        if (bad.has(at('tls', 'passthrough', name))) continue
        passthrough++
        const canonical = name.toLowerCase().replace(/\.$/, '')
        const first = seen.get(canonical)
        if (first !== undefined) problems.push({ path: at('tls', 'passthrough', name), at: 'key', message: `the same server name as "${first}"` })
        seen.set(canonical, name)
        groupRef(at('tls', 'passthrough', name), group)
        if (canonical === '*' && list(tls.certificates).length > 0) {
          problems.push({ path: at('tls', 'passthrough', name), at: 'key', message: '"*" relays every name the others do not: the certificates would never be used' })
        }
      }
    }
    if (list(tls.certificates).length === 0 && passthrough === 0 && tls.acme === undefined && !bad.has(at('tls', 'certificates'))) {
      problems.push({ path: at('tls'), at: 'key', message: 'give certificates (to terminate TLS here) or passthrough (to relay it by server name)' })
    }
    const clientCertificates = tls.clientCertificates
    if (isObj(clientCertificates) && list(tls.certificates).length === 0 && tls.acme === undefined && !bad.has(at('tls', 'clientCertificates'))) {
      problems.push({ path: at('tls', 'clientCertificates'), at: 'key', message: 'asks for client certificates in handshakes rp4 makes: give certificates too' })
    }
    // a required certificate that plain HTTP on the same port would walk around
    if (isObj(clientCertificates) && (clientCertificates.mode ?? 'require') === 'require' && tls.cleartext === 'serve') {
      problems.push({ path: at('tls', 'cleartext'), at: 'value', with: at('tls', 'clientCertificates'), message: 'serve beside {with} (mode require): cleartext requests would be served without a certificate; use redirect or refuse' })
    }
  }

  const redirect = listener.redirectToHttps === true
  if (redirect && listener.tls !== undefined) {
    problems.push({ path: at('redirectToHttps'), at: 'key', message: 'on a TLS listener, cleartext HTTP is redirected by tls.cleartext: redirect (the default)' })
  }
  if (redirect && listener.routes !== undefined) {
    problems.push({ path: at('routes'), at: 'key', message: 'a redirectToHttps listener answers every request itself: routes do not apply' })
  }

  let served = routeNames.size
  if (Array.isArray(listener.routes) && !bad.has(at('routes'))) {
    const listed = new Set<string>()
    listener.routes.forEach((name, j) => {
      if (typeof name !== 'string' || bad.has(at('routes', j))) return
      if (listed.has(name)) problems.push({ path: at('routes', j), message: `"${name}" is listed twice` })
      listed.add(name)
      if (!routeNames.has(name)) {
        const close = suggest(name, routeNames.keys())
        const hint = routeNames.size === 0 ? 'no routes are defined' : `routes: ${names(routeNames.keys())}`
        problems.push({ path: at('routes', j), message: `no route named "${name}"${close !== null ? `: did you mean ${close}?` : ''} (${hint})` })
      }
    })
    served = listed.size
  }
  if (!redirect && served === 0 && passthrough === 0 && listener.tcpFallback === undefined) {
    problems.push({ path: at(), message: 'serves nothing: no route (and no tls.passthrough or tcpFallback)' })
  }
}
