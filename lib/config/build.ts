/**
 * Validated options (either form) → the frozen `Model` the runtime reads: defaults filled from the
 * schema, units converted (ms, bytes), the flat shorthand expanded, names resolved, target
 * strings parsed, and the files that belong to an upstream's TLS read (CA, client certificate
 * and key). Listener certificate and access files are named in the model (the runtime loads and
 * watches them) but checked to be readable here, so that `rp4 check` finds them missing.
 * Everything that is wrong is thrown at once, as a `ConfigError` naming each key.
 */
import { accessSync, constants, readFileSync, statSync } from 'node:fs'
import { isIP } from 'node:net'
import os from 'node:os'
import path, { dirname } from 'node:path'
import type { ConnectionOptions } from 'node:tls'
import type { TSchema } from '@sinclair/typebox'
import { parseBalance, parseStatusRanges } from './balance.js'
import { formatHostPort, parseHostPort, parseTarget, type HostPort } from './address.js'
import { MAX_CONNECTIONS, OPEN_FILES } from './open-files.js'
import { parseCidr, type AccessRule } from '../admission/access.js'
import type { AccessLogModel, AccessModel, AcmeModel, ActionModel, AdminModel, CacheModel, ClientCertificatesModel, CompressModel, FilterModel, DiscoveryModel, GroupModel, HealthCheckModel, HttpModel, OutlierModel, RetryModel, ListenerModel, ListenerTls, Model, RouteModel, TargetModel } from '../model/model.js'
import * as S from './schema.js'
import { parseUnit } from './units.js'
import { cipherListProblem } from '../tls/profile.js'
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
  const routes = ((o.routes ?? []) as Obj[]).map((route, i) => buildRoute(route, i, ['routes', i], files))
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
    accessLog: buildAccessLog(o.accessLog as Obj | undefined, files),
    drainTimeout: unit(o.drainTimeout, S.DrainTimeout),
    drainDelay: unit(o.drainDelay, S.DrainDelay),
    admin: buildAdmin(o.admin as Obj | undefined, files),
    workers: workerCount(o.workers as 'auto' | number | undefined, files),
    workerScheduling: (o.workerScheduling ?? S.meta(S.WorkerScheduling).default) as Model['workerScheduling'],
  })
}

/**
 * `auto`: RP4_WORKERS when set (a container's CPU quota, which availableParallelism does not
 * see), otherwise one per core the process may run on.
 */
export function workerCount (given: 'auto' | number | undefined, problems: Problem[]): number {
  if (typeof given === 'number') return given
  const env = process.env.RP4_WORKERS
  if (env !== undefined && env !== '' && env !== 'auto') {
    const n = Number(env)
    if (Number.isSafeInteger(n) && n >= 1 && n <= 1024) return n
    problems.push({ path: ['workers'], message: `auto: the environment's RP4_WORKERS="${env}" must be auto or a whole number from 1 to 1024` })
    return 1
  }
  return os.availableParallelism()
}

function buildAdmin (a: Obj | undefined, files: Problem[]): AdminModel | null {
  if (a === undefined) return null
  const parsed = parseHostPort(String(a.listen), { hostRequired: false, portZero: true }) as HostPort
  let token = (a.token ?? null) as string | null
  if (a.tokenFile !== undefined && token !== null) files.push({ path: ['admin', 'tokenFile'], message: 'admin.token and admin.tokenFile both give the token: keep one' })
  else if (a.tokenFile !== undefined) {
    const text = readFile(a.tokenFile as string, ['admin', 'tokenFile'], files)?.toString('utf8').split('\n')[0].trim()
    if (text !== undefined && text.length < 16) files.push({ path: ['admin', 'tokenFile'], message: `the token in "${a.tokenFile as string}" is shorter than 16 characters` })
    else if (text !== undefined) token = text
  }
  return freeze({ listen: freeze({ host: parsed.host === '' ? '127.0.0.1' : parsed.host, port: parsed.port }), token })
}

/** A PROXY header goes before any byte of the connection: before TLS too, which rp4 cannot do for https:// targets yet. */
function sendProxyOf (g: Obj, targets: TargetModel[], at: Path, files: Problem[]): GroupModel['sendProxy'] {
  if (g.sendProxy === undefined) return null
  if (targets.some(t => t.tls !== null)) files.push({ path: [...at, 'sendProxy'], message: 'a PROXY header cannot be sent to https:// targets (it would have to go before TLS): use HOST:PORT targets, or TCP relaying' })
  return g.sendProxy as 'v1' | 'v2'
}

function buildAccessLog (a: Obj | undefined, files: Problem[]): AccessLogModel | null {
  if (a?.file === undefined) return null
  const props = S.AccessLog.properties
  if (a.file !== '-') writable(a.file as string, ['accessLog', 'file'], files)
  return freeze({
    file: a.file as string,
    format: (a.format ?? S.meta(props.format).default) as AccessLogModel['format'],
    buffer: unit(a.buffer, props.buffer),
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
      clientPark: unit(t.clientPark, S.ClientParkTimeout),
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

/** A directory rp4 serves files from: it exists (a typo would otherwise answer every request with 404). */
function directory (dir: string, written: string, path: Path, files: Problem[]): void {
  // named as written, and where that is when it is relative
  const named = written === dir ? `"${dir}"` : `"${written}" (${dir})`
  try {
    if (!statSync(dir).isDirectory()) files.push({ path, message: `${named} is not a directory` })
  } catch (err) {
    files.push({ path, message: `cannot read the directory ${named}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` })
  }
}

/** A file rp4 appends to: it exists and may be written, or its folder lets it be created. */
function writable (file: string, path: Path, files: Problem[]): void {
  try {
    accessSync(file, constants.W_OK)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') {
      try {
        accessSync(dirname(file), constants.W_OK)
        return
      } catch (dirErr) {
        files.push({ path, message: `cannot create "${file}": ${(dirErr as NodeJS.ErrnoException).code ?? (dirErr as Error).message}` })
        return
      }
    }
    files.push({ path, message: `cannot write "${file}": ${code ?? (err as Error).message}` })
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
    const backup = typeof item === 'string' ? false : (item as Obj).backup === true
    const parsed = parseTarget(address)
    if (typeof parsed === 'string') throw new Error(`unchecked target ${address}: ${parsed}`)
    const { host, port, secure } = parsed
    const srv = parsed.srv === true
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
    return freeze({ host, port, authority: srv ? `srv://${host}` : formatHostPort(host, port), weight, backup, srv, tls: options })
  })
  const t = (g.timeouts ?? {}) as Obj
  const policy = parseBalance((g.policy ?? S.meta(S.Balance).default) as string, unit(g.hashLoadFactor, S.HashLoadFactor))
  if (typeof policy === 'string') throw new Error(`unchecked policy: ${policy}`)
  return freeze({
    name,
    targets: freeze(targets),
    policy: freeze(policy),
    slowStart: unit(g.slowStart, S.SlowStart),
    panicThreshold: unit(g.panicThreshold, S.PanicThreshold),
    sendProxy: sendProxyOf(g, targets, at, files),
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
    healthCheck: buildHealthCheck(g.healthCheck as Obj | undefined),
    outlier: buildOutlier(g.outlierDetection as Obj | undefined),
    retries: buildRetries((g.retries ?? {}) as Obj),
    discovery: buildDiscovery(g.discovery as Obj | undefined, targets.some(x => x.srv)),
    sticky: g.sticky === undefined ? null : freeze({ cookie: (g.sticky as Obj).cookie as string, maxAge: unit((g.sticky as Obj).maxAge, leaf(S.Sticky, 'maxAge')) }),
    limits: freeze({ maxRequests: unit(g.maxRequests, S.MaxGroupRequests), maxPending: unit(g.maxPending, S.MaxGroupPending) }),
  })
}

/** A leaf of a section's schema, by key. */
function leaf (section: TSchema, key: string): TSchema {
  return (section.properties as Record<string, TSchema>)[key]
}

function buildHealthCheck (h: Obj | undefined): HealthCheckModel | null {
  if (h === undefined) return null
  const L = (key: string): TSchema => leaf(S.HealthCheck, key)
  const statuses = parseStatusRanges((h.expectStatus ?? S.meta(L('expectStatus')).default) as string)
  if (typeof statuses === 'string') throw new Error(`unchecked statuses: ${statuses}`)
  return freeze({
    kind: (h.type ?? 'http') as 'http' | 'tcp',
    method: ((h.method ?? 'GET') as string).toUpperCase(),
    path: (h.path ?? '/') as string,
    host: typeof h.host === 'string' ? h.host : null,
    statuses: freeze(statuses.map(r => freeze(r))),
    body: typeof h.expectBody === 'string' ? h.expectBody : null,
    tls: typeof h.tls === 'boolean' ? h.tls : null,
    interval: unit(h.interval, L('interval')),
    timeout: unit(h.timeout, L('timeout')),
    jitter: unit(h.jitter, L('jitter')) / 100,
    rise: unit(h.rise, L('rise')),
    fall: unit(h.fall, L('fall')),
  })
}

function buildOutlier (o: Obj | undefined): OutlierModel | null {
  if (o === undefined) return null
  const L = (key: string): TSchema => leaf(S.OutlierDetection, key)
  return freeze({
    consecutiveFailures: unit(o.consecutiveFailures, L('consecutiveFailures')),
    consecutive5xx: unit(o.consecutive5xx, L('consecutive5xx')),
    successRate: flag(o.successRate, L('successRate'))
      ? freeze({ minRequests: unit(o.successRateMinRequests, L('successRateMinRequests')), stdevFactor: unit(o.successRateStdev, L('successRateStdev')), interval: unit(o.interval, L('interval')) })
      : null,
    baseEjection: unit(o.baseEjection, L('baseEjection')),
    maxEjection: unit(o.maxEjection, L('maxEjection')),
    maxEjectedPercent: unit(o.maxEjectedPercent, L('maxEjectedPercent')),
  })
}

function buildDiscovery (d: Obj | undefined, srv: boolean): DiscoveryModel | null {
  if (d === undefined && !srv) return null
  const o = d ?? {}
  const L = (key: string): TSchema => leaf(S.Discovery, key)
  return freeze({
    minTtl: unit(o.minTtl, L('minTtl')),
    maxTtl: unit(o.maxTtl, L('maxTtl')),
    keepStale: unit(o.keepStale, L('keepStale')),
    servers: freeze([...((o.servers ?? []) as string[])]),
  })
}

function buildRetries (r: Obj): RetryModel {
  const L = (key: string): TSchema => leaf(S.Retries, key)
  return freeze({
    count: unit(r.count, S.RetryCount),
    statuses: freeze([...((r.on ?? S.meta(L('on')).default) as number[])]),
    perTryTimeout: r.perTryTimeout === undefined ? 0 : unit(r.perTryTimeout, L('perTryTimeout')),
    budgetPercent: unit(r.budgetPercent, L('budgetPercent')),
    budgetMinConcurrency: unit(r.budgetMinConcurrency, L('budgetMinConcurrency')),
    nonIdempotent: flag(r.nonIdempotent, L('nonIdempotent')),
    markDownAfter: unit(r.markDownAfter, L('markDownAfter')),
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

/** The header value; preload's own requirements (hstspreload.org) are checked, since the list refuses a host without them. */
function buildHsts (h: Obj | undefined, at: Path, files: Problem[]): string | null {
  if (h === undefined) return null
  const maxAge = h.maxAge as number
  const includeSubDomains = h.includeSubDomains === true
  const preload = h.preload === true
  if (preload && (!includeSubDomains || maxAge < 31_536_000)) {
    files.push({ path: [...at, 'preload'], at: 'key', message: 'preload needs includeSubDomains: true and a maxAge of at least 31536000 (a year)' })
  }
  return `max-age=${maxAge}` + (includeSubDomains ? '; includeSubDomains' : '') + (preload ? '; preload' : '')
}

function buildAcme (a: Obj | undefined, at: Path, files: Problem[]): AcmeModel | null {
  if (a === undefined) return null
  const directory = typeof a.directory === 'string' ? a.directory : S.ACME_LETS_ENCRYPT
  let url: URL | null = null
  try {
    url = new URL(directory)
  } catch {}
  if (url === null || (url.protocol !== 'https:' && url.protocol !== 'http:')) files.push({ path: [...at, 'directory'], value: directory, message: 'must be an http(s) URL' })
  const names = ((a.names ?? []) as string[]).map(canonicalHost)
  const patterns = ((a.patterns ?? []) as string[]).map(canonicalHost)
  if (names.length === 0 && patterns.length === 0) files.push({ path: [...at, 'names'], at: 'key', message: 'give the names to obtain certificates for (names, or patterns with the acmeAsk hook)' })
  const dataHome = process.env.XDG_DATA_HOME ?? path.join(os.homedir(), '.local', 'share')
  return freeze({
    names: freeze(names),
    patterns: freeze(patterns),
    email: typeof a.email === 'string' ? a.email : null,
    directory,
    storage: path.resolve(typeof a.storage === 'string' ? a.storage : path.join(dataHome, 'rp4', 'acme')),
    challenges: freeze([...((a.challenges ?? ['tls-alpn-01', 'http-01']) as string[])]),
  })
}

function buildClientCertificates (c: Obj | undefined, at: Path, files: Problem[]): ClientCertificatesModel | null {
  if (c === undefined) return null
  const caFiles = (c.ca ?? []) as string[]
  const ca = caFiles.map((file, i) => readFile(file, [...at, 'ca', i], files)).filter(b => b !== undefined)
  return freeze({
    caFiles: freeze([...caFiles]),
    ca: freeze(ca),
    mode: (c.mode ?? 'require') as ClientCertificatesModel['mode'],
    onFailure: (c.onFailure ?? 'handshake') as ClientCertificatesModel['onFailure'],
    subjectHeader: typeof c.subjectHeader === 'string' ? c.subjectHeader : null,
    fingerprintHeader: typeof c.fingerprintHeader === 'string' ? c.fingerprintHeader : null,
  })
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
      profile: (given.profile ?? S.meta(S.TlsProfile).default) as ListenerTls['profile'],
      ciphers: typeof given.ciphers === 'string' ? given.ciphers : null,
      hsts: buildHsts(given.hsts as Obj | undefined, [...at, 'tls', 'hsts'], files),
      ticketKeyRotation: unit(given.ticketKeyRotation, S.TicketKeyRotation),
      sessionCache: unit(given.sessionCache, S.SessionCache),
      sessionTimeout: unit(given.sessionTimeout, S.SessionTimeout),
      ocspStapling: flag(given.ocspStapling, S.OcspStapling),
      acme: buildAcme(given.acme as Obj | undefined, [...at, 'tls', 'acme'], files),
      clientCertificates: buildClientCertificates(given.clientCertificates as Obj | undefined, [...at, 'tls', 'clientCertificates'], files),
    })
    if (typeof given.ciphers === 'string') {
      const problem = cipherListProblem(given.ciphers)
      if (problem !== null) files.push({ path: [...at, 'tls', 'ciphers'], message: `OpenSSL cannot use this cipher list: ${problem}` })
    }
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
    acceptProxy: l.acceptProxy === undefined
      ? null
      : freeze({
        from: freeze(((l.acceptProxy as Obj).from as string[]).map((cidr): AccessRule => freeze({ action: 'allow', range: parseCidr(cidr) as AccessRule['range'] }))),
        timeout: unit((l.acceptProxy as Obj).timeout, S.AcceptProxy.properties.timeout),
      }),
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

function buildAction (r: Obj, at: Path, files: Problem[]): ActionModel {
  if (typeof r.proxy === 'string') return freeze({ kind: 'proxy', upstream: r.proxy })
  if (r.static !== undefined) return buildStatic(r.static as Obj, [...at, 'static'], files)
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

function buildStatic (given: Obj, at: Path, files: Problem[]): ActionModel {
  const d = <T>(key: string): T => (given[key] ?? S.meta((S.StaticSettings.properties as Record<string, TSchema>)[key]).default) as T
  const root = path.resolve(given.root as string)
  directory(root, given.root as string, [...at, 'root'], files)
  return freeze({
    kind: 'static',
    root,
    index: freeze([...d<string[]>('index')]),
    listing: d<boolean>('listing'),
    hidden: d<boolean>('hidden'),
    followSymlinks: d<boolean>('followSymlinks'),
    precompressed: d<boolean>('precompressed'),
    cacheControl: d<string>('cacheControl'),
    maxOpenFiles: d<number>('maxOpenFiles'),
    revalidate: unit(given.revalidate, S.StaticSettings.properties.revalidate),
    memoryCache: unit(given.memoryCache, S.StaticSettings.properties.memoryCache),
    memoryFileSize: unit(given.memoryFileSize, S.StaticSettings.properties.memoryFileSize),
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

function buildRoute (r: Obj, index: number, at: Path, files: Problem[]): RouteModel {
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
    action: buildAction(r, at, files),
    filters: freeze(buildFilters(r)),
    maxBodySize: unit(r.maxBodySize, S.MaxBodySize),
    timeouts: freeze({
      response: unit(t.response, S.ResponseTimeout),
      responseTotal: unit(t.responseTotal, S.ResponseTotalTimeout),
    }),
    interceptErrors: flag(r.interceptErrors, S.InterceptErrors),
    rateLimit: rate === undefined ? null : freeze({ rate: rate.rate, burst: rate.burst ?? Math.max(1, Math.ceil(rate.rate)) }),
    hsts: buildHsts(r.hsts as Obj | undefined, [...at, 'hsts'], files),
    requireClientCertificate: r.requireClientCertificate === true,
    compress: buildCompress(r.compress),
    cache: buildCache(r.cache),
  })
}
