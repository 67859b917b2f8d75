/**
 * The one options object that `createProxy` takes and that the CLI (and later a config file)
 * maps onto. Everything is optional except `listen` and `targets`; `resolveConfig` fills the
 * defaults, validates and freezes it.
 */
export interface ProxyOptions {
  /** `[HOST]:PORT`; `:8080` (or `8080`) means every interface, IPv4 and IPv6. Port 0 picks a free port. */
  listen: string
  /** Backends as `HOST:PORT` (`[::1]:8080` for IPv6). Several: round robin with failover. */
  targets: string[]
  timeouts?: Partial<TimeoutOptions>
  upstream?: Partial<UpstreamOptions>
  /** Requests a client may have in flight at once on one connection (pipelining). */
  maxPipelinedRequests?: number
  /** Largest request or response head (request line or status line plus headers), bytes. */
  maxHeaderSize?: number
  /** Value of the `Via` header rp4 adds (`1.1 <via>`). */
  via?: string
}

export interface TimeoutOptions {
  /** Opening a connection to a backend, ms. */
  connect: number
  /** From the request being sent upstream until the response head arrives, ms (then 504). */
  response: number
  /** A client connection with no request in flight is closed after this long, ms. */
  clientIdle: number
  /** A client has this long to send a complete request head, ms. */
  requestHead: number
  /** Idle pooled upstream connections are closed after this long, ms. */
  upstreamIdle: number
  /** How long a target that failed to connect is skipped by the balancer, ms. */
  failedTarget: number
}

export interface UpstreamOptions {
  /** Cap on open connections per backend; requests beyond it wait in a queue. */
  maxConnections: number
  /** Requests that may wait for a connection per backend; beyond it the request gets a 503. */
  maxQueue: number
  /** Requests in flight on one upstream connection; 1 disables pipelining. */
  pipelining: number
}
