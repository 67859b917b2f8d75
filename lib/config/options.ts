/**
 * The one options object that `createProxy` takes and that the CLI (and later a config file)
 * maps onto. Everything is optional except `listen` and `targets`; `resolveConfig` fills the
 * defaults, validates and freezes it.
 */
export interface ProxyOptions {
  /** `[HOST]:PORT`; `:8080` (or `8080`) means every interface, IPv4 and IPv6. Port 0 picks a free port. */
  listen: string
  /**
   * Backends as `HOST:PORT` (`[::1]:8080` for IPv6). Several: round robin with failover.
   * `https://HOST[:PORT]` speaks TLS to that backend (see `upstreamTls`); `http://` or no scheme, plain.
   */
  targets: string[]
  /** Every connection is relayed as raw TCP to the targets: no HTTP, no protocol detection. */
  tcp?: boolean
  /**
   * Where a connection that is neither HTTP nor TLS goes, relayed raw: `HOST:PORT` backends. Also
   * a client that sends nothing within `timeouts.detect` (server-first protocols), and TLS that
   * rp4 has no certificate or passthrough route for. None by default (`false` says so too): such
   * bytes close the connection, a silent client is served HTTP, TLS without a certificate is
   * refused; no connection can turn into a raw relay past the HTTP engine unless asked for here.
   */
  tcpFallback?: string[] | false
  /** TLS rp4 terminates, and TLS it relays untouched by SNI. */
  tls?: TlsOptions
  /** How rp4 checks `https://` backends. */
  upstreamTls?: UpstreamTlsOptions
  timeouts?: Partial<TimeoutOptions>
  upstream?: Partial<UpstreamOptions>
  /** Requests a client may have in flight at once on one connection (pipelining). */
  maxPipelinedRequests?: number
  /** Largest request or response head (request line or status line plus headers), bytes; over it, 431. */
  maxHeaderSize?: number
  /** Longest request target, bytes; over it, 414. */
  maxRequestLine?: number
  /** Most header fields in a request or response head; over it, 431. */
  maxHeaders?: number
  /** Largest request body, bytes (0: no limit); over it, 413. */
  maxBodySize?: number
  /** A request head or body arriving slower than this, bytes/s, after 2 s, gets 408 (0: no minimum). */
  minDataRate?: number
  /** Response headers that would tell what runs behind rp4, removed (case-insensitive); [] keeps all. */
  hideHeaders?: string[]
  /**
   * A backend's 502, 503 or 504 is answered with rp4's own page (status kept) instead of passing
   * the backend's response. Off by default: an API's JSON error body and its Retry-After pass.
   */
  interceptErrors?: boolean
  /**
   * Pass request headers whose name contains `_`. Off by default: they are dropped, since many
   * backends (CGI, WSGI, frameworks) read `Transfer_Encoding` as `Transfer-Encoding` (nginx's
   * `underscores_in_headers off`).
   */
  allowUnderscoresInHeaders?: boolean
  /** Requests per client IP (IPv6: per /64): `rate` per second after a `burst`; over it, 429. Off by default. */
  rateLimit?: { rate: number, burst?: number }
  /** Value of the `Via` header rp4 adds (`1.1 <via>`). */
  via?: string
  /** Which client addresses may connect: checked when a connection is accepted, before any byte is read. */
  access?: AccessOptions
  /** Caps on open client connections, checked when a connection is accepted. */
  limits?: Partial<LimitOptions>
}

export interface AccessOptions {
  /** IPs or CIDR ranges (`10.0.0.0/8`, `2001:db8::/32`); when given, only these may connect. */
  allow?: string[]
  /** IPs or CIDR ranges that may never connect; wins over `allow`. */
  deny?: string[]
  /**
   * A file of `allow CIDR` / `deny CIDR` lines (`#` comments), added to `allow` and `deny`;
   * re-read when its modification time changes (checked every 2 s).
   */
  file?: string
}

export interface LimitOptions {
  /**
   * Open client connections in all (HTTP, TLS, raw TCP); over it, a new one is closed at once.
   * By default, and at most, what the process's open-file limit allows (two descriptors per
   * connection: its own and a backend's).
   */
  maxConnections: number
  /** Open client connections per client IP (IPv6: per /64); over it, a new one is closed at once. 0: no cap (the default). */
  maxConnectionsPerIp: number
}

export interface TimeoutOptions {
  /** Opening a connection to a backend, ms. */
  connect: number
  /** From the request being sent upstream until the response head arrives, ms (then 504). */
  response: number
  /** From the request being sent upstream until the response is complete, ms; 0: no limit (streams, large downloads). */
  responseTotal: number
  /** A client connection with no request in flight is closed after this long, ms. */
  clientIdle: number
  /** A client has this long to send a complete request head, ms. */
  requestHead: number
  /** A request body may pause this long between two pieces, ms (then 408). */
  requestBody: number
  /** Idle pooled upstream connections are closed after this long, ms. */
  upstreamIdle: number
  /** How long a target that failed to connect is skipped by the balancer, ms. */
  failedTarget: number
  /** A relayed TCP connection (passthrough, relayed TLS) with no byte either way is closed after this long, ms. */
  tcpIdle: number
  /**
   * A client silent this long is relayed to `tcpFallback` as a server-first protocol (without a
   * fallback: handed to the HTTP engine), ms. Only silence: once a byte arrived, the HTTP head
   * timeout (a request line) or the TLS handshake timeout (a TLS record) applies instead.
   */
  detect: number
  /** A client has this long to complete the TLS handshake rp4 terminates, ms. */
  tlsHandshake: number
}

export interface CertificateFiles {
  /** PEM certificate (chain) file. */
  cert: string
  /** PEM private key file. */
  key: string
}

export interface TlsOptions {
  /**
   * Certificate and key files, paired. Each connection gets the one whose names (subjectAltName DNS
   * entries, wildcards included) match the SNI it asked for; the first pair otherwise.
   */
  certificates?: CertificateFiles[]
  /** Server names relayed as raw TLS (not terminated): `name` or `*.domain` → `HOST:PORT`. */
  passthrough?: Record<string, string>
  /** How often the certificate files are checked for changes, ms; 0 never. */
  reloadInterval?: number
}

export interface UpstreamTlsOptions {
  /** CA certificate files (PEM) trusted for `https://` backends, instead of Node's bundled roots. */
  ca?: string[]
  /** `false` accepts any backend certificate (no verification at all). */
  verify?: boolean
}

export interface UpstreamOptions {
  /** Cap on open connections per backend; requests beyond it wait in a queue. */
  maxConnections: number
  /** Requests that may wait for a connection per backend; beyond it the request gets a 503. */
  maxQueue: number
  /** Requests in flight on one upstream connection; 1 disables pipelining. */
  pipelining: number
}
