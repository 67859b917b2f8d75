/**
 * The one schema of rp4's options: what a YAML file, the library's options object and the CLI's
 * flags may say. It is the single source of truth for validation (validate.ts), defaults and
 * units (build.ts), the flags that map onto it and `--help` (flags.ts), and the README's
 * reference tables (docs.ts).
 *
 * Two forms are accepted. The flat shorthand is today's `ProxyOptions` (lib/config/options.ts):
 * `listen` and `targets` and their companions, meaning one listener, one catch-all route and one
 * upstream group named `default`. The full form says `listeners`, `routes` and `upstreams`, with
 * `http` for the HTTP engine's settings. `limits` belongs to both.
 *
 * Every leaf carries its help text (`description`), its default in the user's units (`default`,
 * or `defaultText` when it is derived), its `unit`, its `min`/`max` in the user's units, and the
 * CLI flags that set it (`flag`). The annotations ride on the JSON Schema objects that TypeBox
 * builds; `meta()` reads them back.
 */
import type { Static, TSchema } from '@sinclair/typebox'
import { Kind, Type } from './typebox.js'
import type { Range, UnitKind } from './units.js'

/** How a string leaf is checked beyond its type (validate.ts knows each). */
export type StringCheck =
  /** `[HOST]:PORT`, `:PORT` or `PORT` to listen on (port 0: a free one). */
  | 'listen'
  /** `HOST:PORT`, `http://HOST[:PORT]` or `https://HOST[:PORT]`. */
  | 'target'
  /** A target with the command line's options: `HOST:PORT[,weight=N][,backup]`. */
  | 'targetSpec'
  /** The CLI's health check: a path, or `tcp`. */
  | 'healthCheck'
  /** Status codes and ranges: `200-399`, `200,204`. */
  | 'statusRanges'
  /** A balancing policy: round-robin, least-conn, p2c, p2c-latency, hash:ip, hash:uri, hash:header:NAME, hash:cookie:NAME. */
  | 'balance'
  /** `HOST:PORT` of a raw TCP backend. */
  | 'hostPort'
  | 'cidr'
  | 'headerName'
  /** A header value: no CR, LF or NUL. */
  | 'headerValue'
  /** An HTTP token (the name in Via, a method). */
  | 'token'
  | 'method'
  /** A TLS server name, or `*.domain`, or `*` (every other name). */
  | 'serverName'
  /** A DNS name, no wildcard (the SNI sent to a backend). */
  | 'dnsName'
  /** A host a route matches: a name, or `*.domain`. */
  | 'host'
  /** A request path: starts with `/`, already normalized. */
  | 'path'
  | 'regex'
  /** A redirect's `Location`, with `$scheme`, `$host`, `$path`, `$query`. */
  | 'location'
  /** A listener, route, upstream group or filter name. */
  | 'name'
  | 'file'

/** A command-line flag that sets (part of) the leaf it annotates, in the flat form. */
export interface FlagSpec {
  /** As typed: `--connect-timeout`. */
  name: string
  /** The argument's placeholder in help (`DUR`, `HOST:PORT`); none for a switch. */
  arg?: string
  /** A switch that sets this value (`--insecure-upstream` sets `verify: false`). */
  set?: unknown
  /** May be given several times: each adds an item (to a list, or to a list of objects by position). */
  repeat?: boolean
  /** `NAME=VALUE`, one entry of a mapping per occurrence. */
  entry?: boolean
  /** The value a bare flag stands for: its argument is optional (`--access-log` alone: `-`, stderr). */
  bare?: string
  /** Help text when it differs from the leaf's description. */
  help?: string
  /** The default as help shows it, when it differs from the leaf's. */
  defaultText?: string
  /** The section of `--help` it is listed in. */
  group: FlagGroup
}

export const FLAG_GROUPS = ['Backends', 'Balancing and health', 'Web acceleration', 'Timeouts', 'Protocols and TCP', 'TLS', 'Limits', 'Headers and errors', 'Access control and connection caps', 'Operations'] as const
export type FlagGroup = typeof FLAG_GROUPS[number]

export interface Meta extends Range {
  description: string
  /** In the user's units (`5s`, `1g`), as a file would say it. */
  default?: unknown
  /** When the default is not a literal: `the targets`, `what the open-file limit allows`. */
  defaultText?: string
  unit?: UnitKind
  check?: StringCheck
  /** The type error's wording, when the kind's own would be vague (unions). */
  expected?: string
  flag?: FlagSpec | FlagSpec[]
  /** Mappings: how their keys are checked. */
  keyCheck?: StringCheck
}

type Annotations = Omit<Meta, 'description'> & { description: string }

export function meta (schema: TSchema): Meta {
  return schema as unknown as Meta
}

export function flagsOf (schema: TSchema): FlagSpec[] {
  const flag = meta(schema).flag
  return flag === undefined ? [] : Array.isArray(flag) ? flag : [flag]
}

export function kindOf (schema: TSchema): string {
  return (schema as unknown as Record<symbol, string>)[Kind]
}

// Leaves. Durations and sizes take a number (ms, bytes: the library's units) or a string with a unit.

function duration (a: Annotations & Range) {
  return Type.Union([Type.Number(), Type.String()], { ...a, unit: 'duration', expected: 'must be a duration: 500ms, 5s, 2m, 1h (a number is milliseconds)' })
}
function size (a: Annotations & Range) {
  return Type.Union([Type.Number(), Type.String()], { ...a, unit: 'size', expected: 'must be a size: 512, 64k, 1m, 1g (a number is bytes)' })
}
function count (a: Annotations & Range) {
  return Type.Integer({ ...a, unit: 'count' })
}
function text (check: StringCheck, a: Annotations) {
  return Type.String({ ...a, check })
}
function bool (a: Annotations) {
  return Type.Boolean(a)
}
function choice<const T extends string[]> (values: [...T], a: Annotations) {
  return Type.Union(values.map(v => Type.Literal(v)) as { [K in keyof T]: ReturnType<typeof Type.Literal<T[K]>> }, {
    ...a, expected: `must be one of ${values.join(', ')}`,
  })
}
function section<P extends Record<string, TSchema>> (properties: P, description: string, expected?: string) {
  return Type.Object(properties, { additionalProperties: false, description, expected })
}
const opt = Type.Optional

// ── Shared leaves: one definition for a setting that the flat form and the full form both have ──

const TIMEOUT_MAX = '24h'

export const ConnectTimeout = duration({ description: 'opening a connection to a backend; then the next backend, or 502', default: '5s', min: '1ms', max: TIMEOUT_MAX, flag: { name: '--connect-timeout', arg: 'DUR', group: 'Timeouts' } })
export const ResponseTimeout = duration({ description: 'from the request sent to the response head; then 504', default: '60s', min: '1ms', max: TIMEOUT_MAX, flag: { name: '--timeout', arg: 'DUR', group: 'Timeouts' } })
export const ResponseTotalTimeout = duration({ description: 'a whole response, from the request sent to its last byte; past it the client connection is closed (or 504 before the head); off by default: streams and large downloads have no natural end', default: 0, zero: 'no limit', min: '1ms', max: TIMEOUT_MAX, flag: { name: '--response-total-timeout', arg: 'DUR', group: 'Timeouts' } })
export const ClientIdleTimeout = duration({ description: 'an idle keep-alive client connection is closed', default: '60s', min: '1ms', max: TIMEOUT_MAX, flag: { name: '--client-idle-timeout', arg: 'DUR', group: 'Timeouts' } })
export const ClientParkTimeout = duration({ description: 'an idle keep-alive client connection (cleartext) gives up its socket object, parser and buffers after this long, keeping only its descriptor, and gets them back when it sends again', default: '5s', zero: 'never', min: '1ms', max: TIMEOUT_MAX, flag: { name: '--client-park-timeout', arg: 'DUR', group: 'Timeouts' } })
export const RequestHeadTimeout = duration({ description: 'a client must send a complete request head; then 408', default: '10s', min: '1ms', max: TIMEOUT_MAX, flag: { name: '--request-head-timeout', arg: 'DUR', group: 'Timeouts' } })
export const RequestBodyTimeout = duration({ description: 'a request body may pause this long between two pieces; then 408 (time rp4 holds the client back for a slow backend does not count)', default: '30s', min: '1ms', max: TIMEOUT_MAX, flag: { name: '--request-body-timeout', arg: 'DUR', group: 'Timeouts' } })
export const UpstreamIdleTimeout = duration({ description: 'an idle pooled backend connection is closed', default: '30s', min: '1ms', max: TIMEOUT_MAX, flag: { name: '--upstream-idle-timeout', arg: 'DUR', group: 'Timeouts' } })
export const FailedTargetTimeout = duration({ description: 'a backend that failed to connect is skipped this long', default: '10s', min: '1ms', max: TIMEOUT_MAX, flag: { name: '--failed-target-timeout', arg: 'DUR', group: 'Timeouts' } })
export const TcpIdleTimeout = duration({ description: 'a relayed TCP connection (raw, passthrough, fallback) with no byte either way is closed', default: '1h', min: '1ms', max: TIMEOUT_MAX, flag: { name: '--tcp-idle-timeout', arg: 'DUR', group: 'Protocols and TCP' } })
export const DetectTimeout = duration({ description: 'with a TCP fallback, a client silent this long is relayed there (a server-first protocol); without one, it is served HTTP', default: '300ms', min: '1ms', max: '1m', flag: { name: '--detect-timeout', arg: 'DUR', group: 'Protocols and TCP', help: 'with --tcp-to: a client silent this long is relayed there (the server speaks first); without: it is served HTTP' } })
export const TlsHandshakeTimeout = duration({ description: 'a client must complete its TLS handshake (ClientHello included)', default: '10s', min: '1ms', max: TIMEOUT_MAX, flag: { name: '--tls-handshake-timeout', arg: 'DUR', group: 'TLS' } })
export const TicketKeyRotation = duration({ description: 'how often the keys that encrypt session tickets are replaced (a ticket made before a rotation needs a full handshake after it; tickets are told to last as long, or `sessionTimeout` while the session cache is on)', default: '12h', zero: 'never', min: '1s', max: TIMEOUT_MAX })
export const SessionCache = size({ description: 'the server-side session cache (TLS 1.2 resumption by session ID, for clients that take no tickets; TLS 1.3 resumes by tickets either way): its bound in bytes, least recently used sessions dropped first (about 350 bytes per session, more with a client certificate); 0 turns it off, which spares two calls into JavaScript per handshake', default: '10m', zero: 'off', min: '4k', max: '1g', flag: { name: '--tls-session-cache', arg: 'BYTES', group: 'TLS', help: 'bound of the TLS 1.2 session-ID cache (0: off, resumption by tickets only)' } })
export const SessionTimeout = duration({ description: 'how long a session can be resumed, from the session cache and by ticket (with the cache off, tickets last one `ticketKeyRotation` instead, at most a day)', default: '24h', min: '1s', max: TIMEOUT_MAX })
export const OcspStapling = bool({ description: 'staple OCSP responses for certificates that name a responder (their file must hold the issuer after the leaf): fetched in the background, refreshed before they expire, never waited for in a handshake', default: true })
export const ReloadInterval = duration({ description: 'how often certificate files are checked for changes', default: '2s', zero: 'never', min: '10ms', max: TIMEOUT_MAX })

export const MaxConnectionsPerTarget = count({ description: 'connections per backend; more requests wait in a queue', default: 256, min: 1, max: 1_000_000, flag: { name: '--max-conns', arg: 'N', group: 'Backends' } })
export const MaxQueue = count({ description: 'requests waiting for a backend connection; beyond it 503', default: 4096, min: 0, max: 1_000_000, flag: { name: '--max-queue', arg: 'N', group: 'Backends' } })
export const Pipelining = count({ description: 'GET/HEAD requests in flight per backend connection (1: no pipelining); 8 pays for small-request traffic (see Performance)', default: 1, min: 1, max: 1024, flag: { name: '--pipelining', arg: 'N', group: 'Backends' } })

export const MaxPipelinedRequests = count({ description: 'requests in flight per client connection', default: 32, min: 1, max: 1024, flag: { name: '--max-pipelined', arg: 'N', group: 'Limits' } })
export const MaxHeaderSize = size({ description: 'largest request or response head; a larger request gets 431', default: '64k', min: 256, max: '1m', flag: { name: '--max-header-size', arg: 'BYTES', group: 'Limits' } })
export const MaxRequestLine = size({ description: 'longest request target; a longer one gets 414', default: '8k', min: 16, max: '1m', flag: { name: '--max-request-line', arg: 'BYTES', group: 'Limits' } })
export const MaxHeaders = count({ description: 'most header fields in a request or response head; more gets 431', default: 100, min: 1, max: 10_000, flag: { name: '--max-headers', arg: 'N', group: 'Limits' } })
export const MaxBodySize = size({ description: 'largest request body; a larger one gets 413', default: '1g', zero: 'no limit', min: 1, max: Number.MAX_SAFE_INTEGER, flag: { name: '--max-body-size', arg: 'BYTES', group: 'Limits' } })
export const MinDataRate = size({ description: 'bytes per second below which a request head or body (after 2 s) gets 408', default: 500, zero: 'no minimum', min: 1, max: '1g', flag: { name: '--min-data-rate', arg: 'BYTES', group: 'Limits' } })

export const DEFAULT_HIDDEN_HEADERS = ['Server', 'X-Powered-By', 'X-AspNet-Version', 'X-AspNetMvc-Version']
export const HideHeaders = Type.Array(text('headerName', { description: 'a header name' }), {
  description: 'response headers removed (any case); [] keeps all',
  default: DEFAULT_HIDDEN_HEADERS,
  flag: [
    { name: '--hide-header', arg: 'NAME', repeat: true, group: 'Headers and errors', help: 'a response header to remove; repeat to give your own list' },
    { name: '--no-hide-headers', set: [], group: 'Headers and errors', help: 'remove none of them', defaultText: '' },
  ],
})
export const Via = text('token', { description: 'the name rp4 adds to Via (`1.1 NAME`)', default: 'rp4' })
export const InterceptErrors = bool({
  description: "a backend's 502/503/504 is answered with rp4's own page (status kept) instead of passing the backend's response; off: an API's JSON error body and its Retry-After pass",
  default: false,
  flag: [
    { name: '--intercept-errors', set: true, group: 'Headers and errors', help: "answer a backend's 502/503/504 with rp4's own page (status kept) instead of passing the backend's response" },
    { name: '--backend-error-pages', set: false, group: 'Headers and errors', help: "pass a backend's 502/503/504 as it is: the default; accepted so that existing command lines keep working (contradicts --intercept-errors)", defaultText: '' },
  ],
})
export const UnderscoresInHeaders = bool({
  description: 'pass request headers whose name contains `_` (dropped by default: many backends read `Transfer_Encoding` as `Transfer-Encoding`)',
  default: false,
  flag: { name: '--allow-underscores-in-headers', set: true, group: 'Headers and errors' },
})

export const UpstreamVerify = bool({ description: "verify `https://` backends' certificates (against the CA files, or Node's roots); false accepts any", default: true, flag: { name: '--insecure-upstream', set: false, group: 'Backends', help: "do not verify https:// backends' certificates", defaultText: 'off' } })
export const Cleartext = choice(['redirect', 'refuse', 'serve'], { description: 'cleartext HTTP on this TLS port: redirected to https, refused (closed), or served', default: 'redirect' })
export const TlsProfile = choice(['intermediate', 'modern'], { description: "Mozilla's server-side TLS profile: `intermediate` is TLS 1.2 and 1.3 with ECDHE and AEAD suites only (AES-GCM, ChaCha20-Poly1305), `modern` is TLS 1.3 only; renegotiation by the client is refused and 0-RTT is off in both", default: 'intermediate', flag: { name: '--tls-profile', arg: 'NAME', group: 'TLS', help: 'intermediate (TLS 1.2+1.3, ECDHE and AEAD suites only) or modern (TLS 1.3 only)' } })
export const TlsCiphers = Type.String({ description: 'an OpenSSL cipher list used instead of the profile\'s (TLS 1.3 suites by their `TLS_` names, TLS 1.2 ones by OpenSSL\'s, separated by `:`)', defaultText: "the profile's", minLength: 1 })
export const Hsts = section({
  maxAge: count({ description: 'seconds a browser keeps to https only for this host (`max-age`); 31536000 (a year) is the usual value once every page of the host works over https; 0 tells browsers to forget the policy', min: 0, max: 1_000_000_000, flag: { name: '--hsts', arg: 'SECONDS', group: 'TLS', help: 'send Strict-Transport-Security: max-age=SECONDS on responses over TLS (31536000 once every page works over https)', defaultText: 'off' } }),
  includeSubDomains: opt(bool({ description: 'the policy covers every subdomain of the host too', default: false })),
  preload: opt(bool({ description: "ask to be in browsers' built-in lists (hstspreload.org): needs includeSubDomains and a maxAge of a year or more", default: false })),
}, 'Strict-Transport-Security on responses over TLS (never over cleartext; a backend\'s own header is kept); off by default', 'must be a mapping { maxAge, includeSubDomains, preload }')
export const ClientCertificates = section({
  ca: Type.Array(text('file', { description: 'a PEM file' }), { minItems: 1, description: 'CA certificates (PEM files) a client certificate must be signed by', flag: { name: '--client-ca', arg: 'FILE', repeat: true, group: 'TLS', help: 'require a client certificate signed by this CA (PEM); repeat for several' } }),
  mode: opt(choice(['require', 'request'], { description: '`require`: a client without a verified certificate is refused (as `onFailure` says); `request`: one is asked for, and a client without one is served with no identity', default: 'require', flag: { name: '--client-ca-optional', set: 'request', group: 'TLS', help: 'with --client-ca: ask for a client certificate without requiring one', defaultText: '' } })),
  onFailure: opt(choice(['handshake', 'forbidden'], { description: 'a certificate that does not verify (or none, with `require`): the TLS handshake fails, or every request on that connection is answered 403', default: 'handshake' })),
  subjectHeader: opt(text('headerName', { description: "request header the verified certificate's subject is forwarded in (`CN=client, O=Example`); a client's own copy is always removed", defaultText: 'not forwarded' })),
  fingerprintHeader: opt(text('headerName', { description: "request header the verified certificate's SHA-256 fingerprint is forwarded in; a client's own copy is always removed", defaultText: 'not forwarded' })),
}, 'client certificates (mutual TLS): asked for in the handshake and verified against a CA bundle', 'must be a mapping with at least ca')
export const ACME_LETS_ENCRYPT = 'https://acme-v02.api.letsencrypt.org/directory'
export const Acme = section({
  names: opt(Type.Array(text('dnsName', { description: 'a DNS name' }), { description: 'names a certificate is obtained for at start (one certificate each), and renewed once a third of its lifetime is left', default: [], flag: { name: '--acme', arg: 'NAME', repeat: true, group: 'TLS', help: 'obtain and renew a certificate for NAME by ACME (Let\'s Encrypt unless --acme-directory); repeat for several' } })),
  patterns: opt(Type.Array(text('serverName', { description: '`*.example.com` or a name' }), { description: 'names obtained on first use (a handshake asking for one) when the library\'s `acmeAsk` hook allows it; without the hook, none', default: [] })),
  email: opt(Type.String({ description: 'the ACME account\'s contact (expiry and incident mail from the CA)', defaultText: 'none', minLength: 3, flag: { name: '--acme-email', arg: 'EMAIL', group: 'TLS' } })),
  directory: opt(Type.String({ description: 'the CA\'s ACME directory URL (its TLS certificate may be trusted through NODE_EXTRA_CA_CERTS)', default: ACME_LETS_ENCRYPT, flag: { name: '--acme-directory', arg: 'URL', group: 'TLS', help: 'the ACME directory URL (a staging, test or internal CA)' } })),
  storage: opt(text('file', { description: 'where the account key and the certificates are kept (directories 0700, keys 0600)', defaultText: '$XDG_DATA_HOME/rp4/acme (~/.local/share/rp4/acme)', flag: { name: '--acme-storage', arg: 'DIR', group: 'TLS' } })),
  challenges: opt(Type.Array(choice(['tls-alpn-01', 'http-01'], { description: 'a challenge type' }), { minItems: 1, description: 'challenge types, preferred first: `tls-alpn-01` is answered on this TLS port (443 for the CA), `http-01` by any cleartext listener (80 for the CA)', default: ['tls-alpn-01', 'http-01'] })),
}, 'certificates obtained and renewed automatically (ACME, RFC 8555), served beside `certificates`', 'must be a mapping { names, patterns, email, directory, storage, challenges }')
export const RedirectStatus = Type.Union([301, 302, 303, 307, 308].map(v => Type.Literal(v)), { description: 'the status code', default: 302, expected: 'must be one of 301, 302, 303, 307, 308' })
export const RespondStatus = count({ description: 'the status code', default: 200, min: 200, max: 599 })

/**
 * The policy of a group that names none: P2C over outstanding requests blended with each target's
 * response-time average, chosen by measurement (`node dist/perf/balance.js --duration 5`, perf/README):
 * with one slow backend of three it led round robin, least-conn, plain P2C, nginx least_conn and
 * HAProxy leastconn (req/s and p99); with one failing it let no error through, as every policy
 * does with retries. Flags, `--help`, the README tables and the policy table's "(default)"
 * (spec/config/balancing-example.ts) follow this line; specs that count on an order name their policy.
 */
export const DEFAULT_BALANCE = 'p2c-latency'

export const Balance = text('balance', {
  description: 'how a backend is picked: `round-robin` (smooth, weighted), `least-conn` (fewest requests or connections in flight per weight), `p2c` (the less loaded of two at random; `p2c-latency` weighs in response times), `hash:ip`, `hash:uri`, `hash:header:NAME`, `hash:cookie:NAME` (consistent hashing with bounded loads; a request without the key goes round robin)',
  default: DEFAULT_BALANCE,
  flag: { name: '--balance', arg: 'POLICY', group: 'Balancing and health', help: 'round-robin | least-conn | p2c | p2c-latency | hash:ip | hash:uri | hash:header:NAME | hash:cookie:NAME' },
})
export const HashLoadFactor = Type.Number({ description: 'hash policies: no backend takes more than this times the mean load of those up (bounded loads); the next one round the ring takes the request', default: 1.25, unit: 'rate', min: 1, max: 100, flag: { name: '--hash-load-factor', arg: 'C', group: 'Balancing and health' } })
export const SlowStart = duration({ description: 'a backend that comes back (connect succeeded again, checks pass, ejection over) gets a share rising from 10% to its full weight over this long', default: 0, zero: 'off', min: '1s', max: '1h', flag: { name: '--slow-start', arg: 'DUR', group: 'Balancing and health' } })
export const PanicThreshold = count({ description: 'when fewer than this percent of the primary backends are up, spread over all of them rather than crush the few left', default: 0, zero: 'off', min: 1, max: 100, flag: { name: '--panic-threshold', arg: 'PERCENT', group: 'Balancing and health' } })

export const HealthCheckPath = text('healthCheck', { description: 'active checks with the defaults below: a path (`/healthz`) is an HTTP GET expecting 200-399; `tcp` a connect check', flag: { name: '--health-check', arg: 'PATH', group: 'Balancing and health', defaultText: 'none', help: 'check every backend actively: an HTTP GET of PATH expecting 200-399 (every 5s, out after 3 failures, back after 2 passes); tcp instead of a path: a connect check' } })

export const HealthCheck = section({
  type: opt(choice(['http', 'tcp'], { description: '`http`: a request, the response checked; `tcp`: a connection (a TLS handshake with `tls`)', default: 'http' })),
  path: opt(text('path', { description: 'HTTP: the path requested', default: '/' })),
  method: opt(text('method', { description: 'HTTP: the method', default: 'GET' })),
  host: opt(text('headerValue', { description: 'HTTP: the Host header', defaultText: 'the target\'s HOST:PORT' })),
  expectStatus: opt(text('statusRanges', { description: 'HTTP: statuses that pass, as ranges and codes (`200-299,302`)', default: '200-399' })),
  expectBody: opt(Type.String({ description: 'HTTP: text the response body must contain (its first 64 KiB)', defaultText: 'any body', minLength: 1, maxLength: 1024 })),
  tls: opt(bool({ description: 'check over TLS (for `tcp`: a completed handshake)', defaultText: 'as the target: `https://` targets' })),
  interval: opt(duration({ description: 'time between two checks of a target', default: '5s', min: '100ms', max: '1h' })),
  jitter: opt(count({ description: 'each interval varies by up to this percent either way, so that checks of many targets do not go out together', default: 10, min: 0, max: 50 })),
  timeout: opt(duration({ description: 'a check not done by then failed', default: '2s', min: '10ms', max: '1m' })),
  rise: opt(count({ description: 'checks passed in a row that put a failing target back', default: 2, min: 1, max: 100 })),
  fall: opt(count({ description: 'checks failed in a row that take a target out', default: 3, min: 1, max: 100 })),
}, 'active health checks of every target, on connections of their own', 'must be a mapping { type, path, method, host, expectStatus, expectBody, tls, interval, jitter, timeout, rise, fall }')

export const OutlierDetection = section({
  consecutiveFailures: opt(count({ description: 'connect failures and resets in a row that eject a target', default: 5, zero: 'not counted', min: 1, max: 10_000 })),
  consecutive5xx: opt(count({ description: '5xx responses in a row that eject a target', default: 5, zero: 'not counted', min: 1, max: 10_000 })),
  successRate: opt(bool({ description: 'also eject a target whose success rate (non-5xx) over `interval` is more than `successRateStdev` standard deviations below the group\'s mean (targets with at least `successRateMinRequests`)', default: false })),
  successRateMinRequests: opt(count({ description: 'requests a target needs in an interval to be judged by success rate', default: 100, min: 1, max: 1_000_000 })),
  successRateStdev: opt(Type.Number({ description: 'how many standard deviations below the mean ejects', default: 1.9, unit: 'rate', min: 0.1, max: 10 })),
  interval: opt(duration({ description: 'the success-rate window', default: '10s', min: '100ms', max: '1h' })),
  baseEjection: opt(duration({ description: 'how long the first ejection lasts; each further one of the same target adds as much', default: '30s', min: '10ms', max: '1h' })),
  maxEjection: opt(duration({ description: 'the longest an ejection lasts', default: '5m', min: '10ms', max: '24h' })),
  maxEjectedPercent: opt(count({ description: 'never more than this percent of the group ejected at once', default: 50, min: 1, max: 100 })),
}, 'passive outlier detection: targets that fail real requests are ejected for a while', 'must be a mapping of outlier detection settings')

export const RetryCount = count({ description: 'tries after the first, each on another target: after a reset or a timeout before any response byte, or a status in `on`; only idempotent requests without a body (GET, HEAD, OPTIONS, PUT, DELETE) unless `nonIdempotent`; never once a response byte reached the client. Failover after a refused connect (nothing was sent) happens whatever this says', default: 0, zero: 'none', min: 1, max: 10, flag: { name: '--retries', arg: 'N', group: 'Balancing and health' } })

export const Retries = section({
  count: opt(RetryCount),
  on: opt(Type.Array(count({ description: 'a status', min: 500, max: 599 }), { description: 'response statuses retried', default: [502, 503, 504] })),
  perTryTimeout: opt(duration({ description: 'each try\'s wait for the response head', defaultText: 'the route\'s response timeout', min: '1ms', max: '24h' })),
  budgetPercent: opt(count({ description: 'retries in flight may add at most this percent to the group\'s active requests (a retry budget: a slowdown does not become a retry storm)', default: 20, min: 1, max: 1000 })),
  budgetMinConcurrency: opt(count({ description: 'retries in flight always allowed, whatever the budget says (a quiet group can still retry)', default: 3, min: 0, max: 100_000 })),
  nonIdempotent: opt(bool({ description: 'retry requests that are not idempotent (POST, PATCH) too, when they have no body', default: false })),
  markDownAfter: opt(count({ description: 'with `count` set, tries that failed in a row as retried (a status in `on`, a reset or a timeout before the response; any method) skip that target for `timeouts.failedTarget`, as a refused connect does (nginx\'s max_fails): a backend answering 503 to everything stops taking its share. Never more than `outlierDetection.maxEjectedPercent` (50% without it) of the group is out at once; a status not in `on` (a backend\'s own 500) never counts', default: 3, zero: 'never', min: 1, max: 10_000 })),
}, 'retries of failed requests on other targets', 'must be a mapping { count, on, perTryTimeout, budgetPercent, budgetMinConcurrency, nonIdempotent, markDownAfter }')

export const StickyCookie = text('token', { description: 'sticky sessions: rp4 sets this cookie on responses to name (opaquely) the backend that answered, and sends later requests carrying it to that backend while it is up; otherwise the policy picks, and the cookie is set anew', flag: { name: '--sticky-cookie', arg: 'NAME', group: 'Balancing and health', defaultText: 'off' } })

export const Sticky = section({
  cookie: StickyCookie,
  maxAge: opt(duration({ description: 'the cookie\'s Max-Age', default: 0, zero: 'a session cookie', min: '1s', max: '8760h' })),
}, 'sticky sessions by a cookie rp4 sets (off by default)', 'must be a mapping { cookie, maxAge }')

export const Discovery = section({
  minTtl: opt(duration({ description: 'an answer is kept at least this long, whatever its TTL', default: '1s', min: '100ms', max: '1h' })),
  maxTtl: opt(duration({ description: 'and at most this long', default: '5m', min: '1s', max: '24h' })),
  keepStale: opt(duration({ description: 'a name that stops resolving keeps its last answer this long (and says so)', default: '5m', min: 0, max: '24h' })),
  servers: opt(Type.Array(text('hostPort', { description: 'a DNS server IP:PORT' }), { description: 'DNS servers asked instead of the system\'s', defaultText: 'the system\'s' })),
}, 'service discovery: targets given by DNS name (`HOST:PORT`) are re-resolved in the background and every A/AAAA answer becomes a target; `srv://NAME` targets take hosts, ports and weights from SRV records (on when a group has an `srv://` target)', 'must be a mapping { minTtl, maxTtl, keepStale, servers }')

export const MaxGroupRequests = count({ description: 'circuit breaking: requests in flight to the group; over it 503 at once', default: 0, zero: 'no cap', min: 1, max: 10_000_000 })
export const MaxGroupPending = count({ description: 'circuit breaking: requests waiting for a connection in the group\'s pools; over it 503 at once', default: 0, zero: 'no cap', min: 1, max: 10_000_000 })

export const RateLimit = section({
  rate: Type.Number({ description: 'requests per second per client IP (IPv6: per /64); over it 429 with Retry-After', unit: 'rate', min: 0.001, max: 1_000_000, flag: { name: '--rate-limit', arg: 'RATE', group: 'Limits', defaultText: 'off' } }),
  burst: opt(count({ description: 'requests a client may send at once before the rate applies', defaultText: 'RATE rounded up', min: 1, max: 1_000_000, flag: { name: '--rate-burst', arg: 'N', group: 'Limits' } })),
}, 'requests per client IP (IPv6 /64) as a token bucket; off by default: one IP may be a whole office behind NAT', 'must be a mapping { rate, burst }')

export const Access = section({
  allow: opt(Type.Array(text('cidr', { description: 'an IP or CIDR range' }), { description: 'only clients in these IPs or CIDR ranges may connect (10.0.0.0/8, 2001:db8::/32)', defaultText: 'everyone', flag: { name: '--allow', arg: 'CIDR', repeat: true, group: 'Access control and connection caps', help: 'only clients in these IPs or ranges may connect; repeat for several (10.0.0.0/8, 2001:db8::/32)' } })),
  deny: opt(Type.Array(text('cidr', { description: 'an IP or CIDR range' }), { description: 'clients in these IPs or ranges may not connect, whatever `allow` says', defaultText: 'nobody', flag: { name: '--deny', arg: 'CIDR', repeat: true, group: 'Access control and connection caps', help: 'clients in these IPs or ranges may not connect, whatever --allow says; repeat for several' } })),
  file: opt(text('file', { description: 'a file of `allow CIDR` / `deny CIDR` lines (# comments), added to the lists; re-read when it changes', flag: { name: '--access-file', arg: 'FILE', group: 'Access control and connection caps' } })),
}, 'which client addresses may connect, checked when a connection is accepted')

export const AcceptProxy = section({
  from: Type.Array(text('cidr', { description: 'an IP or CIDR range' }), { minItems: 1, description: 'the senders trusted to send a PROXY protocol header (v1 or v2): each connection from them must start with one, and the client address it carries is the one access lists, caps, rate limits, X-Forwarded-For and the access log see; a PROXY header from any other address is refused', flag: { name: '--accept-proxy', arg: 'CIDR', repeat: true, group: 'Operations', help: 'connections from CIDR (a load balancer) start with a PROXY protocol header (v1 or v2) naming the real client; repeat for several; a header from anyone else is refused' } }),
  timeout: opt(duration({ description: 'a trusted sender must have sent its whole PROXY header by then', default: '5s', min: '1ms', max: '1m' })),
}, 'the PROXY protocol on this listener: which senders may say who the client is', 'must be a mapping { from, timeout }')

export const SendProxy = choice(['v1', 'v2'], { description: 'send a PROXY protocol header (v1 text, v2 binary with ALPN and authority TLVs) to the targets on each new connection, naming the client; for HTTP, such a connection carries one client\'s requests only', defaultText: 'none', flag: { name: '--send-proxy', arg: 'VERSION', group: 'Operations', help: 'send a PROXY protocol header, v1 or v2 (with ALPN and authority TLVs), to the targets on each new connection; for HTTP, such a connection carries one client\'s requests only' } })

export const Limits = section({
  maxConnections: opt(count({ description: 'open client connections in all; a new one over it is closed at once; never more than the open-file limit allows (two descriptors per connection)', defaultText: 'what the open-file limit allows', min: 1, max: 10_000_000, flag: { name: '--max-connections', arg: 'N', group: 'Access control and connection caps' } })),
  maxConnectionsPerIp: opt(count({ description: 'open connections per client IP (IPv6: per /64); a new one over it is closed at once', default: 0, zero: 'no cap', min: 1, max: 10_000_000, flag: { name: '--max-connections-per-ip', arg: 'N', group: 'Access control and connection caps' } })),
}, 'caps on open client connections, checked when a connection is accepted')

// ── Operations: keys of both forms, about the process rather than the traffic ──

export const AccessLog = section({
  file: opt(text('file', { description: 'where the access log goes: a file (appended to, reopened on SIGUSR1 for logrotate), or `-` for stderr', defaultText: 'no access log', flag: { name: '--access-log', arg: 'FILE', bare: '-', group: 'Operations', help: 'one line per request and per TCP session, to FILE (reopened on SIGUSR1), or stderr without FILE (or with -)' } })),
  format: opt(choice(['combined', 'json'], { description: '`combined` (Apache/nginx combined, then rp4\'s fields as key=value) or `json` (one JSON object per line)', default: 'combined', flag: { name: '--log-format', arg: 'FORMAT', group: 'Operations', help: 'the access log\'s format: combined or json' } })),
  buffer: opt(size({ description: 'bytes of log lines waiting for a slow disk; beyond it lines are dropped and counted (rp4_access_log_dropped_total), never waited for', default: '4m', min: '4k', max: '1g' })),
}, 'the access log: one line per request and per TCP session, written without blocking', 'must be a mapping { file, format, buffer }')

export const Admin = section({
  listen: Type.Union([Type.String(), Type.Integer()], { description: 'where the admin endpoint (/healthz, /readyz, /metrics, /config, /upstreams, /drain, /reload) listens; `:9901` or `9901` is 127.0.0.1 here, not every interface: give an address to open it wider', check: 'listen', expected: 'must be an address [HOST]:PORT', flag: { name: '--admin', arg: 'HOST:PORT', group: 'Operations', help: 'serve /healthz, /readyz, /metrics, /config, /upstreams, /drain and /reload there (9901 alone: 127.0.0.1:9901)' } }),
  token: opt(Type.String({ description: 'a bearer token every admin request but /healthz and /readyz must carry (`Authorization: Bearer TOKEN`); at least 16 characters', minLength: 16, maxLength: 4096, expected: 'must be a string of at least 16 characters', defaultText: 'none: anyone who can connect' })),
  tokenFile: opt(text('file', { description: 'a file holding the token (its first line), instead of writing it in the configuration', flag: { name: '--admin-token-file', arg: 'FILE', group: 'Operations', help: 'the admin endpoint asks for this bearer token (the first line of FILE) on all but /healthz and /readyz' } })),
}, 'the admin endpoint: a listener of its own, served by rp4\'s engine, loopback unless told otherwise', 'must be a mapping with at least listen')

export const DrainDelay = duration({ description: 'on a drain, how long rp4 goes on accepting (every answer saying Connection: close) while /readyz already says 503, so that an outer balancer notices before the port closes: a connection its kernel accepted just as the port closed would be reset; set it to the balancer\'s check interval times its fall count', default: 0, zero: 'stop accepting at once', min: '1ms', max: '10m', flag: { name: '--drain-delay', arg: 'DUR', group: 'Operations' } })

export const DrainTimeout = duration({ description: 'on SIGTERM/SIGINT (or the admin drain): requests in flight may finish this long before the remaining connections are closed', default: '10s', min: '1ms', max: TIMEOUT_MAX, flag: { name: '--drain-timeout', arg: 'DUR', group: 'Operations' } })

export const Workers = Type.Union([
  Type.Literal('auto'),
  count({ description: 'a number of worker processes', min: 1, max: 1024 }),
], {
  description: 'processes serving traffic: `auto` is one per core (`os.availableParallelism()`, or the RP4_WORKERS environment variable when it is set: a container\'s CPU quota is not what the kernel reports), N that many; with more than one, the process `rp4 run`/`rp4 listen` starts is a primary that starts them, restarts one that dies and passes signals on (README: Workers); 1 is a single process. The library\'s `createProxy` is always one process',
  default: 'auto',
  expected: 'must be auto or a whole number of processes from 1 to 1024',
  flag: { name: '--workers', arg: 'N', group: 'Operations', help: 'worker processes: N, or auto for one per core (RP4_WORKERS when set); 1 is a single process (README: Workers)' },
})

export const WorkerScheduling = choice(['round-robin', 'kernel'], { description: 'how new connections reach the workers: `round-robin`, the primary accepts each and hands it to the next worker (an even spread, one more hop per connection); `kernel`, every worker accepts on the shared socket and the kernel chooses (no hop, a spread that can be uneven); perf/README.md: Workers', default: 'kernel', flag: { name: '--worker-scheduling', arg: 'POLICY', group: 'Operations', help: 'round-robin (the primary hands each new connection to the next worker) or kernel (the workers accept on the shared socket)' } })

const CertificatePair = section({
  cert: text('file', { description: 'PEM certificate (chain) file', flag: { name: '--cert', arg: 'FILE', repeat: true, group: 'TLS', help: 'terminate TLS with this PEM certificate (and the --key given in the same position); repeat for several (chosen by SNI, the first is the default); reloaded when the files change' } }),
  key: text('file', { description: 'PEM private key file', flag: { name: '--key', arg: 'FILE', repeat: true, group: 'TLS', help: 'the private key of the --cert in the same position' } }),
}, 'a certificate and its key', 'must be a mapping { cert, key }')
const Certificates = Type.Array(CertificatePair, { description: 'certificate and key files; each connection gets the pair whose names match its SNI, the first one otherwise', default: [] })

const TargetAddress = text('target', { description: 'a backend: `HOST:PORT`, `http://HOST[:PORT]`, or `https://HOST[:PORT]` to speak TLS to it; in an upstream group, `srv://NAME` for the targets an SRV record gives', expected: 'must be a backend address HOST:PORT' })
const FlatTarget = text('targetSpec', { description: 'a backend: `HOST:PORT`, `http://HOST[:PORT]`, or `https://HOST[:PORT]` to speak TLS to it; `,weight=N` and `,backup` after it', expected: 'must be a backend address HOST:PORT[,weight=N][,backup]' })
const TcpTarget = text('hostPort', { description: 'a raw TCP backend `HOST:PORT`', expected: 'must be a backend address HOST:PORT' })
const Name = (description: string, a: Partial<Annotations> = {}) => text('name', { description, ...a })

export const DEFAULT_COMPRESS_TYPES = [
  'text/*', 'application/json', 'application/*+json', 'application/x-ndjson', 'application/javascript', 'application/x-javascript',
  'application/ecmascript', 'application/xml', 'application/*+xml', 'image/svg+xml', 'application/wasm', 'font/ttf', 'font/otf',
  'application/x-font-ttf', 'application/vnd.ms-fontobject', 'image/x-icon', 'image/vnd.microsoft.icon', 'image/bmp',
]
export const CompressSettings = section({
  encodings: opt(Type.Array(choice(['br', 'gzip'], { description: 'a content coding' }), { minItems: 1, description: 'the codings offered, in order of preference when the client weighs them equally', default: ['br', 'gzip'] })),
  types: opt(Type.Array(Type.String({ description: 'a media type: `text/*`, `application/json`, `application/*+json`', minLength: 3 }), { description: 'the media types compressed (parameters such as charset ignored)', default: DEFAULT_COMPRESS_TYPES })),
  minSize: opt(size({ description: 'a response whose Content-Length is under this is sent as it is (compressing it would cost more than it saves)', default: '1k', min: 0, max: '1g' })),
  gzipLevel: opt(count({ description: 'gzip level, 1 (fastest) to 9 (smallest); 3 by measurement: perf/README.md gives the CPU per KiB against the ratio of each', default: 3, min: 1, max: 9 })),
  brotliLevel: opt(count({ description: 'brotli quality, 0 (fastest) to 11 (smallest; far too slow for responses made per request); see perf/README.md', default: 4, min: 0, max: 11 })),
}, 'how responses are compressed', 'must be true, false, or a mapping { encodings, types, minSize, gzipLevel, brotliLevel }')
export const Compress = Type.Union([Type.Boolean(), CompressSettings], {
  description: 'compress responses (gzip, brotli) for clients that accept it: true for the defaults below, or the settings; skipped for HEAD, 204/206/304, Range requests, encoded bodies, `Cache-Control: no-transform`, other types and small bodies',
  default: false,
  expected: 'must be true, false, or a mapping { encodings, types, minSize, gzipLevel, brotliLevel }',
  flag: { name: '--compress', set: true, group: 'Web acceleration', help: 'compress responses with brotli or gzip for clients that accept it (text, JSON, JavaScript, XML, SVG, wasm...)', defaultText: 'off' },
})

export const CacheSettings = section({
  size: opt(size({ description: 'the memory store\'s bound: least recently used responses are dropped beyond it', default: '256m', min: '64k', max: Number.MAX_SAFE_INTEGER, flag: { name: '--cache', arg: 'SIZE', group: 'Web acceleration', help: 'cache responses in memory, up to SIZE (RFC 9111 rules, request coalescing, stale-while-revalidate and stale-if-error as responses ask)', defaultText: 'off' } })),
  maxEntrySize: opt(size({ description: 'largest response stored; a larger one passes uncached', default: '16m', min: 1, max: Number.MAX_SAFE_INTEGER })),
  staleWhileRevalidate: opt(duration({ description: 'how long past its freshness a response is served while it is revalidated in the background, when it has no stale-while-revalidate of its own (never for must-revalidate, proxy-revalidate, s-maxage, no-cache)', default: 0, zero: 'only as responses ask', min: '1s', max: '720h' })),
  dir: opt(text('file', { description: 'a directory the cached responses are also written to (asynchronously), read back at startup: the cache survives a restart; an entry found incomplete or altered is deleted, never served; bounded by size like the memory store', flag: { name: '--cache-dir', arg: 'DIR', group: 'Web acceleration', help: 'keep the cache in DIR too, so that it survives a restart (with --cache SIZE as its bound; 256m without)', defaultText: 'memory only' } })),
  staleIfError: opt(duration({ description: 'how long past its freshness a response is served when the backend fails (an error, a timeout, a 5xx), when it has no stale-if-error of its own', default: 0, zero: 'only as responses ask', min: '1s', max: '720h' })),
}, 'the response cache', 'must be true, false, or a mapping { size, maxEntrySize, staleWhileRevalidate, staleIfError }')
export const Cache = Type.Union([Type.Boolean(), CacheSettings], {
  description: 'an RFC 9111 shared cache of responses (GET and HEAD), in memory: true for the defaults below, or the settings; requests for one URI that miss together make one backend request',
  default: false,
  expected: 'must be true, false, or a mapping { size, maxEntrySize, staleWhileRevalidate, staleIfError }',
})

export const StaticSettings = section({
  root: text('file', { description: 'the directory served; nothing outside it is ever read' }),
  index: opt(Type.Array(Type.String({ description: 'a file name', minLength: 1 }), { description: 'files tried, in order, for a request naming a directory', default: ['index.html'] })),
  listing: opt(bool({ description: 'a directory without an index file is answered with a listing of its files (hidden ones left out); off: 404', default: false })),
  hidden: opt(bool({ description: 'serve files and directories whose name starts with a dot (`.env`, `.git/`): refused with 404 by default', default: false })),
  followSymlinks: opt(bool({ description: 'follow symbolic links that lead outside the root (links inside it are always followed)', default: false })),
  precompressed: opt(bool({ description: 'serve `FILE.br` or `FILE.gz` beside FILE, when present and the client accepts that coding', default: true })),
  cacheControl: opt(text('headerValue', { description: 'the Cache-Control sent with files', default: 'public, max-age=0, must-revalidate' })),
  maxOpenFiles: opt(count({ description: 'open file descriptors kept for hot files and in use at once; more requests wait for one', default: 256, min: 1, max: 100_000 })),
  revalidate: opt(duration({ description: 'what rp4 learned of a path (the file it names, its size, date and type) is used this long before the file system is asked again, like nginx\'s open_file_cache_valid: a file changed or removed is seen at most this late (and one check: requests for the path while it is checked are answered from what was known)', default: '1s', zero: 'ask on every request', min: '1ms', max: '1h' })),
  memoryCache: opt(size({ description: 'bound of the memory kept for this route\'s paths (what was learned of each, and the bytes of the files kept); least recently used paths are forgotten beyond it', default: '32m', min: '64k', max: '16g' })),
  memoryFileSize: opt(size({ description: 'files up to this size are kept in memory (within memoryCache) and written from there, a small one with its head in one write; larger ones are read from the file for every request', default: '1m', zero: 'always read from the file', min: 1, max: '1g' })),
  fallback: opt(Name('an upstream group that gets the requests for which no file exists', { defaultText: 'none: 404' })),
}, 'files served from a directory', 'must be a mapping { root, index, listing, ... }')

// ── The flat shorthand: ProxyOptions ──

const FlatTimeouts = section({
  connect: opt(ConnectTimeout),
  response: opt(ResponseTimeout),
  responseTotal: opt(ResponseTotalTimeout),
  clientIdle: opt(ClientIdleTimeout),
  clientPark: opt(ClientParkTimeout),
  requestHead: opt(RequestHeadTimeout),
  requestBody: opt(RequestBodyTimeout),
  upstreamIdle: opt(UpstreamIdleTimeout),
  failedTarget: opt(FailedTargetTimeout),
  tcpIdle: opt(TcpIdleTimeout),
  detect: opt(DetectTimeout),
  tlsHandshake: opt(TlsHandshakeTimeout),
}, 'timeouts (a number is milliseconds)')

/** How rp4 terminates TLS, the same in the flat form's `tls` and a listener's. */
const TlsTermination = {
  reloadInterval: opt(ReloadInterval),
  profile: opt(TlsProfile),
  ciphers: opt(TlsCiphers),
  hsts: opt(Hsts),
  clientCertificates: opt(ClientCertificates),
  ticketKeyRotation: opt(TicketKeyRotation),
  sessionCache: opt(SessionCache),
  sessionTimeout: opt(SessionTimeout),
  ocspStapling: opt(OcspStapling),
  acme: opt(Acme),
}

export const FLAT = {
  listen: opt(Type.Union([Type.String(), Type.Integer()], { description: 'where to accept connections: `[HOST]:PORT`; `:8080` (or `8080`) is every interface, IPv4 and IPv6; port 0 picks a free one', check: 'listen', expected: 'must be an address [HOST]:PORT' })),
  targets: opt(Type.Array(FlatTarget, { minItems: 1, description: 'the backends; several: balanced by `balance`, failing over to the next when a connect fails', flag: { name: '--to', arg: 'HOST:PORT', repeat: true, group: 'Backends', help: 'a backend; repeat for several (balanced by --balance, failover to another when a connect fails); https://HOST[:PORT] speaks TLS to it; HOST:PORT,weight=N gives it N shares, HOST:PORT,backup uses it only while no other is up', defaultText: '(required)' } })),
  balance: opt(Balance),
  hashLoadFactor: opt(HashLoadFactor),
  slowStart: opt(SlowStart),
  panicThreshold: opt(PanicThreshold),
  healthCheck: opt(HealthCheckPath),
  retries: opt(RetryCount),
  stickyCookie: opt(StickyCookie),
  tcp: opt(bool({ description: 'relay every connection as raw TCP to the targets: no HTTP, no protocol detection', default: false, flag: { name: '--tcp', group: 'Protocols and TCP', set: true, defaultText: 'off' } })),
  tcpFallback: opt(Type.Union([Type.Array(TcpTarget, { minItems: 1 }), Type.Literal(false)], {
    description: 'where connections that are neither HTTP nor TLS are relayed as raw TCP; also a client silent for the detect timeout, and TLS with no certificate or passthrough name for it; false: none (the default: such bytes close the connection)',
    defaultText: 'none',
    expected: 'must be a list of HOST:PORT, or false',
    flag: [
      { name: '--tcp-to', arg: 'HOST:PORT', repeat: true, group: 'Protocols and TCP', help: 'relay connections that are neither HTTP nor TLS there as raw TCP (then also TLS without a certificate, and a client silent for --detect-timeout); repeat for several', defaultText: 'none: such connections get 400 (text) or are closed (binary)' },
      { name: '--no-tcp-fallback', set: false, group: 'Protocols and TCP', help: 'no --tcp-to (the default; accepted for old command lines)', defaultText: '' },
    ],
  })),
  tls: opt(section({
    certificates: opt(Certificates),
    passthrough: opt(Type.Record(Type.String(), TcpTarget, {
      description: 'server names (`name` or `*.domain`) whose TLS is relayed untouched to `HOST:PORT`',
      default: {},
      keyCheck: 'serverName',
      flag: { name: '--sni', arg: 'NAME=HOST:PORT', entry: true, group: 'TLS', help: 'relay TLS for server name NAME (or *.domain) untouched to HOST:PORT; repeat for several' },
    })),
    ...TlsTermination,
  }, 'TLS rp4 terminates, and TLS it relays untouched by server name')),
  upstreamTls: opt(section({
    ca: opt(Type.Array(text('file', { description: 'a PEM file' }), { description: 'CA certificates (PEM files) trusted for `https://` backends instead of Node\'s bundled roots', defaultText: "Node's roots", flag: { name: '--ca', arg: 'FILE', repeat: true, group: 'Backends', help: 'trust this CA (PEM) for https:// backends instead of the bundled roots; repeat for several' } })),
    verify: opt(UpstreamVerify),
  }, 'how rp4 checks `https://` backends')),
  timeouts: opt(FlatTimeouts),
  upstream: opt(section({
    maxConnections: opt(MaxConnectionsPerTarget),
    maxQueue: opt(MaxQueue),
    pipelining: opt(Pipelining),
  }, 'the connection pool of each backend')),
  maxPipelinedRequests: opt(MaxPipelinedRequests),
  maxHeaderSize: opt(MaxHeaderSize),
  maxRequestLine: opt(MaxRequestLine),
  maxHeaders: opt(MaxHeaders),
  maxBodySize: opt(MaxBodySize),
  minDataRate: opt(MinDataRate),
  hideHeaders: opt(HideHeaders),
  interceptErrors: opt(InterceptErrors),
  allowUnderscoresInHeaders: opt(UnderscoresInHeaders),
  rateLimit: opt(RateLimit),
  via: opt(Via),
  access: opt(Access),
  acceptProxy: opt(AcceptProxy),
  sendProxy: opt(SendProxy),
  compress: opt(Compress),
  cache: opt(Cache),
  static: opt(Type.Union([text('file', { description: 'a directory' }), StaticSettings], {
    description: 'serve files from a directory (its path, or the settings of routes[].static); a request for a file that does not exist goes to the targets when there are any, else 404',
    expected: 'must be a directory, or a mapping { root, index, listing, ... }',
    flag: { name: '--static', arg: 'DIR', group: 'Web acceleration', help: 'serve files from DIR; a file that does not exist goes to the --to backends when there are any, else 404', defaultText: 'none' },
  })),
}

/** Where each flat key goes in the full form, for the message that refuses mixing them. */
export const FLAT_TO_FULL: Readonly<Record<keyof typeof FLAT, string>> = {
  listen: 'listeners[].listen',
  targets: 'upstreams.NAME.targets',
  balance: 'upstreams.NAME.policy',
  hashLoadFactor: 'upstreams.NAME.hashLoadFactor',
  slowStart: 'upstreams.NAME.slowStart',
  panicThreshold: 'upstreams.NAME.panicThreshold',
  healthCheck: 'upstreams.NAME.healthCheck',
  retries: 'upstreams.NAME.retries.count',
  stickyCookie: 'upstreams.NAME.sticky.cookie',
  tcp: 'listeners[].protocol: tcp',
  tcpFallback: 'listeners[].tcpFallback',
  tls: 'listeners[].tls',
  upstreamTls: 'upstreams.NAME.tls',
  timeouts: 'the timeouts of listeners[], routes[], upstreams.NAME and http',
  upstream: 'upstreams.NAME (maxConnections, maxQueue, pipelining)',
  maxPipelinedRequests: 'http.maxPipelinedRequests',
  maxHeaderSize: 'http.maxHeaderSize',
  maxRequestLine: 'http.maxRequestLine',
  maxHeaders: 'http.maxHeaders',
  maxBodySize: 'routes[].maxBodySize',
  minDataRate: 'http.minDataRate',
  hideHeaders: 'http.hideHeaders',
  interceptErrors: 'routes[].interceptErrors',
  allowUnderscoresInHeaders: 'http.underscoresInHeaders',
  rateLimit: 'routes[].rateLimit',
  via: 'http.via',
  access: 'listeners[].access',
  acceptProxy: 'listeners[].acceptProxy',
  sendProxy: 'upstreams.NAME.sendProxy',
  compress: 'routes[].compress',
  cache: 'routes[].cache',
  static: 'routes[].static',
}

/** Flat keys that were renamed: a file or an options object still using one is told where it went. */
export const RENAMED_KEYS: Readonly<Record<string, string>> = {
  ownErrorPages: "now interceptErrors, off by default (a backend's 502/503/504 passes as it is)",
}

// ── The full form ──

const Listener = section({
  name: opt(Name('a name for logs and messages', { defaultText: 'its listen address' })),
  listen: Type.Union([Type.String(), Type.Integer()], { description: 'where to accept connections: `[HOST]:PORT`; `:443` is every interface, IPv4 and IPv6', check: 'listen', expected: 'must be an address [HOST]:PORT' }),
  protocol: opt(choice(['auto', 'tcp'], { description: '`auto`: the first bytes decide (HTTP, TLS, or the TCP fallback); `tcp`: every connection relayed raw to `upstream`', default: 'auto' })),
  upstream: opt(Name('protocol tcp: the upstream group connections are relayed to')),
  tcpFallback: opt(Name('protocol auto: the upstream group for bytes that are neither HTTP nor TLS (and a silent client)', { defaultText: 'none: closed' })),
  tls: opt(section({
    certificates: opt(Certificates),
    passthrough: opt(Type.Record(Type.String(), Name('an upstream group'), {
      description: 'server names (`name`, `*.domain`, or `*` for every other name and none) whose TLS is relayed untouched to an upstream group',
      default: {},
      keyCheck: 'serverName',
    })),
    cleartext: opt(Cleartext),
    ...TlsTermination,
  }, 'TLS terminated here (certificates) or relayed by server name (passthrough); without it, TLS is handled as bytes of no known protocol')),
  redirectToHttps: opt(bool({ description: 'answer every request with a redirect to the same URL over https (a :80 listener beside :443)', default: false })),
  routes: opt(Type.Array(Name('a route name'), { description: 'the routes served here, by name', defaultText: 'every route' })),
  access: opt(Access),
  acceptProxy: opt(AcceptProxy),
  timeouts: opt(section({
    detect: opt(DetectTimeout),
    tlsHandshake: opt(TlsHandshakeTimeout),
    tcpIdle: opt(TcpIdleTimeout),
  }, 'timeouts of this listener\'s connections')),
}, 'a listening socket', 'must be a mapping with at least listen')

const HeaderValue = text('headerValue', { description: 'a header value' })
function headerEdits (description: string) {
  return section({
    set: opt(Type.Record(Type.String(), HeaderValue, { description: 'headers set (replacing any of the same name)', default: {}, keyCheck: 'headerName' })),
    add: opt(Type.Record(Type.String(), HeaderValue, { description: 'headers added (beside any of the same name)', default: {}, keyCheck: 'headerName' })),
    remove: opt(Type.Array(text('headerName', { description: 'a header name' }), { description: 'headers removed (any case)', default: [] })),
  }, description, 'must be a mapping { set, add, remove }')
}

const Route = section({
  name: opt(Name('how listeners refer to it', { defaultText: 'route-N (its position, from 1)' })),
  match: opt(section({
    host: opt(Type.Union([text('host', { description: 'a host' }), Type.Array(text('host', { description: 'a host' }), { minItems: 1 })], { description: 'host names (`api.example.com`) or `*.example.com` (subdomains at any depth); exact names first, then the longest wildcard', defaultText: 'any host', expected: 'must be a host name or a list of them' })),
    path: opt(text('path', { description: 'a path prefix, matching whole segments (`/api` matches `/api` and `/api/x`, not `/apix`)', defaultText: 'any path' })),
    pathExact: opt(text('path', { description: 'the whole path (never the query)' })),
    methods: opt(Type.Array(text('method', { description: 'a method' }), { minItems: 1, description: 'request methods (GET, POST, ...)', defaultText: 'any method' })),
    headers: opt(Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Null()], { description: 'a header value', check: 'headerValue', expected: 'must be a header value' }), { description: 'request headers that must be present with this value (trimmed, case-sensitive); an empty value: present with any value', keyCheck: 'headerName' })),
  }, 'which requests this route serves; every condition must hold', 'must be a mapping { host, path, pathExact, methods, headers }')),
  proxy: opt(Name('action: forward to this upstream group')),
  respond: opt(section({
    status: opt(RespondStatus),
    body: opt(Type.String({ description: 'the body', default: '', maxLength: 65_536 })),
    headers: opt(Type.Record(Type.String(), HeaderValue, { description: 'response headers (Content-Type: text/plain; charset=utf-8 when the body is not empty and none is given)', keyCheck: 'headerName' })),
  }, 'action: answer from rp4 itself', 'must be a mapping { status, body, headers }')),
  redirect: opt(section({
    to: text('location', { description: 'the Location: a URL or a path; `$scheme`, `$host` (with its port), `$hostname` (without), `$path` and `$query` (with its `?`) are filled per request' }),
    status: opt(RedirectStatus),
  }, 'action: answer with a redirect', 'must be a mapping { to, status }')),
  static: opt(StaticSettings),
  compress: opt(Compress),
  cache: opt(Cache),
  stripPrefix: opt(text('path', { description: 'a path prefix removed before forwarding (`/api/x` → `/x`)' })),
  rewritePath: opt(section({
    pattern: text('regex', { description: 'a regular expression (JavaScript) on the normalized path' }),
    replacement: Type.String({ description: 'what replaces the match: `$1` for a group' }),
  }, 'the path rewritten before forwarding', 'must be a mapping { pattern, replacement }')),
  requestHeaders: opt(headerEdits('request headers edited before forwarding')),
  responseHeaders: opt(headerEdits('response headers edited before answering')),
  filters: opt(Type.Array(Name('a filter name'), { description: 'filters the library user registered (`createProxy({ filters })`), in order, after the edits above', default: [] })),
  timeouts: opt(section({
    response: opt(ResponseTimeout),
    responseTotal: opt(ResponseTotalTimeout),
  }, 'timeouts of this route\'s requests')),
  maxBodySize: opt(MaxBodySize),
  interceptErrors: opt(InterceptErrors),
  rateLimit: opt(RateLimit),
  hsts: opt(Hsts),
  requireClientCertificate: opt(bool({ description: "only clients with a verified certificate (the listener's tls.clientCertificates, mode request or require) are served; others get 403", default: false })),
}, 'a route: which requests, and what to do with them', 'must be a mapping with match and an action')

const GroupTarget = Type.Union([
  TargetAddress,
  section({
    address: TargetAddress,
    weight: opt(count({ description: 'its share of requests', default: 1, min: 1, max: 1000 })),
    backup: opt(bool({ description: 'used only while no other (primary) backend is up', default: false })),
  }, 'a backend with options'),
], { description: 'a backend: `HOST:PORT`, `https://HOST[:PORT]`, or `{ address, weight, backup }`', expected: 'must be a backend address HOST:PORT, or { address, weight, backup }' })

const Group = section({
  targets: Type.Array(GroupTarget, { minItems: 1, description: 'the backends; several: balanced by `policy`, failing over to another when a connect fails' }),
  policy: opt(Balance),
  hashLoadFactor: opt(HashLoadFactor),
  slowStart: opt(SlowStart),
  panicThreshold: opt(PanicThreshold),
  healthCheck: opt(HealthCheck),
  outlierDetection: opt(OutlierDetection),
  retries: opt(Retries),
  sticky: opt(Sticky),
  discovery: opt(Discovery),
  maxRequests: opt(MaxGroupRequests),
  maxPending: opt(MaxGroupPending),
  tls: opt(section({
    servername: opt(text('dnsName', { description: 'the server name sent (SNI) and checked in the certificate', defaultText: 'the target\'s host name (none for an IP)' })),
    ca: opt(Type.Array(text('file', { description: 'a PEM file' }), { description: 'CA certificates (PEM files) trusted instead of Node\'s roots', defaultText: "Node's roots" })),
    cert: opt(text('file', { description: 'client certificate (PEM) for mutual TLS' })),
    key: opt(text('file', { description: 'its private key (PEM)' })),
    verify: opt(UpstreamVerify),
  }, 'TLS to this group\'s `https://` targets')),
  maxConnections: opt(MaxConnectionsPerTarget),
  maxQueue: opt(MaxQueue),
  pipelining: opt(Pipelining),
  sendProxy: opt(SendProxy),
  timeouts: opt(section({
    connect: opt(ConnectTimeout),
    idle: opt(UpstreamIdleTimeout),
    failedTarget: opt(FailedTargetTimeout),
  }, 'timeouts of this group\'s connections')),
}, 'an upstream group', 'must be a mapping with at least targets')

const Http = section({
  maxHeaderSize: opt(MaxHeaderSize),
  maxRequestLine: opt(MaxRequestLine),
  maxHeaders: opt(MaxHeaders),
  maxPipelinedRequests: opt(MaxPipelinedRequests),
  minDataRate: opt(MinDataRate),
  timeouts: opt(section({
    clientIdle: opt(ClientIdleTimeout),
    clientPark: opt(ClientParkTimeout),
    requestHead: opt(RequestHeadTimeout),
    requestBody: opt(RequestBodyTimeout),
  }, 'timeouts of client connections')),
  via: opt(Via),
  hideHeaders: opt(HideHeaders),
  underscoresInHeaders: opt(UnderscoresInHeaders),
}, 'the HTTP engine, for every client connection')

export const FULL = {
  listeners: opt(Type.Array(Listener, { minItems: 1, description: 'where rp4 accepts connections' })),
  routes: opt(Type.Array(Route, { description: 'which requests go where, tried in order within each host class', default: [] })),
  upstreams: opt(Type.Record(Type.String(), Group, { description: 'upstream groups by name', default: {}, keyCheck: 'name' })),
  http: opt(Http),
}

/** Keys of both forms, flat and full. */
export const SHARED = {
  limits: opt(Limits),
  accessLog: opt(AccessLog),
  drainTimeout: opt(DrainTimeout),
  drainDelay: opt(DrainDelay),
  admin: opt(Admin),
  workers: opt(Workers),
  workerScheduling: opt(WorkerScheduling),
}

export const OptionsSchema = Type.Object({ ...FLAT, ...FULL, ...SHARED }, { additionalProperties: false, description: 'rp4 options' })

/** A YAML file's content, or the library's options object: either form. */
export type Options = Static<typeof OptionsSchema>
export type FlatKey = keyof typeof FLAT
export type FullKey = keyof typeof FULL

export const FLAT_KEYS = Object.keys(FLAT) as FlatKey[]
export const FULL_KEYS = Object.keys(FULL) as FullKey[]

/** The schema of the value at `path` (keys, indices), or undefined where the schema has none. */
export function schemaAt (path: ReadonlyArray<string | number>, root: TSchema = OptionsSchema): TSchema | undefined {
  let node: TSchema | undefined = root
  for (const key of path) {
    if (node === undefined) return undefined
    node = childSchema(node, key, undefined)
  }
  return node
}

/**
 * The schema of `node[key]`. For a union, the branch that fits `value` best: the first whose kind
 * matches it (an object for a mapping, an array for a list).
 */
export function childSchema (node: TSchema, key: string | number, value: unknown): TSchema | undefined {
  switch (kindOf(node)) {
    case 'Object': return (node.properties as Record<string, TSchema>)[key]
    case 'Record': return Object.values(node.patternProperties as Record<string, TSchema>)[0]
    case 'Array': return node.items as TSchema
    case 'Union': {
      const branch = branchFor(node, value)
      return branch === undefined ? undefined : childSchema(branch, key, value)
    }
  }
  return undefined
}

export function branchFor (union: TSchema, value: unknown): TSchema | undefined {
  const branches = union.anyOf as TSchema[]
  const want = Array.isArray(value) ? 'Array' : typeof value === 'object' && value !== null ? 'Object' : undefined
  // a number where `auto` or a count is taken: the count, with its range
  const scalar = typeof value === 'number' ? ['Integer', 'Number'] : null
  return (scalar === null ? undefined : branches.find(b => scalar.includes(kindOf(b)))) ?? branches.find(b => want === undefined ? kindOf(b) !== 'Array' && kindOf(b) !== 'Object' && kindOf(b) !== 'Record' : kindOf(b) === want || (want === 'Object' && kindOf(b) === 'Record')) ??
    branches.find(b => kindOf(b) === 'Array' || kindOf(b) === 'Object')
}

/**
 * Every leaf under `root` with its path, depth first: a mapping of named things descends as
 * `NAME`, a list of mappings as `[]`; a list or mapping of plain values is one leaf (and so is a
 * union, whose mapping branch is then described too, as `[]`).
 */
export function leaves (root: TSchema, visit: (path: string[], leaf: TSchema) => void, path: string[] = []): void {
  switch (kindOf(root)) {
    case 'Object':
      for (const [key, child] of Object.entries(root.properties as Record<string, TSchema>)) leaves(child, visit, [...path, key])
      return
    case 'Record': {
      const value = Object.values(root.patternProperties as Record<string, TSchema>)[0]
      if (kindOf(value) === 'Object') leaves(value, visit, [...path, 'NAME'])
      else visit(path, root)
      return
    }
    case 'Array': {
      const items = root.items as TSchema
      if (kindOf(items) === 'Object') {
        leaves(items, visit, [...path, '[]'])
        return
      }
      visit(path, root)
      if (kindOf(items) === 'Union') {
        for (const branch of items.anyOf as TSchema[]) if (kindOf(branch) === 'Object') leaves(branch, visit, [...path, '[]'])
      }
      return
    }
    default:
      visit(path, root)
      // a value or its settings (`compress: true` or `{ types, ... }`): the settings are described too
      if (kindOf(root) === 'Union') {
        for (const branch of root.anyOf as TSchema[]) if (kindOf(branch) === 'Object') leaves(branch, visit, path)
      }
  }
}
