/**
 * Options in, one frozen and validated config out. Everything that can be decided at startup is
 * decided here, so that the hot path reads plain fields.
 */
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import type { ConnectionOptions } from 'node:tls'
import { parseHostPort, formatHostPort, type HostPort } from './address.js'
import type { CertificateFiles, LimitOptions, ProxyOptions, TimeoutOptions, UpstreamOptions } from './options.js'
import { parseCidr, type AccessRule } from '../listener/access.js'

export interface TargetConfig extends HostPort {
  /** `HOST:PORT` as shown in logs and events, and sent as Host to HTTP/1.0 requests without one. */
  authority: string
  /** What `tls.connect` needs besides host and port, for an `https://` backend; null for a plain one. */
  tls: Readonly<ConnectionOptions> | null
}

/** A server name relayed as raw TLS: `name` exact, or `*.domain` for one more label. */
export interface SniRoute {
  name: string
  target: TargetConfig
}

export interface TlsConfig {
  certificates: readonly CertificateFiles[]
  passthrough: readonly SniRoute[]
  reloadInterval: number
}

export interface Config {
  listen: HostPort
  targets: readonly TargetConfig[]
  timeouts: Readonly<TimeoutOptions>
  upstream: Readonly<UpstreamOptions>
  maxPipelinedRequests: number
  maxHeaderSize: number
  maxRequestLine: number
  maxHeaders: number
  /** 0: no limit. */
  maxBodySize: number
  /** bytes/s; 0: no minimum. */
  minDataRate: number
  /** The response headers removed, or null when none are. */
  hideHeaders: HiddenHeaders | null
  interceptErrors: boolean
  allowUnderscoresInHeaders: boolean
  /** null: no rate limit. */
  rateLimit: Readonly<{ rate: number, burst: number }> | null
  /** The value rp4 adds as its hop to Via, e.g. `1.1 rp4`. */
  via: string
  /** Raw TCP relay for every connection. */
  tcp: boolean
  /** Backends for connections that are neither HTTP nor TLS, or silent; null (the default): none. */
  tcpFallback: readonly TargetConfig[] | null
  tls: Readonly<TlsConfig>
  /** null: every address may connect. */
  access: Readonly<AccessConfig> | null
  limits: Readonly<LimitOptions>
  /** How `limits.maxConnections` came about. */
  connectionLimit: Readonly<ConnectionLimit>
}

export interface ConnectionLimit {
  /** The process's open-file limit, or null where it cannot be read (then 10,240 is assumed). */
  openFiles: number | null
  /** The most client connections that limit allows: the default of `limits.maxConnections`, and its ceiling. */
  allowed: number
  /** `limits.maxConnections` as given, when it was over `allowed` and lowered to it; 0 otherwise. */
  requested: number
}

export interface AccessConfig {
  /** The `allow` and `deny` options, in that order. */
  rules: readonly AccessRule[]
  /** Read and watched by the listener; null: none. */
  file: string | null
}

export const DEFAULT_TIMEOUTS: Readonly<TimeoutOptions> = Object.freeze({
  connect: 5_000,
  response: 60_000,
  // off: a stream (server-sent events) or a large download has no natural end time
  responseTotal: 0,
  clientIdle: 60_000,
  requestHead: 10_000,
  requestBody: 30_000,
  upstreamIdle: 30_000,
  failedTarget: 10_000,
  // long enough for a database connection idling between transactions, short enough that
  // connections whose peer vanished without a FIN do not pile up forever
  tcpIdle: 3_600_000,
  // clients of client-first protocols send at once; a server-first client waits this long for its greeting
  detect: 300,
  tlsHandshake: 10_000,
})

export const DEFAULT_TLS = Object.freeze({
  reloadInterval: 2000,
})

export const DEFAULT_UPSTREAM: Readonly<UpstreamOptions> = Object.freeze({
  maxConnections: 256,
  maxQueue: 4096,
  pipelining: 1,
})

/**
 * Descriptors kept for everything but client connections and their backend connections: stdio,
 * the event loop's own, listening sockets, certificate and access files being read, DNS lookups.
 */
const RESERVED_FILES = 64
/** Where the limit cannot be read (not Linux): macOS's usual per-process limit, which Node raises its soft limit to. */
const ASSUMED_OPEN_FILES = 10_240
/** What a process may open when its limit says unlimited: Linux's default fs.nr_open. */
const UNLIMITED_OPEN_FILES = 1_048_576

/**
 * The soft RLIMIT_NOFILE of this process from /proc/self/limits (Node has no getrlimit; it raises
 * the soft limit to the hard one at startup, so this is usually `ulimit -Hn` of the shell), or
 * null where it cannot be read.
 */
export function readOpenFileLimit (file = '/proc/self/limits'): number | null {
  let text: string
  try {
    text = readFileSync(file, 'latin1')
  } catch {
    return null
  }
  const soft = /^Max open files[ \t]+(\S+)/m.exec(text)?.[1]
  if (soft === undefined) return null
  if (soft === 'unlimited') return UNLIMITED_OPEN_FILES
  const value = Number(soft)
  return Number.isSafeInteger(value) && value > 0 ? value : null
}

/**
 * Client connections an open-file limit allows: each may need two descriptors, its own and one
 * to a backend (a raw TCP relay always does; an HTTP client does while its request is in flight,
 * and pooled backend connections stay open after it), besides the reserved ones.
 */
export function connectionsAllowedBy (openFiles: number): number {
  return Math.max(1, Math.floor((openFiles - RESERVED_FILES) / 2))
}

const OPEN_FILE_LIMIT = readOpenFileLimit()

export const DEFAULT_LIMITS: Readonly<LimitOptions> = Object.freeze({
  // as many as the descriptors allow: a connection over it is refused cleanly at accept time,
  // rather than failing to open its backend connection (EMFILE) halfway through a request
  maxConnections: connectionsAllowedBy(OPEN_FILE_LIMIT ?? ASSUMED_OPEN_FILES),
  // no cap per client by default: one address is routinely a whole office or mobile carrier
  // behind NAT, another proxy or CDN, or a load generator (nginx and HAProxy have none either)
  maxConnectionsPerIp: 0,
})

export const DEFAULTS = Object.freeze({
  maxPipelinedRequests: 32,
  maxHeaderSize: 65_536,
  maxRequestLine: 8_192,
  maxHeaders: 100,
  // large enough for file uploads, small enough that one request cannot stream forever
  maxBodySize: 1_073_741_824,
  // a client trickling its request cannot hold a connection for a whole timeout (as Apache's
  // mod_reqtimeout, MinRate=500)
  minDataRate: 500,
  hideHeaders: Object.freeze(['Server', 'X-Powered-By', 'X-AspNet-Version', 'X-AspNetMvc-Version']),
  // the backend's own 502/503/504 passes: an API's JSON error and its Retry-After are meant for the client
  interceptErrors: false,
  allowUnderscoresInHeaders: false,
  via: 'rp4',
})

const TOP_KEYS = new Set(['listen', 'targets', 'timeouts', 'upstream', 'maxPipelinedRequests', 'maxHeaderSize', 'via',
  'maxRequestLine', 'maxHeaders', 'maxBodySize', 'minDataRate', 'hideHeaders', 'interceptErrors', 'allowUnderscoresInHeaders', 'rateLimit',
  'tcp', 'tcpFallback', 'tls', 'upstreamTls', 'access', 'limits'])

function fail (message: string): never {
  throw new TypeError(message)
}

function checkKeys (value: object, allowed: Iterable<string>, where: string): void {
  const known = new Set(allowed)
  for (const key of Object.keys(value)) {
    if (!known.has(key)) fail(`unknown option ${where}${key}`)
  }
}

function integer (value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(`option ${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`)
  }
  return value
}

function section<T extends object> (input: unknown, defaults: Readonly<T>, name: string, min: number, max: number): Readonly<T> {
  if (input === undefined) return defaults
  if (typeof input !== 'object' || input === null) fail(`option ${name} must be an object`)
  checkKeys(input, Object.keys(defaults), name + '.')
  const out: Record<string, number> = { ...(defaults as Record<string, number>) }
  for (const [key, value] of Object.entries(input)) {
    if (value !== undefined) out[key] = integer(value, `${name}.${key}`, min, max)
  }
  return Object.freeze(out) as unknown as Readonly<T>
}

/**
 * `HOST:PORT`, `http://HOST[:PORT]` or `https://HOST[:PORT]` (80 and 443 by default). Returns an
 * error message instead of throwing, as `parseHostPort` does.
 */
export function parseTarget (text: string): (HostPort & { secure: boolean }) | string {
  const scheme = /^(https?):\/\//i.exec(text.trim())
  if (scheme === null) {
    const parsed = parseHostPort(text, { hostRequired: true, portZero: false })
    return typeof parsed === 'string' ? parsed : { ...parsed, secure: false }
  }
  const secure = scheme[1].toLowerCase() === 'https'
  let rest = text.trim().slice(scheme[0].length).replace(/\/$/, '')
  if (rest.includes('/')) return `"${text}": a backend is a scheme, a host and a port, without a path`
  if (!/:\d*$/.test(rest) || rest.endsWith(']')) rest += secure ? ':443' : ':80'
  const parsed = parseHostPort(rest, { hostRequired: true, portZero: false })
  return typeof parsed === 'string' ? parsed : { ...parsed, secure }
}

function readPem (file: unknown, name: string): Buffer {
  if (typeof file !== 'string' || file === '') fail(`option ${name} must be a file name`)
  try {
    return readFileSync(file)
  } catch (err) {
    fail(`option ${name}: cannot read "${file}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}

interface UpstreamTls { ca: Buffer[] | undefined, verify: boolean }

function resolveUpstreamTls (input: ProxyOptions['upstreamTls']): UpstreamTls {
  if (input === undefined) return { ca: undefined, verify: true }
  if (typeof input !== 'object' || input === null) fail('option upstreamTls must be an object')
  checkKeys(input, ['ca', 'verify'], 'upstreamTls.')
  if (input.verify !== undefined && typeof input.verify !== 'boolean') fail('option upstreamTls.verify must be a boolean')
  if (input.ca !== undefined && !Array.isArray(input.ca)) fail('option upstreamTls.ca must be an array of file names')
  const ca = input.ca?.map((file, i) => readPem(file, `upstreamTls.ca[${i}]`))
  return { ca: ca !== undefined && ca.length > 0 ? ca : undefined, verify: input.verify ?? true }
}

function target (text: unknown, name: string, upstreamTls: UpstreamTls | null): TargetConfig {
  if (typeof text !== 'string') fail(`option ${name} must be a string "HOST:PORT"`)
  const parsed = parseTarget(text)
  if (typeof parsed === 'string') fail(`option ${name}: ${parsed}`)
  const { host, port, secure } = parsed
  let tls: ConnectionOptions | null = null
  if (secure && upstreamTls !== null) {
    tls = Object.freeze({
      // SNI carries a name; RFC 6066 forbids IP literals there (the certificate is then checked against the IP)
      servername: isIP(host) === 0 ? host.replace(/\.$/, '') : undefined,
      ca: upstreamTls.ca,
      rejectUnauthorized: upstreamTls.verify,
      ALPNProtocols: ['http/1.1'],
    })
  }
  return Object.freeze({ host, port, authority: formatHostPort(host, port), tls })
}

const SNI_NAME = /^(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})?(\.[a-z0-9_]([a-z0-9_-]{0,62})?)*$/

function resolveTls (input: ProxyOptions['tls'], tcp: boolean): Readonly<TlsConfig> {
  if (input === undefined) return Object.freeze({ certificates: [], passthrough: [], reloadInterval: DEFAULT_TLS.reloadInterval })
  if (typeof input !== 'object' || input === null) fail('option tls must be an object')
  checkKeys(input, ['certificates', 'passthrough', 'reloadInterval'], 'tls.')
  const certificates = input.certificates ?? []
  if (!Array.isArray(certificates)) fail('option tls.certificates must be an array of { cert, key }')
  const pairs = certificates.map((pair, i) => {
    if (typeof pair !== 'object' || pair === null) fail(`option tls.certificates[${i}] must be { cert, key }`)
    checkKeys(pair, ['cert', 'key'], `tls.certificates[${i}].`)
    for (const key of ['cert', 'key'] as const) {
      if (typeof pair[key] !== 'string' || pair[key] === '') fail(`option tls.certificates[${i}].${key} must be a file name`)
    }
    return Object.freeze({ cert: pair.cert, key: pair.key })
  })
  const routes = input.passthrough ?? {}
  if (typeof routes !== 'object' || routes === null || Array.isArray(routes)) fail('option tls.passthrough must be an object { name: "HOST:PORT" }')
  const passthrough = Object.entries(routes).map(([name, text]): SniRoute => {
    const lower = name.toLowerCase().replace(/\.$/, '')
    if (!SNI_NAME.test(lower)) fail(`option tls.passthrough: "${name}" is not a server name (a.example.com, *.example.com)`)
    return Object.freeze({ name: lower, target: target(text, `tls.passthrough["${name}"]`, null) })
  })
  if (tcp && (pairs.length > 0 || passthrough.length > 0)) fail('option tls cannot be combined with tcp: a raw TCP relay neither terminates nor routes TLS')
  const reloadInterval = input.reloadInterval === undefined ? DEFAULT_TLS.reloadInterval : integer(input.reloadInterval, 'tls.reloadInterval', 0, 86_400_000)
  return Object.freeze({ certificates: Object.freeze(pairs), passthrough: Object.freeze(passthrough), reloadInterval })
}

// off by default: one client IP may stand for a whole office behind NAT, or a load test
function rateLimit (input: unknown): Readonly<{ rate: number, burst: number }> | null {
  if (input === undefined) return null
  if (typeof input !== 'object' || input === null) fail('option rateLimit must be { rate, burst }')
  checkKeys(input, ['rate', 'burst'], 'rateLimit.')
  const { rate, burst } = input as { rate?: unknown, burst?: unknown }
  if (typeof rate !== 'number' || !(rate > 0) || rate > 1e6) fail('option rateLimit.rate must be a number of requests per second above 0')
  const size = burst === undefined ? Math.max(1, Math.ceil(rate)) : integer(burst, 'rateLimit.burst', 1, 1_000_000)
  return Object.freeze({ rate, burst: size })
}

function resolveAccess (input: ProxyOptions['access']): Readonly<AccessConfig> | null {
  if (input === undefined) return null
  if (typeof input !== 'object' || input === null) fail('option access must be an object { allow, deny, file }')
  checkKeys(input, ['allow', 'deny', 'file'], 'access.')
  const rules: AccessRule[] = []
  for (const action of ['allow', 'deny'] as const) {
    const list = input[action]
    if (list === undefined) continue
    if (!Array.isArray(list)) fail(`option access.${action} must be an array of IPs or CIDR ranges`)
    list.forEach((text: unknown, i) => {
      if (typeof text !== 'string') fail(`option access.${action}[${i}] must be a string, an IP or CIDR range`)
      const range = parseCidr(text)
      if (typeof range === 'string') fail(`option access.${action}[${i}]: ${range}`)
      rules.push(Object.freeze({ action, range: Object.freeze(range) }))
    })
  }
  if (input.file !== undefined && (typeof input.file !== 'string' || input.file === '')) fail('option access.file must be a file name')
  const file = input.file ?? null
  if (rules.length === 0 && file === null) return null
  return Object.freeze({ rules: Object.freeze(rules), file })
}

function flag (value: unknown, name: string): boolean {
  if (typeof value !== 'boolean') fail(`option ${name} must be true or false`)
  return value
}

/** Lowercased names, and their lengths: most names are told apart by length without lowercasing. */
export interface HiddenHeaders {
  names: ReadonlySet<string>
  lengths: ReadonlySet<number>
}

function hideHeaders (input: unknown): HiddenHeaders | null {
  const names = input === undefined ? DEFAULTS.hideHeaders : input
  if (!Array.isArray(names)) fail('option hideHeaders must be an array of header names')
  const set = new Set<string>()
  names.forEach((name: unknown, i) => {
    if (typeof name !== 'string' || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) fail(`option hideHeaders[${i}] must be a header name`)
    set.add(name.toLowerCase())
  })
  return set.size === 0 ? null : Object.freeze({ names: set, lengths: new Set([...set].map(name => name.length)) })
}

export function resolveConfig (options: ProxyOptions): Config {
  if (typeof options !== 'object' || options === null) fail('options must be an object')
  if ('ownErrorPages' in options) fail('option ownErrorPages is now interceptErrors, off by default (a backend\'s 502/503/504 passes as it is)')
  checkKeys(options, TOP_KEYS, '')
  if (typeof options.listen !== 'string') fail('option listen must be a string "[HOST]:PORT"')
  const listen = parseHostPort(options.listen, { hostRequired: false, portZero: true })
  if (typeof listen === 'string') fail(`option listen: ${listen}`)

  if (!Array.isArray(options.targets) || options.targets.length === 0) fail('option targets must be a non-empty array of "HOST:PORT"')
  const upstreamTls = resolveUpstreamTls(options.upstreamTls)
  const targets = options.targets.map((text, i) => target(text, `targets[${i}]`, upstreamTls))

  if (options.tcp !== undefined && typeof options.tcp !== 'boolean') fail('option tcp must be a boolean')
  const tcp = options.tcp ?? false
  // none by default: a raw relay carries bytes past every HTTP protection (X-Forwarded-For,
  // limits, timeouts, header rules), so it exists only where the user asked for one
  let tcpFallback: readonly TargetConfig[] | null = null
  if (options.tcpFallback !== undefined && options.tcpFallback !== false) {
    if (!Array.isArray(options.tcpFallback) || options.tcpFallback.length === 0) fail('option tcpFallback must be a non-empty array of "HOST:PORT", or false')
    tcpFallback = Object.freeze(options.tcpFallback.map((text, i) => target(text, `tcpFallback[${i}]`, null)))
  }
  const tls = resolveTls(options.tls, tcp)

  const timeouts = section(options.timeouts, DEFAULT_TIMEOUTS, 'timeouts', 0, 86_400_000)
  for (const [key, value] of Object.entries(timeouts)) {
    // 0 means "no limit" only where a limit may be absent
    if (value === 0 && key !== 'responseTotal') fail(`option timeouts.${key} must be an integer from 1 to 86400000, got 0`)
  }
  const upstream = section(options.upstream, DEFAULT_UPSTREAM, 'upstream', 0, 1_000_000)
  integer(upstream.maxConnections, 'upstream.maxConnections', 1, 1_000_000)
  integer(upstream.pipelining, 'upstream.pipelining', 1, 1024)

  const givenLimits = section(options.limits, DEFAULT_LIMITS, 'limits', 0, 10_000_000)
  integer(givenLimits.maxConnections, 'limits.maxConnections', 1, 10_000_000)
  const allowed = DEFAULT_LIMITS.maxConnections
  // a guessed limit lowers nothing: only one read from the system does
  const requested = OPEN_FILE_LIMIT !== null && givenLimits.maxConnections > allowed ? givenLimits.maxConnections : 0
  const limits = requested === 0 ? givenLimits : Object.freeze({ ...givenLimits, maxConnections: allowed })

  const via = options.via ?? DEFAULTS.via
  if (typeof via !== 'string' || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(via)) fail('option via must be an HTTP token, e.g. "rp4"')

  return Object.freeze({
    listen: Object.freeze(listen),
    targets: Object.freeze(targets),
    timeouts,
    upstream,
    maxPipelinedRequests: options.maxPipelinedRequests === undefined
      ? DEFAULTS.maxPipelinedRequests
      : integer(options.maxPipelinedRequests, 'maxPipelinedRequests', 1, 1024),
    maxHeaderSize: options.maxHeaderSize === undefined
      ? DEFAULTS.maxHeaderSize
      : integer(options.maxHeaderSize, 'maxHeaderSize', 256, 1_048_576),
    maxRequestLine: options.maxRequestLine === undefined
      ? DEFAULTS.maxRequestLine
      : integer(options.maxRequestLine, 'maxRequestLine', 16, 1_048_576),
    maxHeaders: options.maxHeaders === undefined ? DEFAULTS.maxHeaders : integer(options.maxHeaders, 'maxHeaders', 1, 10_000),
    maxBodySize: options.maxBodySize === undefined ? DEFAULTS.maxBodySize : integer(options.maxBodySize, 'maxBodySize', 0, Number.MAX_SAFE_INTEGER),
    minDataRate: options.minDataRate === undefined ? DEFAULTS.minDataRate : integer(options.minDataRate, 'minDataRate', 0, 1_000_000_000),
    hideHeaders: hideHeaders(options.hideHeaders),
    interceptErrors: options.interceptErrors === undefined ? DEFAULTS.interceptErrors : flag(options.interceptErrors, 'interceptErrors'),
    allowUnderscoresInHeaders: options.allowUnderscoresInHeaders === undefined
      ? DEFAULTS.allowUnderscoresInHeaders
      : flag(options.allowUnderscoresInHeaders, 'allowUnderscoresInHeaders'),
    rateLimit: rateLimit(options.rateLimit),
    via: '1.1 ' + via,
    tcp,
    tcpFallback,
    tls,
    access: resolveAccess(options.access),
    limits,
    connectionLimit: Object.freeze({ openFiles: OPEN_FILE_LIMIT, allowed, requested }),
  })
}
