/**
 * What the upstream layer knows of a request: the interface a request (an exchange, later a
 * session) implements so that groups, pools and connections can carry it without knowing what
 * stands above them. Like undici's dispatch handlers: the connection writes through `attach`,
 * hands the response over piece by piece, and reports trouble to the group, which decides between
 * another target, a retry and a failure.
 */
import type { MessageHead } from '../http1/head.js'
import type { ProxyError } from '../core/errors.js'
import type { UpstreamConnection } from './connection.js'
import type { Pool } from './pool.js'
import type { Target } from './target.js'

/** The upstream layer's own bookkeeping for one request, kept on the request. */
export class DispatchState {
  /** The target being tried or that answers. */
  target: Target | null = null
  /** Index of the first target tried: failover goes on from it. */
  first = 0
  /** Targets tried so far after the first (failover). */
  attempt = 0
  /** Sent again after a reused connection closed under it: once only. */
  retried = false
  /** The connection being opened for this request. */
  connecting: UpstreamConnection | null = null
  /** The pool whose queue the request waits in. */
  waitingIn: Pool | null = null
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
  attach (conn: UpstreamConnection): void
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
