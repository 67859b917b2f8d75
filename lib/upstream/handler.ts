/**
 * What the upstream layer knows of a request: the interface a request (an exchange, later a
 * session) implements so that groups, pools and connections can carry it without knowing what
 * stands above them. Like undici's dispatch handlers: the connection writes through `attach`,
 * hands the response over piece by piece, and reports trouble to the group, which decides between
 * another target, a retry and a failure.
 */
import type { Socket } from 'node:net'
import type { ConnectionOptions } from 'node:tls'
import type { MessageHead } from '../http1/head.js'
import type { ProxyError } from '../core/errors.js'
import type { DiscoveryEvent, TargetHealthEvent } from '../core/events.js'
import type { BalanceModel, DiscoveryModel, HashBy, HealthCheckModel, OutlierModel, RetryModel } from '../model/model.js'

/** Why reading from the backend is paused: bits, so that each cause lifts only its own. */
export const enum ReadHold {
  /** The request being answered cannot pass more on: its client is full, or its turn has not come. */
  DOWNSTREAM = 1,
  /** A body transform of the request being answered (a compressor) cannot take more. */
  TRANSFORM = 2,
  /** The connection became a tunnel: its new owner reads it. */
  TUNNEL = 4,
}

/** A group's settings, as its targets, pools and connections read them. */
export interface GroupSettings {
  name: string
  targets: ReadonlyArray<Readonly<{ host: string, port: number, authority: string, weight: number, backup: boolean, srv: boolean, tls: Readonly<ConnectionOptions> | null }>>
  balance: BalanceModel
  /** A target that comes back ramps up over this long, ms; 0: at once. */
  slowStart: number
  /** Percent of primaries up below which every primary is chosen from; 0: never. */
  panicThreshold: number
  pool: Readonly<{ maxConnections: number, maxQueue: number, pipelining: number, idleTimeout: number }>
  timeouts: Readonly<{ connect: number, failedTarget: number }>
  healthCheck: HealthCheckModel | null
  outlier: OutlierModel | null
  retries: RetryModel
  limits: Readonly<{ maxRequests: number, maxPending: number }>
  sticky: Readonly<{ cookie: string, maxAge: number }> | null
  discovery: DiscoveryModel | null
  /** A PROXY protocol header opens each connection (one client's requests only: never pooled); null: none. */
  sendProxy: 'v1' | 'v2' | null
  /** Limits of the response parser. */
  maxHeaderSize: number
  maxHeaders: number
}

/** What pools and connections know of the target they serve (a Target, which asks its group). */
export interface UpstreamTarget {
  /** `HOST:PORT`. */
  readonly authority: string
  readonly config: Readonly<{ host: string, port: number, tls: Readonly<ConnectionOptions> | null }>
  readonly settings: GroupSettings
  readonly events: UpstreamEvents
  /** The proxy is closing: connections that become idle close instead of waiting in the pool. */
  readonly closing: boolean
  /** A connection was made: the target is up. */
  markUp (): void
  /** A connection opened for `request` could not be made. */
  connectFailed (request: UpstreamRequest, error: ProxyError): void
  /** The connection carrying `request` closed before its response completed. */
  connectionLost (request: UpstreamRequest, error: ProxyError, mayRetry: boolean): void
}

/** The connection a request is attached to, as the request uses it. */
export interface RequestChannel {
  readonly target: UpstreamTarget
  writeHead (head: string): void
  /** False: the socket is full (the request's sender should wait for drain). */
  writeBody (body: Buffer, chunked: boolean): boolean
  endBody (chunked: boolean): void
  armResponseTimeoutIfSent (): void
  /** `request` is the one whose response is being read now. */
  isReading (request: UpstreamRequest): boolean
  hold (reason: ReadHold): void
  release (reason: number): void
  destroy (error?: ProxyError): void
  /** Give the socket up for good (a tunnel takes it). */
  detach (): Socket
}

/** What a request's dispatch state reports to the group that placed it. */
export interface DispatchOwner {
  /** The request left target `index` (done, failed, or moved to another). */
  release (index: number): void
  /** Target `index` answered with `status` after `ms`. */
  observe (index: number, status: number, ms: number): void
  /** The response head with `status` is worth another try elsewhere, and one is allowed: the request gives this one up. */
  retryOnStatus (request: UpstreamRequest, status: number): boolean
  /** The request is over: `retried` if it was sent more than once (the retry budget's count). */
  finished (retried: boolean): void
}

/** The upstream layer's own bookkeeping for one request, kept on the request. */
export class DispatchState {
  /** The target being tried or that answers. */
  target: UpstreamTarget | null = null
  /** Indices of the targets tried before the current one (failover, retries); null: none. */
  tried: number[] | null = null
  /** The target this request counts against (its load), -1: none. */
  counted = -1
  owner: DispatchOwner | null = null
  /** When the request was given to its target (clock ms). */
  sentAt = 0
  /** Tries after the first (retries, not failovers after a failed connect). */
  retries = 0
  /** The response head of the current try was given up for a retry: the connection's loss is expected. */
  retryPending = false
  /** This try's wait for a response head, ms; 0: the route's. */
  perTryTimeout = 0
  /** Sticky sessions: the Set-Cookie value naming the target chosen, when the request did not already carry it. */
  setCookie: string | null = null
  /** Sent again after a reused connection closed under it: once only. */
  retried = false
  /** The pool whose queue the request waits in. */
  waitingIn: { cancel (request: UpstreamRequest): void } | null = null

  /** The request is over: it no longer loads its target. */
  done (): void {
    if (this.counted === -1) return
    this.owner!.release(this.counted)
    this.owner!.finished(this.retries > 0)
    this.counted = -1
  }

  /** The final response head came with `status`. */
  responded (status: number, now: number): void {
    if (this.counted !== -1) this.owner!.observe(this.counted, status, now - this.sentAt)
  }
}

export interface UpstreamRequest {
  readonly dispatchState: DispatchState
  /** May be written on a connection behind other requests (and replayed with them). */
  readonly pipelinable: boolean
  /** Safe to send again on another connection when nothing of the response came (idempotent, no body or all of it at hand). */
  readonly replayable: boolean
  /** Could be sent again whatever its method: no body (a retry of a non-idempotent request needs the user's consent). */
  readonly resendable: boolean
  /** The whole request has been written upstream. */
  readonly requestSent: boolean
  readonly responseStarted: boolean
  /** Nothing more is wanted from upstream: answered, failed or abandoned. */
  readonly settled: boolean
  /** From the request written until the response head, ms. */
  readonly responseTimeout: number
  /** From the request written until the whole response, ms; 0: no limit. */
  readonly responseTotalTimeout: number

  /** The request's hash key for the hash policy (client IP, URI, a header or cookie); null: it has none. */
  hashKey (by: HashBy, name: string): string | null
  /** The PROXY protocol header naming this request's client, for a group that sends one. */
  proxyHeader (version: 'v1' | 'v2'): Buffer
  /** A connection is ready: write the request (head and whatever of the body is at hand). */
  attach (conn: RequestChannel): void
  /** A response head (an interim 1xx too). Returns a HeadersResult, or CB_ERROR. */
  onResponseHead (head: MessageHead, untilClose: boolean): number
  /** A piece of the response body. Returns CB_OK, or CB_ERROR to stop. */
  onResponseBody (body: Buffer): number
  onResponseComplete (): void
  /** The backend switched protocols (101); `rest` is what it sent after the head. */
  onUpgraded (rest: Buffer): void
  /** The connection's write buffer went over its mark while this request's body was written. */
  onUpstreamWriteBlocked (): void
  /** ... and drained again. */
  onUpstreamDrain (): void
  /** The connection under it is gone: leave it. Returns false when the request was already finished. */
  detachUpstream (): boolean
  /** The upstream layer gives up: answer with `error.status` if nothing went out yet, else cut the response. */
  fail (error: ProxyError): void
}

/** Where the upstream layer reports backend failures and health transitions. */
export type { TargetHealthEvent }

export interface UpstreamEvents {
  upstreamError (error: ProxyError, target: string): void
  targetHealth? (event: TargetHealthEvent): void
  discovery? (event: DiscoveryEvent): void
}
