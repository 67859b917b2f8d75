/**
 * Validated options (either form) → the frozen `Model` the runtime reads: defaults filled from the
 * schema, units converted (ms, bytes), the flat shorthand expanded, names resolved, target
 * strings parsed, and the files that belong to an upstream's TLS read (CA, client certificate
 * and key). Listener certificate and access files are named in the model (the runtime loads and
 * watches them) but checked to be readable here, so that `rp4 check` finds them missing.
 * Everything that is wrong is thrown at once, as a `ConfigError` naming each key.
 */
import { accessSync, constants, readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import type { ConnectionOptions } from 'node:tls'
import path from 'node:path'
import type { TSchema } from '@sinclair/typebox'
import { formatHostPort, parseHostPort, parseTarget, type HostPort } from './address.js'
import { MAX_CONNECTIONS, OPEN_FILES } from './open-files.js'
import { parseCidr, type AccessRule } from '../admission/access.js'
import type { AccessModel, ActionModel, CacheModel, CompressModel, FilterModel, GroupModel, HttpModel, ListenerModel, ListenerTls, Model, RouteModel, TargetModel } from '../model/model.js'
import * as S from './schema.js'
import { parseUnit } from './units.js'
import { ConfigError, describe, type Path, type Problem } from './problems.js'
import { validate, canonicalHost, type ValidateContext } from './validate.js'
import { defaultRouteName, isFullForm, listenText, listenerNames } from './consistency.js'
import { expandFlat, translatePath } from './expand.js'

export interface BuildContext extends ValidateContext {
  /** How each problem is worded in the thrown error (a file's positions); `option PATH: ...` by default. */
  render?: (problem: Problem) => string
}

type Obj = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any

/** The model of `options`, or a `ConfigError` with every problem. */
export function buildModel (options: unknown, context: BuildContext = {}): Model {
  const problems = validate(options, context)
  if (problems.length > 0) throw new ConfigError(problems, context.render)
  const given = options as S.Options
  const { options: full, origins } = isFullForm(given) ? { options: given, origins: [] } : expandFlat(given)
  const files: Problem[] = []
  const model = assemble(full as Obj, files)
  if (files.length > 0) {
    throw new ConfigError(files.map(p => ({ ...p, path: translatePath(p.path, origins) })), context.render ?? (p => 'option ' + describe(p)))
  }
  return model
}

/** A leaf's value in library units, or its schema default. */
function unit (value: unknown, schema: TSchema): number {
  const m = S.meta(schema)
  const parsed = parseUnit(m.unit!, (value ?? m.default) as number | string)
  if (typeof parsed === 'string') throw new Error(`unchecked value ${String(value)}: ${parsed}`)
  return parsed
}

function flag (value: unknown, schema: TSchema): boolean {
  return (value ?? S.meta(schema).default) as boolean
}

function freeze<T extends object> (value: T): Readonly<T> {
  return Object.freeze(value)
}

function assemble (o: Obj, files: Problem[]): Model {
  const upstreams = new Map<string, GroupModel>()
  for (const [name, group] of Object.entries((o.upstreams ?? {}) as Obj)) {
    upstreams.set(name, buildGroup(name, group, ['upstreams', name], files))
  }
  const routes = ((o.routes ?? []) as Obj[]).map((route, i) => buildRoute(route, i))
  const names = listenerNames(o.listeners as Obj[])
  const listeners = (o.listeners as Obj[]).map((listener, i) => buildListener(listener, names[i], ['listeners', i], files))
  const limits = (o.limits ?? {}) as Obj
  const allowed = MAX_CONNECTIONS
  const asked = (limits.maxConnections ?? allowed) as number
  // a guessed limit lowers nothing: only one read from the system does
  const requested = OPEN_FILES !== null && asked > allowed ? asked : 0
  return freeze({
    listeners: freeze(listeners),
    routes: freeze(routes),
    upstreams,
    http: buildHttp((o.http ?? {}) as Obj),
    limits: freeze({
      maxConnections: requested === 0 ? asked : allowed,
      maxConnectionsPerIp: unit(limits.maxConnectionsPerIp, S.Limits.properties.maxConnectionsPerIp),
      openFiles: OPEN_FILES,
      requested,
    }),
  })
}

function buildHttp (h: Obj): HttpModel {
  const t = (h.timeouts ?? {}) as Obj
  const hidden = (h.hideHeaders ?? S.DEFAULT_HIDDEN_HEADERS) as string[]
  return freeze({
    maxHeaderSize: unit(h.maxHeaderSize, S.MaxHeaderSize),
    maxRequestLine: unit(h.maxRequestLine, S.MaxRequestLine),
    maxHeaders: unit(h.maxHeaders, S.MaxHeaders),
    maxPipelinedRequests: unit(h.maxPipelinedRequests, S.MaxPipelinedRequests),
    minDataRate: unit(h.minDataRate, S.MinDataRate),
    timeouts: freeze({
      clientIdle: unit(t.clientIdle, S.ClientIdleTimeout),
      requestHead: unit(t.requestHead, S.RequestHeadTimeout),
      requestBody: unit(t.requestBody, S.RequestBodyTimeout),
    }),
    via: '1.1 ' + ((h.via ?? S.meta(S.Via).default) as string),
    hideHeaders: new Set(hidden.map(name => name.toLowerCase())),
    underscoresInHeaders: flag(h.underscoresInHeaders, S.UnderscoresInHeaders),
  })
}

function readFile (file: string, path: Path, files: Problem[]): Buffer | undefined {
  try {
    return readFileSync(file)
  } catch (err) {
    files.push({ path, message: `cannot read "${file}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` })
    return undefined
  }
}

function readable (file: string, path: Path, files: Problem[]): void {
  try {
    accessSync(file, constants.R_OK)
  } catch (err) {
    files.push({ path, message: `cannot read "${file}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` })
  }
}

function buildGroup (name: string, g: Obj, at: Path, files: Problem[]): GroupModel {
  const tls = g.tls as Obj | undefined
  // read once per group, not per target
  const ca = ((tls?.ca ?? []) as string[]).map((file, i) => readFile(file, [...at, 'tls', 'ca', i], files)).filter(b => b !== undefined)
  const cert = typeof tls?.cert === 'string' ? readFile(tls.cert, [...at, 'tls', 'cert'], files) : undefined
  const key = typeof tls?.key === 'string' ? readFile(tls.key, [...at, 'tls', 'key'], files) : undefined
  const verify = flag(tls?.verify, S.UpstreamVerify)

  const targets = (g.targets as unknown[]).map((item): TargetModel => {
    const address = typeof item === 'string' ? item : (item as Obj).address as string
    const weight = typeof item === 'string' ? 1 : ((item as Obj).weight ?? 1) as number
    const parsed = parseTarget(address)
    if (typeof parsed === 'string') throw new Error(`unchecked target ${address}: ${parsed}`)
    const { host, port, secure } = parsed
    let options: ConnectionOptions | null = null
    if (secure) {
      options = freeze({
        // SNI carries a name; RFC 6066 forbids IP literals there (the certificate is then checked against the IP)
        servername: typeof tls?.servername === 'string' ? canonicalHost(tls.servername) : isIP(host) === 0 ? host.replace(/\.$/, '') : undefined,
        ca: ca.length > 0 ? ca : undefined,
        cert,
        key,
        rejectUnauthorized: verify,
        ALPNProtocols: ['http/1.1'],
      })
    }
    return freeze({ host, port, authority: formatHostPort(host, port), weight, tls: options })
  })
  const t = (g.timeouts ?? {}) as Obj
  return freeze({
    name,
    targets: freeze(targets),
    policy: 'round-robin',
    pool: freeze({
      maxConnections: unit(g.maxConnections, S.MaxConnectionsPerTarget),
      maxQueue: unit(g.maxQueue, S.MaxQueue),
      pipelining: unit(g.pipelining, S.Pipelining),
      idleTimeout: unit(t.idle, S.UpstreamIdleTimeout),
    }),
    timeouts: freeze({
      connect: unit(t.connect, S.ConnectTimeout),
      failedTarget: unit(t.failedTarget, S.FailedTargetTimeout),
    }),
  })
}

function buildAccess (a: Obj | undefined, at: Path, files: Problem[]): AccessModel | null {
  if (a === undefined) return null
  const rules: AccessRule[] = []
  for (const action of ['allow', 'deny'] as const) {
    for (const text of (a[action] ?? []) as string[]) {
      const range = parseCidr(text)
      if (typeof range === 'string') throw new Error(`unchecked range ${text}`)
      rules.push(freeze({ action, range: freeze(range) }))
    }
  }
  const file = typeof a.file === 'string' ? a.file : null
  if (file !== null) readable(file, [...at, 'file'], files)
  if (rules.length === 0 && file === null) return null
  return freeze({ rules: freeze(rules), file })
}

function buildListener (l: Obj, name: string, at: Path, files: Problem[]): ListenerModel {
  const listen = parseHostPort(listenText(l.listen), { hostRequired: false, portZero: true }) as HostPort
  const t = (l.timeouts ?? {}) as Obj
  let tls: ListenerTls | null = null
  if (l.tls !== undefined) {
    const given = l.tls as Obj
    const certificates = ((given.certificates ?? []) as Obj[]).map((pair, i) => {
      readable(pair.cert as string, [...at, 'tls', 'certificates', i, 'cert'], files)
      readable(pair.key as string, [...at, 'tls', 'certificates', i, 'key'], files)
      return freeze({ cert: pair.cert as string, key: pair.key as string })
    })
    const passthrough = Object.entries((given.passthrough ?? {}) as Record<string, string>)
      .map(([name, upstream]) => freeze({ name: canonicalHost(name), upstream }))
    // `*` catches what no other name does: last, whatever its place in the file
    passthrough.sort((a, b) => Number(a.name === '*') - Number(b.name === '*'))
    tls = freeze({
      certificates: freeze(certificates),
      passthrough: freeze(passthrough),
      reloadInterval: unit(given.reloadInterval, S.ReloadInterval),
      cleartext: (given.cleartext ?? S.meta(S.Cleartext).default) as ListenerTls['cleartext'],
    })
  }
  const protocol = (l.protocol ?? 'auto') as ListenerModel['protocol']
  return freeze({
    name,
    listen: freeze(listen),
    protocol,
    upstream: protocol === 'tcp' ? l.upstream as string : null,
    tcpFallback: typeof l.tcpFallback === 'string' ? l.tcpFallback : null,
    tls,
    redirectToHttps: l.redirectToHttps === true,
    routes: Array.isArray(l.routes) ? freeze([...l.routes as string[]]) : null,
    access: buildAccess(l.access as Obj | undefined, [...at, 'access'], files),
    timeouts: freeze({
      detect: unit(t.detect, S.DetectTimeout),
      tlsHandshake: unit(t.tlsHandshake, S.TlsHandshakeTimeout),
      tcpIdle: unit(t.tcpIdle, S.TcpIdleTimeout),
    }),
  })
}

function pairs (map: unknown): ReadonlyArray<readonly [string, string]> {
  return freeze(Object.entries((map ?? {}) as Record<string, string | number>).map(([name, value]) => freeze([name, String(value)] as const)))
}

function buildAction (r: Obj): ActionModel {
  if (typeof r.proxy === 'string') return freeze({ kind: 'proxy', upstream: r.proxy })
  if (r.static !== undefined) return buildStatic(r.static as Obj)
  if (r.respond !== undefined) {
    const given = r.respond as Obj
    const body = (given.body ?? '') as string
    const headers = [...pairs(given.headers)]
    if (body !== '' && !headers.some(([name]) => name.toLowerCase() === 'content-type')) {
      headers.push(freeze(['Content-Type', 'text/plain; charset=utf-8'] as const))
    }
    return freeze({ kind: 'respond', status: (given.status ?? S.meta(S.RespondStatus).default) as number, headers: freeze(headers), body })
  }
  const given = r.redirect as Obj
  return freeze({ kind: 'redirect', location: given.to as string, status: (given.status ?? S.meta(S.RedirectStatus).default) as number })
}

function buildStatic (given: Obj): ActionModel {
  const d = <T>(key: string): T => (given[key] ?? S.meta((S.StaticSettings.properties as Record<string, TSchema>)[key]).default) as T
  return freeze({
    kind: 'static',
    root: path.resolve(given.root as string),
    index: freeze([...d<string[]>('index')]),
    listing: d<boolean>('listing'),
    hidden: d<boolean>('hidden'),
    followSymlinks: d<boolean>('followSymlinks'),
    precompressed: d<boolean>('precompressed'),
    cacheControl: d<string>('cacheControl'),
    maxOpenFiles: d<number>('maxOpenFiles'),
    fallback: typeof given.fallback === 'string' ? given.fallback : null,
  })
}

function buildCache (given: unknown): CacheModel | null {
  if (given === undefined || given === false) return null
  const o = (given === true ? {} : given) as Obj
  const props = S.CacheSettings.properties as Record<string, TSchema>
  return freeze({
    size: unit(o.size, props.size),
    maxEntrySize: unit(o.maxEntrySize, props.maxEntrySize),
    staleWhileRevalidate: unit(o.staleWhileRevalidate, props.staleWhileRevalidate),
    staleIfError: unit(o.staleIfError, props.staleIfError),
    dir: typeof o.dir === 'string' ? path.resolve(o.dir) : null,
  })
}

function buildCompress (given: unknown): CompressModel | null {
  if (given === undefined || given === false) return null
  const o = (given === true ? {} : given) as Obj
  const props = S.CompressSettings.properties as Record<string, TSchema>
  return freeze({
    encodings: freeze([...((o.encodings ?? S.meta(props.encodings).default) as Array<'br' | 'gzip'>)]),
    types: freeze([...((o.types ?? S.meta(props.types).default) as string[])]),
    minSize: unit(o.minSize, props.minSize),
    gzipLevel: (o.gzipLevel ?? S.meta(props.gzipLevel).default) as number,
    brotliLevel: (o.brotliLevel ?? S.meta(props.brotliLevel).default) as number,
  })
}

/** The order filters apply in: path edits first (routing already happened), then headers, then the user's own. */
function buildFilters (r: Obj): FilterModel[] {
  const filters: FilterModel[] = []
  if (typeof r.stripPrefix === 'string') filters.push(freeze({ kind: 'stripPrefix', prefix: r.stripPrefix }))
  if (r.rewritePath !== undefined) {
    const { pattern, replacement } = r.rewritePath as { pattern: string, replacement: string }
    filters.push(freeze({ kind: 'rewritePath', pattern: new RegExp(pattern), replacement }))
  }
  for (const kind of ['requestHeaders', 'responseHeaders'] as const) {
    const edits = r[kind] as Obj | undefined
    if (edits === undefined) continue
    filters.push(freeze({
      kind,
      set: pairs(edits.set),
      add: pairs(edits.add),
      remove: freeze(((edits.remove ?? []) as string[]).map(name => name.toLowerCase())),
    }))
  }
  for (const name of (r.filters ?? []) as string[]) filters.push(freeze({ kind: 'user', name }))
  return filters
}

function buildRoute (r: Obj, index: number): RouteModel {
  const m = (r.match ?? {}) as Obj
  const hosts = m.host === undefined ? null : [...new Set((Array.isArray(m.host) ? m.host : [m.host] as string[]).map(canonicalHost))]
  const path = typeof m.pathExact === 'string' ? { exact: m.pathExact } : typeof m.path === 'string' ? { prefix: m.path } : null
  const methods = Array.isArray(m.methods) ? [...new Set((m.methods as string[]).map(method => method.toUpperCase()))] : null
  const headers = m.headers === undefined
    ? null
    : Object.entries(m.headers as Record<string, string | number | null>).map(([name, value]) =>
      freeze(value === null || value === '' ? { name } : { name, value: String(value).trim() }))
  const t = (r.timeouts ?? {}) as Obj
  const rate = r.rateLimit as { rate: number, burst?: number } | undefined
  return freeze({
    name: typeof r.name === 'string' ? r.name : defaultRouteName(index),
    match: freeze({
      hosts: hosts === null ? null : freeze(hosts),
      path: path === null ? null : freeze(path),
      methods: methods === null ? null : freeze(methods),
      headers: headers === null ? null : freeze(headers),
    }),
    action: buildAction(r),
    filters: freeze(buildFilters(r)),
    maxBodySize: unit(r.maxBodySize, S.MaxBodySize),
    timeouts: freeze({
      response: unit(t.response, S.ResponseTimeout),
      responseTotal: unit(t.responseTotal, S.ResponseTotalTimeout),
    }),
    interceptErrors: flag(r.interceptErrors, S.InterceptErrors),
    rateLimit: rate === undefined ? null : freeze({ rate: rate.rate, burst: rate.burst ?? Math.max(1, Math.ceil(rate.rate)) }),
    compress: buildCompress(r.compress),
    cache: buildCache(r.cache),
  })
}
