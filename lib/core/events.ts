import type { AddressInfo } from 'node:net'
import type { ProxyError } from './errors.js'

/** What a `request` listener sees: emitted once the request head is parsed. */
export interface RequestInfo {
  /** Sequence number of the request within this proxy. */
  id: number
  method: string
  url: string
  /** Client address, `IP:PORT` (`[IPv6]:PORT`). */
  client: string
}

/**
 * What a `response` listener sees: emitted when the response is complete or the exchange ends. A
 * request refused before its head was complete shows what arrived of it: `method` and `url` as far
 * as they were parsed, `-` for what was not, a long `url` cut at 256 characters and marked `...`.
 */
export interface ResponseInfo extends RequestInfo {
  /** Status sent to the client (0 when the connection was closed before any status). */
  status: number
  /** Backend that answered, `HOST:PORT`, or '' when none did. */
  target: string
  /** Milliseconds from the request head (from the first byte of a head refused before it was complete) to the end of the response. */
  duration: number
  /** When the request began, ms since the epoch. */
  time: number
  /** `HTTP/1.1`, `HTTP/1.0`. */
  protocol: string
  /** The request's Host, Referer and User-Agent headers ('' when absent). */
  host: string
  referer: string
  userAgent: string
  /** The route that served it ('' when none matched). */
  route: string
  /** Request body bytes read from the client. */
  bytesIn: number
  /** Response body bytes sent to the client: after compression and other transforms (nginx's $body_bytes_sent), chunked framing aside. */
  bytesOut: number
  /** ms from the request's dispatch to a backend connection ready for it (pool wait and connect); -1: none was. */
  upstreamConnect: number
  /** ms from the request's dispatch to the backend's response head; -1: none came. */
  upstreamFirstByte: number
  /** Tries beyond the first: failover to another target, or the retry after a reused connection closed. */
  retries: number
  /** What the route's cache did: `hit`, `stale` (served stale), `revalidated`, `miss`; '' when no cache took part. */
  cache: string
  /** The TLS version rp4 terminated (`TLSv1.3`), '' for cleartext. */
  tls: string
  /** The server name the client asked for in its TLS handshake, '' when none. */
  sni: string
}

/**
 * A finished request's figures as the session holds them, read in place by a request meter (the
 * metrics): nothing is built per request for it, unlike the `response` event's record.
 */
export interface RequestFigures {
  readonly route: string
  readonly status: number
  /** The backend that answered, `HOST:PORT`; null when none was chosen. */
  readonly target: string | null
  readonly bytesIn: number
  readonly bytesOut: number
  readonly upstreamConnect: number
  readonly upstreamFirstByte: number
  readonly retries: number
}

/** Told of every finished HTTP request, before the `response` event and whether or not anybody listens to it. */
export interface RequestMeter {
  /**
   * @param method the request's method
   * @param durationMs from the request head to the end of the response
   * @param cache what the route's cache did (`hit`, `stale`, `revalidated`, `miss`), '' when no cache took part
   */
  request (figures: RequestFigures, method: string, durationMs: number, cache: string): void
}

/** What a `tcpSession` listener sees: a connection relayed as raw bytes (TCP, TLS passthrough, fallback), once it closed. */
export interface TcpSessionInfo {
  /** When the connection was accepted, ms since the epoch. */
  time: number
  client: string
  /** The listener's name. */
  listener: string
  /** Backend it was relayed to, `HOST:PORT`, or '' when none could be reached. */
  target: string
  /** Bytes from the client to the backend, and back. */
  bytesIn: number
  bytesOut: number
  /** ms the connection lasted. */
  duration: number
  /** The server name of a TLS ClientHello that was relayed by it, '' otherwise. */
  sni: string
}

/** A target went out of rotation or came back, and why. */
export interface TargetHealthEvent {
  group: string
  target: string
  up: boolean
  reason: 'connect_failed' | 'failed_tries' | 'connected' | 'check_failed' | 'check_passed' | 'ejected' | 'ejection_ended'
  /** What the check or detector saw (a status, an error code), when there is more to say. */
  detail?: string
}

/** What discovery tells about a name (the `discovery` event). */
export interface DiscoveryEvent {
  group: string
  name: string
  /** The targets it stands for now, `HOST:PORT`. */
  targets: string[]
  /** Resolution failed: the last answer is kept (`stale`) or, past keepStale, dropped. */
  error?: string
  stale?: boolean
}

export interface ProxyEvents {
  listening: (address: AddressInfo) => void
  request: (info: RequestInfo) => void
  response: (info: ResponseInfo) => void
  /** A relayed TCP connection closed. */
  tcpSession: (info: TcpSessionInfo) => void
  /** A backend failed: connect refused or timed out, reset, malformed or truncated response, timeout. */
  upstreamError: (error: ProxyError, target: string) => void
  /** A client misbehaved or went away: malformed request, reset, timeout. */
  clientError: (error: ProxyError, client: string) => void
  /**
   * rp4's own trouble, tied to no client or backend (source `internal`): the listening socket
   * failed after listen() resolved (`listen_error`), certificates or the access file could not be
   * reloaded (`certificate_reload_failed`, `access_reload_failed`: the previous ones stay).
   */
  proxyError: (error: ProxyError) => void
  /** A target of an upstream group left the rotation or came back (connect failures, active checks, outlier detection). */
  targetHealth: (event: TargetHealthEvent) => void
  /** A DNS name of an upstream group resolved to a new answer, or failed to resolve (its last answer kept or dropped). */
  discovery: (event: DiscoveryEvent) => void
  close: () => void
}
