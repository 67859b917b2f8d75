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
  targets: ReadonlyArray<Readonly<{ host: string, port: number, authority: string, tls: Readonly<ConnectionOptions> | null }>>
  pool: Readonly<{ maxConnections: number, maxQueue: number, pipelining: number, idleTimeout: number }>
  timeouts: Readonly<{ connect: number, failedTarget: number }>
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

/** The upstream layer's own bookkeeping for one request, kept on the request. */
export class DispatchState {
  /** The target being tried or that answers. */
  target: UpstreamTarget | null = null
  /** Index of the first target tried: failover goes on from it. */
  first = 0
  /** Targets tried so far after the first (failover). */
  attempt = 0
  /** Sent again after a reused connection closed under it: once only. */
  retried = false
  /** The pool whose queue the request waits in. */
  waitingIn: { cancel (request: UpstreamRequest): void } | null = null
}

export interface UpstreamRequest {
  readonly dispatchState: DispatchState
  /** May be written on a connection behind other requests (and replayed with them). */
  readonly pipelinable: boolean
  /** Safe to send again on another connection when nothing of the response came (idempotent, no body or all of it at hand). */
  readonly replayable: boolean
  /** The whole request has been written upstream. */
  readonly requestSent: boolean
  readonly responseStarted: boolean
  /** Nothing more is wanted from upstream: answered, failed or abandoned. */
  readonly settled: boolean
  /** From the request written until the response head, ms. */
  readonly responseTimeout: number
  /** From the request written until the whole response, ms; 0: no limit. */
  readonly responseTotalTimeout: number

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

/** Where the upstream layer reports backend failures. */
export interface UpstreamEvents {
  upstreamError (error: ProxyError, target: string): void
}
