/**
 * The resolved configuration: what the runtime reads, whatever it came from (a YAML file, the
 * library's options object, or the CLI's flags, all validated by one schema). Every default is
 * filled in, every unit converted (durations in ms, sizes in bytes), every name resolved and
 * checked; the objects are frozen. Nothing here is parsed again on the hot path.
 */
import type { ConnectionOptions } from 'node:tls'
import type { AccessRule } from '../admission/access.js'

export interface Model {
  listeners: readonly ListenerModel[]
  /** In configuration order: the order the router tries them in within a host class. */
  routes: readonly RouteModel[]
  /** Upstream groups by name. */
  upstreams: ReadonlyMap<string, GroupModel>
  http: HttpModel
  limits: Readonly<ConnectionLimits>
  /** null: no access log. */
  accessLog: Readonly<AccessLogModel> | null
  /** ms requests in flight may take to finish on SIGTERM/SIGINT or a drain, before connections are closed. */
  drainTimeout: number
  /** ms a drain goes on accepting (readiness already false) before the listeners close; 0: at once. */
  drainDelay: number
  /** null: no admin endpoint. */
  admin: Readonly<AdminModel> | null
  /** Processes serving traffic (`auto` resolved); 1: a single process. Only the CLI reads it. */
  workers: number
  /** How new connections reach the workers (cluster's SCHED_RR or SCHED_NONE). */
  workerScheduling: 'round-robin' | 'kernel'
}

export interface AdminModel {
  /** Never every interface: an address without a host is 127.0.0.1. */
  listen: Readonly<HostPort>
  /** The bearer token admin requests must carry (all but /healthz and /readyz); null: none. */
  token: string | null
}

export interface AccessLogModel {
  /** A file name, or `-` for stderr. */
  file: string
  format: 'combined' | 'json'
  /** Bytes of lines that may wait for the disk; beyond it lines are dropped (and counted). */
  buffer: number
}

export interface ConnectionLimits {
  /**
   * Open client connections in all, over every listener; over it, a new one is closed at once.
   * At most what the open-file limit allows (two descriptors per connection), which is also the default.
   */
  maxConnections: number
  /** Open client connections per client IP (IPv6: per /64); 0: no cap. */
  maxConnectionsPerIp: number
  /** The process's open-file limit, or null where it cannot be read. */
  openFiles: number | null
  /** `maxConnections` as configured when it was over what the open-file limit allows (and lowered); 0 otherwise. */
  requested: number
}

/** The HTTP engine's settings for every client connection. */
export interface HttpModel {
  maxHeaderSize: number
  maxRequestLine: number
  maxHeaders: number
  maxPipelinedRequests: number
  /** bytes/s; 0: no minimum. */
  minDataRate: number
  timeouts: Readonly<{
    clientIdle: number
    /** ms; 0: never (downstream/parked.ts). */
    clientPark: number
    requestHead: number
    requestBody: number
  }>
  /** The value added to Via, e.g. `1.1 rp4`. */
  via: string
  /** Response headers removed, lowercased; empty: none. */
  hideHeaders: ReadonlySet<string>
  /** Request headers whose names contain `_` are passed (dropped otherwise). */
  underscoresInHeaders: boolean
}

export type ListenerProtocol =
  /** The first bytes decide: HTTP, TLS (terminated, or passed through by SNI), or the TCP fallback. */
  | 'auto'
  /** Raw TCP to `upstream`, no detection. */
  | 'tcp'

export interface ListenerModel {
  name: string
  listen: HostPort
  protocol: ListenerProtocol
  /** tcp listeners: the group relayed to. */
  upstream: string | null
  /** auto listeners: where bytes that are neither HTTP nor TLS go (and a silent client); null: refused. */
  tcpFallback: string | null
  /** null: a TLS ClientHello is bytes of no known protocol (the fallback, or closed). */
  tls: ListenerTls | null
  /** Every request is answered with a redirect to the same URL over https (a :80 listener beside :443). */
  redirectToHttps: boolean
  /** Names of the routes served here, in the routes' configuration order; null: every route. */
  routes: readonly string[] | null
  access: AccessModel | null
  /** PROXY protocol from these senders (their headers required, anyone else's refused); null: none expected. */
  acceptProxy: Readonly<{ from: readonly AccessRule[], timeout: number }> | null
  timeouts: Readonly<{
    /** A client that sends nothing this long goes to the fallback (only with one), ms. */
    detect: number
    tlsHandshake: number
    /** Raw relays with no byte either way for this long are closed, ms. */
    tcpIdle: number
  }>
}

export interface ListenerTls {
  certificates: ReadonlyArray<Readonly<{ cert: string, key: string }>>
  /**
   * Server names relayed as raw TLS: `name` or `*.domain` (one more label) → upstream group; `*`
   * (last when present, never beside certificates) relays every other name, and a ClientHello
   * without SNI. A name nothing here matches is terminated with the certificates; with none, it
   * is bytes of no known protocol (`tcpFallback`, or closed).
   */
  passthrough: ReadonlyArray<Readonly<{ name: string, upstream: string }>>
  /** How often certificate files are checked for changes, ms; 0 never. */
  reloadInterval: number
  /** Cleartext HTTP on this port: a redirect to https (default), refused (closed), or served. */
  cleartext: 'redirect' | 'refuse' | 'serve'
  /** Mozilla's profile handshakes are made with (tls/profile.ts). */
  profile: 'intermediate' | 'modern'
  /** A custom OpenSSL cipher list instead of the profile's; null: the profile's. */
  ciphers: string | null
  /** The `Strict-Transport-Security` value sent on responses over TLS here; null: none. */
  hsts: string | null
  clientCertificates: ClientCertificatesModel | null
  /** ms between replacements of the session ticket keys; 0: never. */
  ticketKeyRotation: number
  /** Bytes the TLS 1.2 session-ID cache may hold; 0: no cache (tls/session-cache.ts). */
  sessionCache: number
  /** ms a session can be resumed for, when the cache is on. */
  sessionTimeout: number
  /** Certificates that name an OCSP responder get their responses stapled. */
  ocspStapling: boolean
  acme: AcmeModel | null
}

/** Certificates obtained by ACME for a listener. */
export interface AcmeModel {
  names: readonly string[]
  /** `*.domain` or names: obtained on first use when the library's ask hook allows. */
  patterns: readonly string[]
  email: string | null
  directory: string
  /** An absolute directory. */
  storage: string
  challenges: readonly string[]
}

/** Mutual TLS on a listener. */
export interface ClientCertificatesModel {
  /** The CA bundle's files, and their PEM contents (read at load). */
  caFiles: readonly string[]
  ca: readonly Buffer[]
  /** `require`: a connection without a verified certificate is refused; `request`: it is served without an identity. */
  mode: 'require' | 'request'
  /** How a refusal shows: the handshake fails, or every request on the connection is answered 403. */
  onFailure: 'handshake' | 'forbidden'
  /** Request headers the verified subject and fingerprint are forwarded in; null: not forwarded. */
  subjectHeader: string | null
  fingerprintHeader: string | null
}

export interface AccessModel {
  rules: readonly AccessRule[]
  /** Read and watched for changes; null: none. */
  file: string | null
}

export type ActionModel =
  | Readonly<{ kind: 'proxy', upstream: string }>
  | Readonly<{ kind: 'respond', status: number, headers: ReadonlyArray<readonly [string, string]>, body: string }>
  /** `location` may hold `$scheme`, `$host`, `$path` and `$query` (with its `?`), filled per request. */
  | Readonly<{ kind: 'redirect', location: string, status: number }>
  /** Files from a directory (handlers/static.ts). */
  | Readonly<{ kind: 'static' } & StaticModel>

export interface StaticModel {
  /** Absolute, as configured (symbolic links in it resolved when the server starts). */
  root: string
  index: readonly string[]
  listing: boolean
  hidden: boolean
  followSymlinks: boolean
  precompressed: boolean
  cacheControl: string
  maxOpenFiles: number
  /** ms a path's resolution (file, validators, in-memory bytes) is used before the file system is asked again; 0: every request. */
  revalidate: number
  /** Bytes: bound of the per-path memory (resolutions and small files' bytes). */
  memoryCache: number
  /** Bytes: files up to this size are kept in memory; 0: none. */
  memoryFileSize: number
  /** The upstream group that gets requests for which no file exists; null: 404. */
  fallback: string | null
}

export type FilterModel =
  | Readonly<{ kind: 'stripPrefix', prefix: string }>
  | Readonly<{ kind: 'rewritePath', pattern: RegExp, replacement: string }>
  | Readonly<{ kind: 'requestHeaders' | 'responseHeaders', set: ReadonlyArray<readonly [string, string]>, add: ReadonlyArray<readonly [string, string]>, remove: readonly string[] }>
  /** A filter the library user registered under this name (`createProxy({ filters })`). */
  | Readonly<{ kind: 'user', name: string }>

export interface RouteModel {
  name: string
  match: RouteMatch
  action: ActionModel
  /** Applied in this order to the request, and in reverse order to the response. */
  filters: readonly FilterModel[]
  /** Largest request body, bytes; 0: no limit. */
  maxBodySize: number
  timeouts: Readonly<{
    /** From the request sent until the response head, ms. */
    response: number
    /** From the request sent until the response is complete, ms; 0: no limit. */
    responseTotal: number
  }>
  /** A backend's 502/503/504 is answered with rp4's own page. */
  interceptErrors: boolean
  /** Requests per client IP (IPv6 /64); null: none. */
  rateLimit: Readonly<{ rate: number, burst: number }> | null
  /** `Strict-Transport-Security` over TLS, instead of the listener's; null: the listener's. */
  hsts: string | null
  /** Only clients with a verified certificate (the listener's tls.clientCertificates) are served; others get 403. */
  requireClientCertificate: boolean
  /** Responses compressed for clients that accept it; null: off. */
  compress: CompressModel | null
  /** An RFC 9111 shared cache of this route's responses; null: off. */
  cache: CacheModel | null
}

/** The response cache (filters/cache.ts). */
export interface CacheModel {
  /** The memory store's bound, bytes. */
  size: number
  /** Largest response stored, bytes. */
  maxEntrySize: number
  /** How long past freshness a response is served while revalidated in the background, when it does not say, ms. */
  staleWhileRevalidate: number
  /** How long past freshness a response is served when the backend fails, when it does not say, ms. */
  staleIfError: number
  /** A directory the entries are also kept in, surviving restarts; null: memory only. */
  dir: string | null
}

/** Response compression (filters/compress.ts). */
export interface CompressModel {
  /** The codings offered, in the server's order of preference (ties in the client's q-values). */
  encodings: ReadonlyArray<'br' | 'gzip'>
  /** Media types compressed: `text/*`, `application/json`, `application/*+json`. */
  types: readonly string[]
  /** Bodies whose Content-Length is under this are sent as they are, bytes. */
  minSize: number
  gzipLevel: number
  brotliLevel: number
}

export interface GroupModel {
  name: string
  targets: readonly TargetModel[]
  policy: BalanceModel
  /** A target that comes back (or is added) ramps its share up over this long, ms; 0: at once. */
  slowStart: number
  /** Percent of primaries up below which every primary is chosen from again; 0: never. */
  panicThreshold: number
  /** A PROXY protocol header sent on each new connection to a target; null: none. */
  sendProxy: 'v1' | 'v2' | null
  pool: Readonly<{
    maxConnections: number
    maxQueue: number
    /** Requests in flight per connection; 1: no pipelining. */
    pipelining: number
    /** Idle pooled connections close after this long, ms. */
    idleTimeout: number
  }>
  timeouts: Readonly<{
    connect: number
    /** A target that failed to connect is skipped this long, ms. */
    failedTarget: number
  }>
  /** Active checks of every target; null: none. */
  healthCheck: HealthCheckModel | null
  /** Passive outlier detection; null: none. */
  outlier: OutlierModel | null
  retries: RetryModel
  /** Targets given by DNS name (and `srv://` ones) are re-resolved in the background; null: names are resolved per connection. */
  discovery: DiscoveryModel | null
  /** Sticky sessions: rp4 sets this cookie to name the target that answered; null: off. */
  sticky: Readonly<{ cookie: string, maxAge: number }> | null
  /** Circuit breaking: requests over these are answered 503 at once. 0: no cap. */
  limits: Readonly<{ maxRequests: number, maxPending: number }>
}

export interface DiscoveryModel {
  /** A name's answer is kept at least / at most this long whatever its TTL says, ms. */
  minTtl: number
  maxTtl: number
  /** A name that stops resolving keeps its last answer this long, ms. */
  keepStale: number
  /** DNS servers (`IP` or `IP:PORT`) asked instead of the system's; empty: the system's. */
  servers: readonly string[]
}

export interface HealthCheckModel {
  kind: 'http' | 'tcp'
  method: string
  path: string
  /** Host header; null: the target's HOST:PORT. */
  host: string | null
  /** Inclusive ranges of the statuses that pass. */
  statuses: ReadonlyArray<readonly [number, number]>
  /** Text the body must contain (first 64 KiB); null: any body. */
  body: string | null
  /** Check over TLS (a TCP check: the handshake too); null: as the target speaks (https:// targets). */
  tls: boolean | null
  interval: number
  timeout: number
  /** Each interval varies by up to this fraction either way. */
  jitter: number
  rise: number
  fall: number
}

export interface OutlierModel {
  /** Connect failures and resets in a row that eject; 0: not counted. */
  consecutiveFailures: number
  /** 5xx responses in a row that eject; 0: not counted. */
  consecutive5xx: number
  /** Targets with at least `minRequests` in an interval whose success rate is below the mean by `stdevFactor` standard deviations are ejected; null: off. */
  successRate: Readonly<{ minRequests: number, stdevFactor: number, interval: number }> | null
  /** First ejection's length; each further one of the same target adds as much, up to `maxEjection`, ms. */
  baseEjection: number
  maxEjection: number
  /** Never more than this percent of the group ejected at once. */
  maxEjectedPercent: number
}

export interface RetryModel {
  /** Tries after the first, on other targets; 0: none beyond failover after a failed connect. */
  count: number
  /** Response statuses retried (idempotent requests, before anything reached the client). */
  statuses: readonly number[]
  /** Each try's wait for a response head, ms; 0: the route's response timeout. */
  perTryTimeout: number
  /** Retries may add at most this percent to the group's active requests... */
  budgetPercent: number
  /** ...but this many retries at once are always allowed. */
  budgetMinConcurrency: number
  /** Requests that are not idempotent (POST, PATCH) are retried too, when their body is all at hand. */
  nonIdempotent: boolean
  /** Failed tries in a row (a status in `statuses`, a reset, a timeout) that skip a target for the failed-target time; 0: never. Only with `count`. */
  markDownAfter: number
}

/** How a group picks a target among those that are up. */
export type BalanceModel =
  | Readonly<{ kind: 'round-robin' }>
  /** Fewest requests (HTTP) or connections (TCP) in flight per unit of weight. */
  | Readonly<{ kind: 'least-conn' }>
  /** Power of two choices over requests in flight, times the smoothed latency with `latency`. */
  | Readonly<{ kind: 'p2c', latency: boolean }>
  /** Consistent hashing with bounded loads; `name` is the header or cookie name for those. */
  | Readonly<{ kind: 'hash', by: HashBy, name: string, loadFactor: number }>

export type HashBy = 'ip' | 'uri' | 'header' | 'cookie'

export interface TargetModel extends HostPort {
  /** `HOST:PORT`, as logs and events show it and as Host for an HTTP/1.0 request without one. */
  authority: string
  weight: number
  /** Chosen only while no primary target is up. */
  backup: boolean
  /** `srv://NAME`: `host` is an SRV name whose records give the targets (port 0 here). */
  srv: boolean
  /** What `tls.connect` needs besides host and port (servername, ca, cert/key, verification); null: cleartext. */
  tls: Readonly<ConnectionOptions> | null
}

/** A parsed `[HOST]:PORT`. `host` is '' for "every interface"; IPv6 literals are kept without brackets. */
export interface HostPort {
  host: string
  port: number
}

/** A condition on one request header. */
export interface HeaderCondition {
  /** Field name, any case. */
  name: string
  /** The field's value must equal this (case-sensitive, after trimming); undefined: present with any value. */
  value?: string
}

export interface RouteMatch {
  /** Lowercased names, `*.example.com` for subdomains at any depth; null or empty: any host. */
  hosts?: readonly string[] | null
  path?: { exact: string } | { prefix: string } | null
  /** Uppercase method names; null or empty: any method. */
  methods?: readonly string[] | null
  headers?: readonly HeaderCondition[] | null
}
