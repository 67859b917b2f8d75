/**
 * One request and its response, from the parsed request head to the last byte of the response:
 * the request goes out on an upstream connection (its body streamed as it arrives), the response
 * comes back and is written to the client when this exchange is first in the client's queue
 * (pipelined responses leave in request order), and every failure ends in exactly one place.
 */
import type { Socket } from 'node:net'
import { clock } from '../core/clock.js'
import { send } from '../core/batch.js'
import { ProxyError } from '../core/errors.js'
import { CB_ERROR, CB_OK, HeadersResult } from '../http1/llhttp.js'
import type { MessageHead } from '../http1/head.js'
import { BodyKind, CRLF, LAST_CHUNK, chunkHeader, errorResponse, planResponse, type RequestPlan } from '../http1/serialize.js'
import { ReadHold, type UpstreamConnection } from '../upstream/connection.js'
import { DispatchState, type UpstreamRequest } from '../upstream/handler.js'
import type { Target } from '../upstream/target.js'
import type { ClientConnection } from './client.js'

const enum Response { NONE, STREAMING, DONE }

/** Request bytes held while no upstream connection is attached; beyond it the client is paused. */
const PENDING_LIMIT = 64 * 1024

export class Exchange implements UpstreamRequest {
  readonly client: ClientConnection
  readonly id: number
  readonly head: MessageHead
  readonly plan: RequestPlan
  readonly started: number

  /** The connection carrying this exchange, once attached. */
  upstream: UpstreamConnection | null = null
  /**
   * Read holds this exchange put on `upstream` while reading its response there (its turn has not
   * come, or the client is full): lifted whenever it leaves the connection, so that a connection
   * never outlives, paused, the exchange that paused it.
   */
  #upstreamHolds = 0
  /** The upstream layer's bookkeeping: target tried, failover position, connection being opened, queue. */
  readonly dispatchState = new DispatchState()

  /** The client has sent the whole request. */
  requestComplete = false
  /** The whole request has been written upstream. */
  requestSent = false
  /** Body pieces received before a connection was attached. */
  #pending: Buffer[] | null = null
  #pendingBytes = 0
  /** Request body bytes received, against the body size limit. */
  #bodyBytes = 0

  #response = Response.NONE
  #body = BodyKind.NONE
  /** The backend's body is dropped (rp4 answered with its own page). */
  #discard = false
  status = 0
  /** The client connection closes after this response. */
  closeAfter = false
  /** Seconds for Retry-After on a 429. */
  retryAfter = 0
  /** Output produced while an earlier exchange still has the client connection. */
  #held: Array<string | Buffer> | null = null
  #finished = false
  /** Bytes the client sent after an upgrade request, to forward once the backend accepted. */
  upgradeData: Buffer | null = null
  #upgradeReady: Buffer | null = null

  /** @param started when the request began, when that was before now (a refused head) */
  constructor (client: ClientConnection, id: number, head: MessageHead, plan: RequestPlan, started = clock.refresh()) {
    this.client = client
    this.id = id
    this.head = head
    this.plan = plan
    this.started = started
    if (plan.body === BodyKind.NONE) this.requestComplete = true
  }

  /** Safe to write on a connection behind other requests, and to replay on another connection. */
  get pipelinable (): boolean {
    const method = this.head.method
    return this.plan.body === BodyKind.NONE && !this.plan.upgrade && (method === 'GET' || method === 'HEAD')
  }

  get first (): boolean { return this.client.first === this }
  get finished (): boolean { return this.#finished }
  /** Nothing more will be done for this exchange upstream: aborted, failed or answered. */
  get settled (): boolean { return this.#finished || this.#response === Response.DONE }
  get responseStarted (): boolean { return this.#response !== Response.NONE }
  /** The target that answers, or was last tried. */
  get target (): Target | null { return this.dispatchState.target }
  get responseTimeout (): number { return this.client.core.config.timeouts.response }
  get responseTotalTimeout (): number { return this.client.core.config.timeouts.responseTotal }

  // ---- request side ----

  /** Hand the request to the upstream group: a target, then a connection. */
  dispatch (): void {
    this.client.core.group.dispatch(this)
  }

  /** Given a connection: write the request head and whatever of the body already arrived. */
  attach (conn: UpstreamConnection): void {
    this.upstream = conn
    const socket = conn.socket
    const plan = this.plan
    send(socket, plan.needsHost
      ? plan.prefix + 'Host: ' + conn.target.authority + '\r\n' + plan.suffix
      : plan.prefix + plan.suffix)
    const pending = this.#pending
    if (pending !== null) {
      this.#pending = null
      this.#pendingBytes = 0
      for (let i = 0; i < pending.length; i++) this.#writeRequestBody(socket, pending[i])
      this.client.release(ClientHold.PENDING)
    }
    if (this.requestComplete) this.#endRequest(socket)
  }

  onRequestBody (body: Buffer): void {
    const limit = this.client.core.config.maxBodySize
    if (limit > 0 && (this.#bodyBytes += body.length) > limit) {
      // a chunked body can only be measured as it comes: the request is cut off here
      if (this.#response === Response.NONE) {
        const error = new ProxyError('body_too_large', `request body over the limit of ${limit} bytes`, 'downstream', 413)
        this.client.core.clientError(error, this.client.label)
        this.fail(error)
      }
      return
    }
    if (this.#response === Response.DONE) return // answered early: the rest of the body is dropped
    const conn = this.upstream
    if (conn === null) {
      // kept as views of the client's chunks until a connection is attached
      (this.#pending ??= []).push(body)
      this.#pendingBytes += body.length
      if (this.#pendingBytes >= PENDING_LIMIT) this.client.hold(ClientHold.PENDING)
      return
    }
    if (!this.#writeRequestBody(conn.socket, body)) this.client.hold(ClientHold.UPSTREAM_FULL)
  }

  onRequestComplete (): void {
    this.requestComplete = true
    const conn = this.upstream
    if (conn !== null && !this.requestSent) this.#endRequest(conn.socket)
  }

  onUpstreamDrain (): void {
    this.client.release(ClientHold.UPSTREAM_FULL)
  }

  onUpstreamWriteBlocked (): void {
    this.client.hold(ClientHold.UPSTREAM_FULL)
  }

  #writeRequestBody (socket: Socket, body: Buffer): boolean {
    if (this.plan.body === BodyKind.CHUNKED) {
      if (body.length === 0) return true
      send(socket, chunkHeader(body.length))
      send(socket, body)
      return send(socket, CRLF)
    }
    return send(socket, body)
  }

  #endRequest (socket: Socket): void {
    if (this.plan.body === BodyKind.CHUNKED) send(socket, LAST_CHUNK)
    this.requestSent = true
    this.client.release(ClientHold.UPSTREAM_FULL)
    if (this.upstream !== null && this.#response === Response.NONE) this.upstream.armResponseTimeoutIfSent()
  }

  // ---- response side ----

  onResponseHead (head: MessageHead, untilClose: boolean): number {
    if (this.#finished) return CB_ERROR
    const client = this.client
    const status = head.status
    const http11 = this.head.versionMinor >= 1
    if (status < 200 && status !== 101) {
      // interim responses mean something only to an HTTP/1.1 client
      if (http11) {
        const plan = planResponse(head, this.head.method, true, true, false, client.core.config.via)
        this.#emit(plan.head)
      }
      return HeadersResult.CONTINUE
    }
    if (status === 101 && !this.plan.upgrade) {
      this.upstream?.destroy(new ProxyError('bad_response', 'backend switched protocols without an upgrade request', 'upstream', 502))
      return CB_ERROR
    }
    this.status = status
    const keepClient = client.keepAliveAfter(this) && !this.plan.upgrade
    const config = client.core.config
    const plan = planResponse(head, this.head.method, http11, keepClient, untilClose, config.via, config.hideHeaders)
    this.#body = plan.body
    this.closeAfter = plan.close || status === 101
    this.#response = Response.STREAMING
    if (config.interceptErrors && (status === 502 || status === 503 || status === 504) && this.head.method !== 'HEAD') {
      // asked for: a backend's error page may name the backend, its software or a stack trace;
      // the client gets rp4's page with the same status, the backend's body is read and dropped
      this.#discard = true
      this.#body = BodyKind.NONE
      this.#emit(errorResponse(status, plan.close))
      return HeadersResult.CONTINUE
    }
    this.#emit(plan.head)
    if (status === 101) return HeadersResult.UPGRADE
    return this.head.method === 'HEAD' ? HeadersResult.SKIP_BODY : HeadersResult.CONTINUE
  }

  onResponseBody (body: Buffer): number {
    if (this.#finished) return CB_ERROR
    if (this.#discard) return CB_OK
    let ok: boolean
    if (this.#body === BodyKind.CHUNKED) {
      if (body.length === 0) return CB_OK
      this.#emit(chunkHeader(body.length))
      this.#emit(body)
      ok = this.#emit(CRLF)
    } else {
      ok = this.#emit(body)
    }
    if (!ok && this.first) this.#holdUpstream(ReadHold.CLIENT_FULL)
    return CB_OK
  }

  onResponseComplete (): void {
    if (this.#finished) return
    if (this.#body === BodyKind.CHUNKED) this.#emit(LAST_CHUNK)
    if (!this.requestComplete) this.closeAfter = true // the rest of the request cannot be skipped safely
    this.#response = Response.DONE
    this.#leaveUpstream()
    if (this.first) this.client.advance()
  }

  /** The backend accepted the upgrade; `rest` is what it sent after the 101 head. */
  onUpgraded (rest: Buffer): void {
    // nothing more is parsed on that connection: the tunnel reads it once the 101 is out
    this.upstream!.hold(ReadHold.TUNNEL)
    this.connectionForUpgrade = this.#leaveUpstream()
    this.#upgradeReady = rest
    this.#response = Response.DONE
    if (this.first) this.client.advance()
  }

  // ---- failures ----

  /** The connection carrying this exchange closed before the response completed: the group decides what follows. */
  detachUpstream (): boolean {
    this.#leaveUpstream()
    return !this.#finished
  }

  get replayable (): boolean {
    const method = this.head.method
    return this.requestComplete && this.plan.body === BodyKind.NONE &&
      (method === 'GET' || method === 'HEAD' || method === 'OPTIONS' || method === 'PUT' || method === 'DELETE' || method === 'TRACE')
  }

  /**
   * The one place an exchange fails: answer with the error's status when nothing of the response
   * went out yet, otherwise close the client connection so that the truncation shows.
   */
  fail (error: ProxyError): void {
    if (this.#finished || this.#response === Response.DONE) return
    this.#release()
    if (this.#response === Response.NONE && error.status !== 0) {
      this.status = error.status
      this.closeAfter = this.closeAfter || !this.requestComplete || error.status === 400 || this.plan.upgrade || !this.client.keepAliveAfter(this)
      this.#held = null
      this.#emit(errorResponse(error.status, this.closeAfter, this.retryAfter))
      this.#response = Response.DONE
      if (!this.requestComplete) this.client.stopReading()
      if (this.first) this.client.advance()
      return
    }
    this.#response = Response.DONE
    this.client.destroy(error)
  }

  /** The client went away: stop whatever is under way upstream, and make sure its socket is not reused. */
  abort (): void {
    if (this.#finished) return
    this.#finished = true
    this.#release()
  }

  #release (): void {
    const state = this.dispatchState
    if (state.waitingIn !== null) state.waitingIn.cancel(this)
    // a connection being opened for this exchange may still serve others: it joins the pool once open
    state.connecting = null
    const conn = this.#leaveUpstream()
    if (conn !== null) conn.destroy()
  }

  /** Pause reading the backend for this exchange's sake; only the exchange reading its response there may. */
  #holdUpstream (reason: ReadHold): void {
    const conn = this.upstream
    if (conn === null || !conn.isReading(this)) return
    this.#upstreamHolds |= reason
    conn.hold(reason)
  }

  #releaseUpstream (reason: ReadHold): void {
    if ((this.#upstreamHolds & reason) === 0) return
    this.#upstreamHolds &= ~reason
    this.upstream!.release(reason)
  }

  /** Off the connection for good (response complete, upgraded, failed, or the connection closed): its holds go with it. */
  #leaveUpstream (): UpstreamConnection | null {
    const conn = this.upstream
    this.upstream = null
    if (conn !== null && this.#upstreamHolds !== 0) conn.release(this.#upstreamHolds)
    this.#upstreamHolds = 0
    return conn
  }

  // ---- output to the client, in request order ----

  #emit (data: string | Buffer): boolean {
    if (!this.first) {
      (this.#held ??= []).push(data)
      this.#holdUpstream(ReadHold.NOT_FIRST)
      return false
    }
    return this.client.write(data)
  }

  /**
   * Called by the client when this exchange becomes first: flush what was held, and tell whether
   * the response is complete (the client moves on to the next exchange).
   */
  takeTurn (): boolean {
    const held = this.#held
    if (held !== null) {
      this.#held = null
      let ok = true
      for (let i = 0; i < held.length; i++) ok = this.client.write(held[i])
      if (!ok) this.#holdUpstream(ReadHold.CLIENT_FULL)
    }
    this.#releaseUpstream(ReadHold.NOT_FIRST)
    return this.#response === Response.DONE
  }

  /** The client's socket is full: stop reading the backend until it drains. */
  onClientBlocked (): void {
    this.#holdUpstream(ReadHold.CLIENT_FULL)
  }

  /** The client's socket drained: read the backend again. */
  onClientDrain (): void {
    this.#releaseUpstream(ReadHold.CLIENT_FULL)
  }

  /** The response is complete and written: the exchange is over. */
  finish (): void {
    this.#finished = true
  }

  /** The 101 went out: the socket pair becomes a tunnel. Returns the backend socket and its early bytes. */
  takeUpgrade (): { socket: Socket, rest: Buffer } | null {
    const rest = this.#upgradeReady
    const conn = this.connectionForUpgrade
    if (rest === null || conn === null) return null
    return { socket: conn.detach(), rest }
  }

  /** Kept apart from `upstream`, which is cleared when the response is done. */
  connectionForUpgrade: UpstreamConnection | null = null
}

/** Why reading from the client is paused: bits, so that each cause lifts only its own. */
export const enum ClientHold {
  /** Body bytes wait for an upstream connection. */
  PENDING = 1,
  /** The upstream socket's write buffer is full. */
  UPSTREAM_FULL = 2,
  /** Enough requests are in flight (pipelining limit), or no more will be read. */
  PIPELINE = 4,
  /** Bytes after an upgrade request wait for the backend's answer. */
  UPGRADE = 8,
}
