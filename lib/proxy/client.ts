/**
 * One client connection speaking HTTP/1.x: parses requests with llhttp, starts an exchange for
 * each, and writes the responses back in request order (pipelining), keep-alive between them.
 */
import type { Socket } from 'node:net'
import { clock, type Timed } from '../core/clock.js'
import { beginBatch, endBatch, flush, send, sendEnd, type WriteOwner } from '../core/batch.js'
import { ProxyError } from '../core/errors.js'
import { kOwner } from '../core/symbols.js'
import { CB_OK, CB_PAUSE, Errno, ParserType } from '../http1/llhttp.js'
import { HttpParser, LimitError, type MessageSink } from '../http1/parser.js'
import type { MessageHead } from '../http1/head.js'
import { BodyKind, planRequest } from '../http1/serialize.js'
import { relay } from '../tcp/relay.js'
import { ClientHold, Exchange } from './exchange.js'
import type { ProxyCore } from './core.js'
import type { TimeoutOptions } from '../config/options.js'

const enum Wait { NONE, IDLE, HEAD, BODY, LINGER }

/** After rp4 ends a connection, what the client still sends is read and dropped this long, then it is closed. */
const LINGER_MS = 1000
/** A head or body slower than minDataRate is refused once it has had this long to get going. */
const RATE_GRACE_MS = 2000

interface OwnedSocket extends Socket { [kOwner]: ClientConnection }

/** `bytes` in `elapsed` ms, past the grace period, is slower than `minRate` bytes/s (0: no minimum). */
export function belowMinRate (bytes: number, elapsed: number, minRate: number): boolean {
  return minRate > 0 && elapsed >= RATE_GRACE_MS && bytes * 1000 / elapsed < minRate
}

/** How often a head or body being received is checked for its rate and its timeout, ms. */
export function rateCheckInterval (timeouts: Readonly<TimeoutOptions>): number {
  return Math.min(1000, timeouts.requestBody, timeouts.requestHead)
}

export class ClientConnection implements MessageSink, Timed, WriteOwner {
  readonly core: ProxyCore
  readonly socket: OwnedSocket
  /** The client's IP as X-Forwarded-For shows it. */
  readonly ip: string
  /** `IP:PORT`, for events and logs. */
  readonly label: string
  readonly #parser: HttpParser
  /** rp4 terminated TLS for this client: X-Forwarded-Proto is https. */
  readonly secure: boolean
  /** Exchanges in request order; the first one owns the socket's output. */
  readonly #queue: Exchange[] = []
  /** The exchange whose request body is being received. */
  #receiving: Exchange | null = null
  /** Bytes read but not parsed while parsing is paused. */
  #stash: Buffer | null = null
  #holds = 0
  /** No further request will be read: the connection closes once the queue is done. */
  #noMore = false
  #resumeScheduled = false
  #wait = Wait.IDLE
  /** Head or body being received: when its measured stretch began, its bytes since, the last byte's time. */
  #since = 0
  #bytes = 0
  #lastByteAt = 0
  /** When the head being received must be complete. */
  #headEnd = 0
  #error: ProxyError | null = null
  deadline = 0

  constructor (core: ProxyCore, socket: Socket, secure: boolean) {
    this.core = core
    this.secure = secure
    this.socket = socket as OwnedSocket
    this.socket[kOwner] = this
    const address = socket.remoteAddress ?? ''
    this.ip = address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
    this.label = (this.ip.includes(':') ? '[' + this.ip + ']' : this.ip) + ':' + (socket.remotePort ?? 0)
    const config = core.config
    this.#parser = new HttpParser(ParserType.REQUEST, this, config.maxHeaderSize, config.maxRequestLine, config.maxHeaders)
    socket.setNoDelay(true)
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('error', onError)
    socket.on('close', onClose)
    socket.on('drain', onDrain)
    this.deadline = clock.after(core.config.timeouts.clientIdle)
    clock.add(this)
  }

  get first (): Exchange | undefined { return this.#queue[0] }
  /**
   * The connection stays open after `exchange`'s response: the request did not ask to close, and
   * when no further request will be read, only the last exchange closes it.
   */
  keepAliveAfter (exchange: Exchange): boolean {
    if (!exchange.head.keepAlive) return false
    if (!this.#noMore && !this.core.closing) return true
    return this.#queue[this.#queue.length - 1] !== exchange
  }
  get idle (): boolean { return this.#queue.length === 0 && !this.#parser.inHead }

  // ---- MessageSink: the request parser's events ----

  onHead (head: MessageHead): number {
    this.#wait = Wait.NONE
    this.deadline = 0
    const plan = planRequest(head, this.core.forwardContext(this.ip, this.secure))
    const exchange = new Exchange(this, this.core.nextId(), head, plan)
    this.#queue.push(exchange)
    this.core.requestStarted(exchange)
    const maxBody = this.core.config.maxBodySize
    if (maxBody > 0 && plan.contentLength > maxBody) plan.invalid = `body of ${plan.contentLength} bytes over the limit of ${maxBody}`
    if (plan.invalid !== '' || head.method === 'CONNECT') {
      const status = head.method === 'CONNECT' ? 405 : plan.contentLength > maxBody && maxBody > 0 ? 413 : 400
      this.#noMore = true
      this.core.clientError(new ProxyError('bad_request', plan.invalid || 'CONNECT is not served', 'downstream', status), this.label)
      exchange.requestComplete = true
      exchange.fail(new ProxyError('bad_request', plan.invalid, 'downstream', status))
      return CB_PAUSE
    }
    const limiter = this.core.rateLimiter
    const retryAfter = limiter === null ? 0 : limiter.take(this.ip)
    if (retryAfter > 0) {
      const error = new ProxyError('rate_limited', `over the request rate limit; retry after ${retryAfter}s`, 'downstream', 429)
      this.core.clientError(error, this.label)
      exchange.retryAfter = retryAfter
      if (plan.body !== BodyKind.NONE) {
        // its body is not read: the connection cannot carry another request after it
        this.#noMore = true
        exchange.requestComplete = true
        exchange.fail(error)
        return CB_PAUSE
      }
      exchange.fail(error)
      return CB_OK
    }
    if (plan.body !== BodyKind.NONE) {
      this.#receiving = exchange
      // the body must keep coming, fast enough (not counting while rp4 holds it back, nor while
      // a client that sent Expect: 100-continue waits for its go-ahead: timing starts at its first byte)
      this.#wait = Wait.BODY
      if (plan.expectContinue) this.deadline = 0
      else this.#startStretch()
    }
    exchange.dispatch()
    return CB_OK
  }

  onBody (body: Buffer): number {
    this.#lastByteAt = clock.now
    if (this.deadline === 0 && this.#wait === Wait.BODY && this.#holds === 0) this.#startStretch()
    this.#receiving?.onRequestBody(body)
    return CB_OK
  }

  onMessageComplete (): number {
    const exchange = this.#queue[this.#queue.length - 1]
    this.#receiving = null
    if (this.#wait === Wait.BODY) {
      this.#wait = Wait.NONE
      this.deadline = 0
    }
    if (exchange === undefined) return CB_PAUSE
    if (!exchange.requestComplete || exchange.plan.body !== BodyKind.NONE) exchange.onRequestComplete()
    if (exchange.plan.upgrade) return CB_OK // llhttp stops with PAUSED_UPGRADE next
    if (!exchange.head.keepAlive || this.#noMore) {
      this.#noMore = true
      return CB_PAUSE
    }
    return this.#queue.length >= this.core.config.maxPipelinedRequests ? CB_PAUSE : CB_OK
  }

  // ---- reading ----

  onData (chunk: Buffer): void {
    if (this.#wait === Wait.LINGER) return
    this.#bytes += chunk.length
    if (this.#stash !== null || this.#holds !== 0) {
      // parsing is paused; keep the bytes in order (bounded: the socket is paused too)
      this.#stash = this.#stash === null ? chunk : Buffer.concat([this.#stash, chunk])
      return
    }
    this.#parse(chunk)
  }

  #parse (chunk: Buffer): void {
    beginBatch()
    try {
      const ret = this.#parser.execute(chunk)
      if (ret !== Errno.OK) this.#parseStopped(ret, chunk)
      else if (this.#wait === Wait.IDLE && this.#parser.inHead) {
        // a request head has begun: from now on it must complete within requestHead, fast enough
        this.#wait = Wait.HEAD
        this.#startStretch()
        this.#bytes = chunk.length
        this.#headEnd = this.#since + this.core.config.timeouts.requestHead
        this.deadline = Math.min(this.deadline, this.#headEnd)
      }
    } catch (err) {
      this.onInternalError(err)
    } finally {
      endBatch()
    }
  }

  /**
   * The head being received began at `since`, before this connection was handed over (the
   * listener held its first bytes to tell HTTP from another protocol): its timeout and rate count
   * from then, and are checked at the next sweep, since that wait may already be over a limit.
   */
  headBeganAt (since: number): void {
    if (this.#wait !== Wait.HEAD || since >= this.#since) return
    this.#since = since
    this.#headEnd = since + this.core.config.timeouts.requestHead
    this.deadline = clock.now
  }

  /** A defect of rp4's own surfaced on this connection: it is closed, the process goes on. */
  onInternalError (err: unknown): void {
    this.core.clientError(new ProxyError('internal_error', `internal error: ${(err as Error).stack ?? String(err)}`, 'internal', 500, false, err), this.label)
    this.socket.destroy()
  }

  #parseStopped (ret: number, chunk: Buffer): void {
    const rest = chunk.subarray(this.#parser.errorOffset())
    if (ret === Errno.PAUSED || ret === Errno.PAUSED_UPGRADE) {
      const last = this.#queue[this.#queue.length - 1]
      if (last !== undefined && last.plan.upgrade && ret === Errno.PAUSED_UPGRADE) {
        // what follows an upgrade request belongs to the new protocol: forwarded only after a 101
        last.upgradeData = rest
        this.#noMore = true
        this.hold(ClientHold.UPGRADE)
        return
      }
      this.hold(ClientHold.PIPELINE)
      if (!this.#noMore) {
        if (rest.length > 0) this.#stash = rest
        // exchanges may have completed while this chunk was parsed: there may be room already
        if (this.#queue.length < this.core.config.maxPipelinedRequests) {
          this.#parser.resume()
          this.release(ClientHold.PIPELINE)
        }
      }
      return
    }
    const limit = this.#parser.limitError
    const status = limit === LimitError.HEAD_TOO_LARGE || limit === LimitError.TOO_MANY_HEADERS ? 431 : limit === LimitError.URL_TOO_LONG ? 414 : 400
    const error = new ProxyError('bad_request', 'malformed request: ' + this.#parser.describeError(ret), 'downstream', status)
    this.core.clientError(error, this.label)
    this.stopReading()
    const receiving = this.#receiving
    this.#receiving = null
    if (receiving !== null) {
      receiving.fail(error)
      return
    }
    // the broken request never became an exchange: answer it after those before it
    this.respondLocally(status)
  }

  /** An error response of rp4's own, in turn after the exchanges in flight, then close. */
  respondLocally (status: number): void {
    this.#noMore = true
    const head: MessageHead = { method: 'GET', url: '', status: 0, reason: '', versionMajor: 1, versionMinor: 1, headers: [], keepAlive: false, upgrade: false }
    const exchange = new Exchange(this, this.core.nextId(), head, LOCAL_PLAN)
    this.#queue.push(exchange)
    exchange.fail(new ProxyError('bad_request', 'refused', 'downstream', status))
  }

  /** No further request is read from this connection. */
  stopReading (): void {
    this.#noMore = true
    this.#stash = null
    this.hold(ClientHold.PIPELINE)
  }

  hold (reason: ClientHold): void {
    if (this.#holds === 0) this.socket.pause()
    this.#holds |= reason
    // a body held back by rp4 is not the client's delay
    if (this.#wait === Wait.BODY) this.deadline = 0
  }

  /** Measure the head or body from now: its rate, and the time since its last byte. */
  #startStretch (): void {
    const now = clock.refresh()
    this.#since = now
    this.#lastByteAt = now
    this.#bytes = 0
    this.deadline = now + this.#checkEvery()
  }

  #checkEvery (): number {
    return rateCheckInterval(this.core.config.timeouts)
  }

  /** A head or body check: too slow or stalled gives 408, otherwise the next check is armed. Returns true when refused. */
  #tooSlow (now: number, stalled: boolean): boolean {
    const minRate = this.core.config.minDataRate
    const slow = belowMinRate(this.#bytes, now - this.#since, minRate)
    if (!stalled && !slow) return false
    const what = this.#wait === Wait.HEAD ? 'request head' : 'request body'
    const reason = stalled ? `${what} not received in time` : `${what} slower than ${minRate} bytes/s`
    this.core.clientError(new ProxyError(this.#wait === Wait.HEAD ? 'request_head_timeout' : 'request_body_timeout', reason, 'downstream', 408), this.label)
    return true
  }

  release (reason: ClientHold): void {
    if ((this.#holds & reason) === 0) return
    this.#holds &= ~reason
    if (this.#holds === 0) {
      if (this.#wait === Wait.BODY) this.#startStretch()
      this.#resume()
    }
  }

  #resume (): void {
    if (this.#stash !== null) {
      // parse the held bytes outside of any llhttp callback: one parse at a time
      if (!this.#resumeScheduled) {
        this.#resumeScheduled = true
        process.nextTick(resumeParsing, this)
      }
      return
    }
    if (!this.socket.destroyed) this.socket.resume()
  }

  resumeParsing (): void {
    this.#resumeScheduled = false
    if (this.#holds !== 0 || this.socket.destroyed) return
    const stash = this.#stash
    this.#stash = null
    if (stash !== null) this.#parse(stash)
    if (this.#holds === 0 && this.#stash === null) this.socket.resume()
  }

  // ---- writing ----

  write (data: string | Buffer): boolean {
    const socket = this.socket
    if (socket.destroyed) return true
    return send(socket, data)
  }

  /** The first exchange made progress: move through every exchange that is complete. */
  advance (): void {
    const queue = this.#queue
    while (queue.length > 0) {
      const exchange = queue[0]
      if (!exchange.takeTurn()) return
      queue.shift()
      exchange.finish()
      this.core.responseDone(exchange)
      if (exchange.status === 101 && exchange.plan.upgrade) {
        this.#startTunnel(exchange)
        return
      }
      if (exchange.closeAfter) {
        this.#noMore = true
        for (const later of queue.splice(0)) later.abort()
        break
      }
    }
    if (queue.length > 0) return
    if (this.#noMore || this.core.closing) {
      this.#closeAfterWrites()
      return
    }
    this.#wait = Wait.IDLE
    this.deadline = clock.after(this.core.config.timeouts.clientIdle)
    if ((this.#holds & ClientHold.PIPELINE) !== 0) {
      this.#parser.resume()
      this.release(ClientHold.PIPELINE)
    }
  }

  #startTunnel (exchange: Exchange): void {
    const upstream = exchange.takeUpgrade()
    if (upstream === null) {
      this.destroy()
      return
    }
    // the 101 may still sit in this batch's output: it goes first
    flush(this.socket)
    const socket = this.detach()
    if (upstream.rest.length > 0) socket.write(upstream.rest)
    flush(upstream.socket)
    if (exchange.upgradeData !== null && exchange.upgradeData.length > 0) upstream.socket.write(exchange.upgradeData)
    const stash = this.#stash
    if (stash !== null) upstream.socket.write(stash)
    relay(socket, upstream.socket)
  }

  /** Give the socket up (to a tunnel): no listener of ours stays on it. */
  detach (): Socket {
    const socket = this.socket
    clock.delete(this)
    socket.removeListener('data', onData)
    socket.removeListener('end', onEnd)
    socket.removeListener('error', onError)
    socket.removeListener('close', onClose)
    socket.removeListener('drain', onDrain)
    this.#parser.destroy()
    this.core.forget(this)
    socket.resume()
    return socket
  }

  /** Close now: a truncated response must show as one, so no graceful end. */
  destroy (error?: ProxyError): void {
    if (error !== undefined && this.#error === null) {
      this.#error = error
      if (error.source === 'downstream') this.core.clientError(error, this.label)
    }
    this.socket.destroy()
  }

  /** Close if nothing is under way (the proxy is closing); otherwise after the current exchanges. */
  closeWhenIdle (): void {
    if (this.idle) {
      this.#closeAfterWrites()
      return
    }
    // a request body still arriving is read to its end; nothing after it is
    this.#noMore = true
    if (this.#receiving === null) this.hold(ClientHold.PIPELINE)
  }

  // ---- socket events ----

  onEnd (): void {
    // both sides are done: the socket closes by itself
    if (this.#wait === Wait.LINGER) return
    // the client sends no more: answer what was asked, then close
    this.#noMore = true
    if (this.#receiving !== null) {
      const exchange = this.#receiving
      this.#receiving = null
      exchange.fail(new ProxyError('client_aborted', 'client closed mid-request', 'downstream', 0))
      return
    }
    if (this.#queue.length === 0) sendEnd(this.socket)
  }

  onTimeout (): void {
    const now = clock.now
    if (this.#wait === Wait.BODY && this.#receiving !== null) {
      if (!this.#tooSlow(now, now - this.#lastByteAt >= this.core.config.timeouts.requestBody)) {
        this.deadline = now + this.#checkEvery()
        return
      }
      const exchange = this.#receiving
      this.#receiving = null
      this.#wait = Wait.NONE
      exchange.fail(new ProxyError('request_body_timeout', 'request body too slow or stalled', 'downstream', 408))
      return
    }
    if (this.#wait === Wait.HEAD) {
      if (!this.#tooSlow(now, now >= this.#headEnd)) {
        this.deadline = Math.min(now + this.#checkEvery(), this.#headEnd)
        return
      }
      this.stopReading()
      this.respondLocally(408)
      return
    }
    if (this.#wait === Wait.LINGER) {
      this.socket.destroy()
      return
    }
    this.#closeAfterWrites()
  }

  /**
   * End our side once the output is written, then read and drop what the client still sends for a
   * moment (unread bytes would turn our close into a reset that can destroy the response before
   * the client reads it), and close for good when the client ends too or LINGER_MS passes.
   */
  #closeAfterWrites (): void {
    if (this.#wait === Wait.LINGER) return
    this.#wait = Wait.LINGER
    this.#noMore = true
    this.#stash = null
    sendEnd(this.socket)
    this.#holds = 0
    if (!this.socket.destroyed) this.socket.resume()
    this.deadline = clock.after(LINGER_MS)
  }

  onDrain (): void {
    this.#queue[0]?.onClientDrain()
  }

  /** A batched write left the socket over its high-water mark: stop reading the backend feeding it. */
  onWriteBlocked (): void {
    this.#queue[0]?.onClientBlocked()
  }

  onSocketError (err: Error): void {
    if (this.#error === null) {
      this.#error = new ProxyError('client_error', `client ${this.label}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, 'downstream', 0, false, err)
    }
  }

  onClose (): void {
    clock.delete(this)
    this.#parser.destroy()
    this.core.forget(this)
    const queue = this.#queue.splice(0)
    if (queue.length > 0 && this.#error === null) {
      this.#error = new ProxyError('client_closed', `client ${this.label} closed with a request in flight`, 'downstream', 0)
    }
    if (queue.length > 0 || (this.#error !== null && this.#error.code === 'client_error')) {
      if (this.#error !== null) this.core.clientError(this.#error, this.label)
    }
    for (const exchange of queue) {
      exchange.abort()
      this.core.responseDone(exchange)
    }
  }
}

const LOCAL_PLAN = { prefix: '', suffix: '', needsHost: false, body: BodyKind.NONE, contentLength: -1, expectContinue: false, upgrade: false, invalid: 'refused' }

// Each listener contains what a defect could throw to this connection: no exception reaches the process.
function onData (this: OwnedSocket, chunk: Buffer): void { this[kOwner].onData(chunk) }
function onEnd (this: OwnedSocket): void { try { this[kOwner].onEnd() } catch (err) { this[kOwner].onInternalError(err) } }
function onError (this: OwnedSocket, err: Error): void { this[kOwner].onSocketError(err) }
function onClose (this: OwnedSocket): void { try { this[kOwner].onClose() } catch (err) { this[kOwner].onInternalError(err) } }
function onDrain (this: OwnedSocket): void { try { this[kOwner].onDrain() } catch (err) { this[kOwner].onInternalError(err) } }
function resumeParsing (client: ClientConnection): void { client.resumeParsing() }

