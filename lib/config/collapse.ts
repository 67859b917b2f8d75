/**
 * What today's runtime takes: `createProxy` reads the flat `ProxyOptions`, with numbers for
 * durations and sizes, until it reads the Model. A flat file converts as it is; a full-form file
 * converts when it says no more than the flat form can: one listener, one catch-all route
 * proxying to one upstream group (what `rp4 config --from-flags` prints). Whether it does is not
 * guessed key by key: the flat options found are built into a model and compared with the file's
 * own, names aside.
 */
import { isDeepStrictEqual } from 'node:util'
import type { TSchema } from '@sinclair/typebox'
import type { ProxyOptions } from './options.js'
import type { Model } from './model.js'
import { OptionsSchema, childSchema, meta, type Options } from './schema.js'
import { parseUnit } from './units.js'
import { buildModel } from './build.js'
import { isFullForm } from './consistency.js'
import { FALLBACK_GROUP, FLAT_GROUP, passthroughGroup } from './expand.js'

type Obj = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any

/** Durations and sizes as numbers (ms, bytes), a port as a string: what `createProxy` checks for. */
export function inLibraryUnits (options: Options): ProxyOptions {
  const walk = (schema: TSchema | undefined, value: unknown): unknown => {
    if (schema === undefined) return value
    const m = meta(schema)
    if (m.unit !== undefined && (typeof value === 'number' || typeof value === 'string')) {
      const parsed = parseUnit(m.unit, value)
      return typeof parsed === 'number' ? parsed : value
    }
    if (m.check === 'listen' && typeof value === 'number') return String(value)
    if (Array.isArray(value)) return value.map(item => walk(childSchema(schema, 0, item), item))
    if (value !== null && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, walk(childSchema(schema, key, item), item)]))
    }
    return value
  }
  return walk(OptionsSchema, options) as ProxyOptions
}

/**
 * The options `createProxy` takes for `options` (valid, either form), or why the runtime cannot
 * run them yet.
 */
export function runtimeOptions (options: Options): ProxyOptions | string {
  if (!isFullForm(options)) return inLibraryUnits(options)
  const found = flatten(options as Obj)
  if (typeof found === 'string') return found
  const { flat, names } = found
  if (!isDeepStrictEqual(comparable(buildModel(flat), new Map()), comparable(buildModel(options), names))) {
    return 'it says more than one listener, one catch-all route and one upstream group can (TLS cleartext other than serve, several fallback or connect timeouts, weights, ...)'
  }
  return inLibraryUnits(flat)
}

function address (target: unknown): string {
  return typeof target === 'string' ? target : (target as Obj).address as string
}

/** The flat options a full form would be, and the flat names of its groups; or why there are none. */
function flatten (o: Obj): { flat: Options, names: Map<string, string> } | string {
  const listeners = o.listeners as Obj[]
  if (listeners.length !== 1) return `${listeners.length} listeners (one only)`
  const [l] = listeners
  if (l.redirectToHttps === true) return 'a redirectToHttps listener'
  const routes = (o.routes ?? []) as Obj[]
  const groups = (o.upstreams ?? {}) as Record<string, Obj>
  const names = new Map<string, string>()
  const flat: Obj = { listen: l.listen }
  let group: Obj

  if (l.protocol === 'tcp') {
    if (routes.length > 0) return 'routes beside a tcp listener'
    group = groups[l.upstream as string]
    names.set(l.upstream as string, FLAT_GROUP)
    flat.tcp = true
  } else {
    if (routes.length !== 1) return `${routes.length} routes (one only, matching every request)`
    const [r] = routes
    if (r.proxy === undefined) return 'a route that does not proxy'
    if (r.match !== undefined || r.stripPrefix !== undefined || r.rewritePath !== undefined || r.requestHeaders !== undefined ||
      r.responseHeaders !== undefined || (r.filters !== undefined && (r.filters as unknown[]).length > 0)) {
      return 'a route with a match, path rewriting, header edits or filters'
    }
    group = groups[r.proxy as string]
    names.set(r.proxy as string, FLAT_GROUP)
    Object.assign(flat, { maxBodySize: r.maxBodySize, interceptErrors: r.interceptErrors, rateLimit: r.rateLimit })
    flat.timeouts = { response: r.timeouts?.response, responseTotal: r.timeouts?.responseTotal }
    if (typeof l.tcpFallback === 'string') {
      const fallback = groups[l.tcpFallback]
      if (l.tcpFallback === r.proxy) return 'a tcpFallback to the group the route proxies to'
      names.set(l.tcpFallback, FALLBACK_GROUP)
      flat.tcpFallback = (fallback.targets as unknown[]).map(address)
    }
    if (l.tls !== undefined) {
      const passthrough: Record<string, string> = {}
      let i = 0
      for (const [name, target] of Object.entries((l.tls.passthrough ?? {}) as Record<string, string>)) {
        const targets = groups[target].targets as unknown[]
        if (targets.length !== 1 || names.has(target)) return `passthrough to a group of ${targets.length} targets, or one used elsewhere`
        names.set(target, passthroughGroup(i++))
        passthrough[name] = address(targets[0])
      }
      flat.tls = { certificates: l.tls.certificates, passthrough, reloadInterval: l.tls.reloadInterval }
    }
  }
  flat.targets = (group.targets as unknown[]).map(address)
  if (group.tls !== undefined) flat.upstreamTls = { ca: group.tls.ca, verify: group.tls.verify }
  flat.upstream = { maxConnections: group.maxConnections, maxQueue: group.maxQueue, pipelining: group.pipelining }
  const t = (flat.timeouts ?? {}) as Obj
  Object.assign(t, {
    connect: group.timeouts?.connect,
    upstreamIdle: group.timeouts?.idle,
    failedTarget: group.timeouts?.failedTarget,
    detect: l.timeouts?.detect,
    tlsHandshake: l.timeouts?.tlsHandshake,
    tcpIdle: l.timeouts?.tcpIdle,
  })
  const h = (o.http ?? {}) as Obj
  Object.assign(t, { clientIdle: h.timeouts?.clientIdle, requestHead: h.timeouts?.requestHead, requestBody: h.timeouts?.requestBody })
  flat.timeouts = t
  Object.assign(flat, {
    access: l.access,
    maxHeaderSize: h.maxHeaderSize,
    maxRequestLine: h.maxRequestLine,
    maxHeaders: h.maxHeaders,
    maxPipelinedRequests: h.maxPipelinedRequests,
    minDataRate: h.minDataRate,
    via: h.via,
    hideHeaders: h.hideHeaders,
    allowUnderscoresInHeaders: h.underscoresInHeaders,
    limits: o.limits,
  })
  for (const name of Object.keys(groups)) {
    if (!names.has(name)) return `upstream group ${name}, which the flat form has no place for`
  }
  return { flat: defined(flat) as Options, names }
}

/** A copy without undefined members, at any depth. */
function defined (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(defined)
  if (value === null || typeof value !== 'object') return value
  const out: Obj = {}
  for (const [key, item] of Object.entries(value)) {
    if (item === undefined) continue
    const cleaned = defined(item)
    if (cleaned !== null && typeof cleaned === 'object' && !Array.isArray(cleaned) && Object.keys(cleaned).length === 0) continue
    out[key] = cleaned
  }
  return out
}

/** A model with names that mean nothing to the runtime left out, and groups renamed as the flat form names them. */
function comparable (model: Model, rename: Map<string, string>): unknown {
  const group = (name: string | null): string | null => name === null ? null : rename.get(name) ?? name
  const allRoutes = model.routes.map(r => r.name)
  return {
    listeners: model.listeners.map(l => ({
      ...l,
      name: '',
      upstream: group(l.upstream),
      tcpFallback: group(l.tcpFallback),
      routes: l.routes === null || isDeepStrictEqual([...l.routes], allRoutes) ? null : l.routes,
      tls: l.tls === null ? null : { ...l.tls, passthrough: l.tls.passthrough.map(p => ({ name: p.name, upstream: group(p.upstream) })) },
    })),
    routes: model.routes.map(r => ({ ...r, name: '', action: r.action.kind === 'proxy' ? { ...r.action, upstream: group(r.action.upstream) } : r.action })),
    upstreams: [...model.upstreams].map(([name, g]) => [group(name), { ...g, name: group(g.name) }]).sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    http: model.http,
    limits: model.limits,
  }
}
