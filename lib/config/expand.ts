/**
 * The flat shorthand as the full form it stands for: one listener named `default`, one catch-all
 * route named `default` proxying to one upstream group named `default` (the targets), a group
 * `tcp-fallback` for `tcpFallback` targets, and one group per TLS passthrough name
 * (`passthrough-1`, ...). Values are carried as written (units are converted later, once, by
 * build.ts), so that the full form prints back as the user would write it (`rp4 config
 * --from-flags`) and loads back to the same model.
 *
 * What the flat form does implicitly is written out: on the flat listener, cleartext HTTP beside
 * TLS is served (`cleartext: serve`), as it always was. No TCP fallback unless `tcpFallback` names
 * one: the targets are HTTP backends, reached only through the HTTP engine.
 */
import type { Options } from './schema.js'
import type { Path } from './problems.js'
import { parseTargetSpec } from './balance.js'

export const FLAT_LISTENER = 'default'
export const FLAT_ROUTE = 'default'
export const FLAT_GROUP = 'default'
export const FALLBACK_GROUP = 'tcp-fallback'

export function passthroughGroup (index: number): string {
  return `passthrough-${index + 1}`
}

type Obj = Record<string, unknown>

export interface Expanded {
  options: Options
  /** Full-form paths and the flat paths they came from, to word a problem as the user wrote it. */
  origins: ReadonlyArray<readonly [Path, Path]>
}

/** An object without its undefined members; undefined itself when nothing is left. */
function compact<T extends Obj> (object: T): T | undefined {
  const out: Obj = {}
  for (const [key, value] of Object.entries(object)) {
    if (value !== undefined) out[key] = value
  }
  return Object.keys(out).length === 0 ? undefined : out as T
}

function isSecure (target: unknown): boolean {
  return typeof target === 'string' && /^\s*https:\/\//i.test(target)
}

/** A flat target with options (`HOST:PORT,weight=3`) as the full form's `{ address, weight }`; a plain one as it is. */
function fullTarget (text: string): unknown {
  if (!text.includes(',')) return text
  const spec = parseTargetSpec(text)
  return typeof spec === 'string' ? text : spec
}

export function expandFlat (o: Options): Expanded {
  const origins: Array<[Path, Path]> = []
  const from = (full: Path, flat: Path): void => { origins.push([full, flat]) }
  const t = o.timeouts ?? {}
  const tcp = o.tcp === true
  const raw = compact({ connect: t.connect, failedTarget: t.failedTarget })

  const upstreams: Obj = {}
  const targets = o.targets ?? []
  // files alone need no backend: `--static DIR` without `--to` answers 404 for what is not there
  const backends = o.targets !== undefined || o.static === undefined
  if (backends) upstreams[FLAT_GROUP] = compact({
    targets: targets.map(fullTarget),
    policy: o.balance,
    hashLoadFactor: o.hashLoadFactor,
    slowStart: o.slowStart,
    panicThreshold: o.panicThreshold,
    healthCheck: o.healthCheck === undefined ? undefined : o.healthCheck === 'tcp' ? { type: 'tcp' } : { path: o.healthCheck },
    retries: o.retries === undefined ? undefined : { count: o.retries },
    sticky: o.stickyCookie === undefined ? undefined : { cookie: o.stickyCookie },
    // the flat form has always accepted upstreamTls beside plain targets, where it does nothing
    tls: targets.some(isSecure) && o.upstreamTls !== undefined ? compact({ ca: o.upstreamTls.ca, verify: o.upstreamTls.verify }) : undefined,
    maxConnections: o.upstream?.maxConnections,
    maxQueue: o.upstream?.maxQueue,
    pipelining: o.upstream?.pipelining,
    sendProxy: o.sendProxy,
    timeouts: compact({ connect: t.connect, idle: t.upstreamIdle, failedTarget: t.failedTarget }),
  })
  from(['upstreams', FLAT_GROUP, 'sendProxy'], ['sendProxy'])
  from(['upstreams', FLAT_GROUP, 'targets'], ['targets'])
  from(['upstreams', FLAT_GROUP, 'policy'], ['balance'])
  for (const key of ['hashLoadFactor', 'slowStart', 'panicThreshold', 'healthCheck'] as const) from(['upstreams', FLAT_GROUP, key], [key])
  from(['upstreams', FLAT_GROUP, 'retries', 'count'], ['retries'])
  from(['upstreams', FLAT_GROUP, 'sticky', 'cookie'], ['stickyCookie'])
  from(['upstreams', FLAT_GROUP, 'tls'], ['upstreamTls'])
  from(['upstreams', FLAT_GROUP], ['upstream'])

  let tcpFallback: string | undefined
  if (!tcp && Array.isArray(o.tcpFallback)) {
    tcpFallback = FALLBACK_GROUP
    upstreams[FALLBACK_GROUP] = compact({ targets: o.tcpFallback, timeouts: raw })
    from(['upstreams', FALLBACK_GROUP, 'targets'], ['tcpFallback'])
  }

  let tls: Obj | undefined
  if (!tcp) {
    const passthrough: Record<string, string> = {}
    Object.entries(o.tls?.passthrough ?? {}).forEach(([name, target], i) => {
      const group = passthroughGroup(i)
      passthrough[name] = group
      upstreams[group] = compact({ targets: [target], timeouts: raw })
      from(['upstreams', group, 'targets', 0], ['tls', 'passthrough', name])
    })
    const certificates = o.tls?.certificates ?? []
    // nothing to terminate or route: TLS is bytes of no known protocol, as on a listener without tls
    if (certificates.length > 0 || Object.keys(passthrough).length > 0 || o.tls?.acme !== undefined) {
      tls = compact({
        certificates: certificates.length > 0 ? certificates : undefined,
        passthrough: Object.keys(passthrough).length > 0 ? passthrough : undefined,
        // as it always was, except where a client certificate is required: cleartext would walk around it
        cleartext: o.tls?.clientCertificates !== undefined && (o.tls.clientCertificates.mode ?? 'require') === 'require' ? 'redirect' : 'serve',
        reloadInterval: o.tls?.reloadInterval,
        profile: o.tls?.profile,
        ciphers: o.tls?.ciphers,
        hsts: o.tls?.hsts,
        clientCertificates: o.tls?.clientCertificates,
        ticketKeyRotation: o.tls?.ticketKeyRotation,
        sessionCache: o.tls?.sessionCache,
        sessionTimeout: o.tls?.sessionTimeout,
        ocspStapling: o.tls?.ocspStapling,
        acme: o.tls?.acme,
      })
    }
    from(['listeners', 0, 'tls'], ['tls'])
  }

  const listener = compact({
    name: FLAT_LISTENER,
    listen: o.listen,
    protocol: tcp ? 'tcp' : undefined,
    upstream: tcp ? FLAT_GROUP : undefined,
    tcpFallback,
    tls,
    access: o.access,
    acceptProxy: o.acceptProxy,
    timeouts: compact({ detect: t.detect, tlsHandshake: t.tlsHandshake, tcpIdle: t.tcpIdle }),
  })
  from(['listeners', 0, 'listen'], ['listen'])
  from(['listeners', 0, 'access'], ['access'])
  from(['listeners', 0, 'acceptProxy'], ['acceptProxy'])
  from(['listeners', 0, 'timeouts'], ['timeouts'])

  const files = o.static === undefined
    ? undefined
    : compact({ ...(typeof o.static === 'string' ? { root: o.static } : o.static), fallback: backends ? FLAT_GROUP : undefined })
  const routes = tcp
    ? undefined
    : [compact({
        name: FLAT_ROUTE,
        proxy: files === undefined ? FLAT_GROUP : undefined,
        static: files,
        compress: o.compress,
        cache: o.cache,
        timeouts: compact({ response: t.response, responseTotal: t.responseTotal }),
        maxBodySize: o.maxBodySize,
        interceptErrors: o.interceptErrors,
        rateLimit: o.rateLimit,
      })]
  from(['routes', 0, 'timeouts'], ['timeouts'])
  from(['routes', 0, 'static'], ['static'])
  from(['routes', 0, 'compress'], ['compress'])
  from(['routes', 0, 'cache'], ['cache'])
  from(['routes', 0, 'interceptErrors'], ['interceptErrors'])
  from(['http', 'underscoresInHeaders'], ['allowUnderscoresInHeaders'])
  for (const key of ['maxBodySize', 'rateLimit'] as const) from(['routes', 0, key], [key])

  const http = compact({
    maxHeaderSize: o.maxHeaderSize,
    maxRequestLine: o.maxRequestLine,
    maxHeaders: o.maxHeaders,
    maxPipelinedRequests: o.maxPipelinedRequests,
    minDataRate: o.minDataRate,
    timeouts: compact({ clientIdle: t.clientIdle, clientPark: t.clientPark, requestHead: t.requestHead, requestBody: t.requestBody }),
    via: o.via,
    hideHeaders: o.hideHeaders,
    underscoresInHeaders: o.allowUnderscoresInHeaders,
  })
  from(['http', 'timeouts'], ['timeouts'])
  for (const key of ['maxHeaderSize', 'maxRequestLine', 'maxHeaders', 'maxPipelinedRequests', 'minDataRate', 'via', 'hideHeaders'] as const) {
    from(['http', key], [key])
  }

  const options = compact({ listeners: [listener], routes, upstreams, http, limits: o.limits, accessLog: o.accessLog, drainTimeout: o.drainTimeout, drainDelay: o.drainDelay, admin: o.admin, workers: o.workers, workerScheduling: o.workerScheduling }) as Options
  return { options, origins }
}

/** A full-form path as the flat path it came from (the longest recorded prefix), or as it is. */
export function translatePath (path: Path, origins: ReadonlyArray<readonly [Path, Path]>): Path {
  let best: readonly [Path, Path] | null = null
  for (const origin of origins) {
    const [full] = origin
    if (full.length <= path.length && full.every((part, i) => part === path[i]) && (best === null || full.length > best[0].length)) best = origin
  }
  return best === null ? path : [...best[1], ...path.slice(best[0].length)]
}
