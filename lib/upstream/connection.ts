/**
 * One connection to a backend: carries requests in order (several at once when pipelining),
 * parses their responses with llhttp and hands each piece to the request it belongs to. Trouble
 * goes to the group, which decides what happens to the requests it carried.
 */
import net, { type Socket } from 'node:net'
import tls from 'node:tls'
import { clock, type Timed } from '../core/clock.js'
import { beginBatch, deferBatches, deferWrites, endBatch, send, type WriteOwner } from '../core/batch.js'
import { CRLF, LAST_CHUNK, chunkHeader } from '../http1/encode.js'
import { ProxyError } from '../core/errors.js'
import { kOwner } from '../core/symbols.js'
import { skipReadMore } from '../core/read-more.js'
import { copyIfLent, lendPiece } from '../core/loan.js'
import { SocketReads } from '../core/read-buffers.js'
import { readDirectly } from '../core/read-into.js'
import { CB_OK, Errno, HeadersResult, ParserType } from '../http1/llhttp.js'
import { HttpParser, type MessageSink } from '../http1/parser.js'
import type { MessageHead } from '../http1/head.js'
import { ReadHold, type RequestChannel, type UpstreamRequest, type UpstreamTarget } from './handler.js'

export { ReadHold }

/** What a connection needs from the pool it belongs to. */
export interface ConnectionPool {
  readonly target: UpstreamTarget
  /** Requests in flight per connection; 1: no pipelining. */
  readonly pipelining: number
  /** Every request it carried is done: reuse it, or let it go. */
  release (conn: UpstreamConnection): void
  /** It closed (or failed to connect). */
  forget (conn: UpstreamConnection): void
  /** It has room for more pipelined requests. */
  fillPipeline (conn: UpstreamConnection): void
}

const enum State { CONNECTING, IDLE, ACTIVE, CLOSED }


interface OwnedSocket extends Socket { [kOwner]: UpstreamConnection }

export class UpstreamConnection implements MessageSink, Timed, WriteOwner, RequestChannel {
  readonly pool: ConnectionPool
  readonly socket: OwnedSocket
  readonly #parser: HttpParser
  #state = State.CONNECTING
  /** Requests sent on this connection whose responses have not completed, oldest first. */
  readonly #inflight: UpstreamRequest[] = []
  /** The request this connection was opened for, until it connects. */
  #opener: UpstreamRequest | null
  /** The response being read is a 1xx before the final one. */
  #interim = false
  /** The response being read is a 101: the connection becomes a tunnel after its head. */
  #switching = false
  /** Responses completed on this connection: above 0, the connection is a reused one. */
  served = 0
  /** The backend said it will close (or a response left the connection unusable): no new exchanges. */
  #noReuse = false
  #holds = 0
  /** When the request now awaiting its response was sent in full (clock ms). */
  #sentAt = 0
  /** The deadline running is the whole response's (timeouts.responseTotal), not its head's. */
  #totalRunning = false
  #error: ProxyError | null = null
  deadline = 0
  /**
   * What a cleartext socket reads into (core/read-buffers.ts): the shared buffer, or an own
   * buffer while a large body moves to a client that keeps up. Unused on TLS (stream reads).
   */
  readonly #reads = new SocketReads()
  /** A tunnel owns the socket now: what it reads goes to the socket's stream. */
  #detached = false

  constructor (pool: ConnectionPool, opener: UpstreamRequest) {
    this.pool = pool
    this.#opener = opener
    const settings = pool.target.settings
    const { host, port, tls: secure } = pool.target.config
    // half-open, so that an upgraded connection can relay a FIN one way while the other keeps flowing;
    // an https:// backend: usable once its certificate is verified (a failure is a connect failure)
    // cleartext: reads go to a buffer the connection chooses (`onread`), not a fresh one per read
    const socket = (secure === null
      ? net.connect({
        host,
        port,
        noDelay: true,
        allowHalfOpen: true,
        onread: { buffer: () => this.#reads.buffer, callback: (length: number, buffer: Buffer) => this.#onRead(length, buffer) },
      })
      // allowHalfOpen is honoured by tls.connect though its typings omit it
      : tls.connect({ ...secure, host, port, allowHalfOpen: true } as tls.ConnectionOptions).setNoDelay(true)) as OwnedSocket
    socket[kOwner] = this
    skipReadMore(socket)
    this.socket = socket
    // its reads come to this connection straight from the handle (core/read-into.ts)
    if (secure === null) readDirectly(socket, this)
    // before anything else, the client this connection speaks for (written once connected)
    if (settings.sendProxy !== null) socket.write(opener.proxyHeader(settings.sendProxy))
    // pipelined requests of several clients gather into one write per turn; otherwise the
    // requests of one turn's reads leave together at its end, as responses do (core/batch.ts)
    if (pool.pipelining > 1) deferWrites(socket)
    else deferBatches(socket)
    this.#parser = new HttpParser(ParserType.RESPONSE, this, settings.maxHeaderSize, settings.maxHeaderSize, settings.maxHeaders)
    socket.on(secure === null ? 'connect' : 'secureConnect', onConnect)
    if (secure !== null) socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('error', onError)
    socket.on('close', onClose)
    socket.on('drain', onDrain)
    this.deadline = clock.after(settings.timeouts.connect)
    clock.add(this)
  }

  /**
   * The target whose pool holds this connection now: a reload that keeps the target's connection
   * settings hands the pool, and so this connection, to the new generation's target. What befalls
   * a request goes to the target that sent it (its dispatch state), not to this one.
   */
  get target (): UpstreamTarget { return this.pool.target }

  get inflightCount (): number { return this.#inflight.length }
  /** Reasons reading is paused now (ReadHold bits); 0 when the socket reads. */
  get holds (): number { return this.#holds }
  /** `exchange` is the one whose response this connection is reading (the oldest in flight). */
  isReading (request: UpstreamRequest): boolean { return this.#inflight[0] === request }
  get usable (): boolean { return this.#state === State.IDLE && !this.#noReuse }

  /** May take one more exchange on top of those in flight (pipelining). */
  canPipeline (depth: number): boolean {
    const inflight = this.#inflight
    if (this.#state !== State.ACTIVE || this.#noReuse || inflight.length >= depth || inflight.length === 0) return false
    // only behind requests whose bytes are all sent, and that a backend cannot turn into a tunnel
    const last = inflight[inflight.length - 1]
    return last.requestSent && last.pipelinable
  }

  /** Start `request` on this connection: it writes itself at once. */
  send (request: UpstreamRequest): void {
    if (this.#inflight.length === 0) {
      this.#state = State.ACTIVE
      this.deadline = 0
    }
    this.#inflight.push(request)
    request.attach(this)
  }

  // ---- writing a request: HTTP/1 framing of its body ----

  writeHead (head: string): void {
    send(this.socket, head)
  }

  /** A piece of a request body, as one chunk when the body is chunked. False: the socket is full. */
  writeBody (body: Buffer, chunked: boolean): boolean {
    const socket = this.socket
    if (!chunked) return send(socket, body)
    if (body.length === 0) return true
    send(socket, chunkHeader(body.length))
    send(socket, body)
    return send(socket, CRLF)
  }

  endBody (chunked: boolean): void {
    if (chunked) send(this.socket, LAST_CHUNK)
  }

  /** Pooled and idle: closed by the coarse clock after the idle timeout. */
  setIdle (): void {
    this.#state = State.IDLE
    this.deadline = clock.after(this.target.settings.pool.idleTimeout)
  }

  /** The oldest request still waiting for its response was written in full. */
  armResponseTimeout (): void {
    this.#sentAt = clock.turn()
    this.deadline = this.#sentAt + this.#inflight[0].responseTimeout
  }

  /** Pause reading for `reason`; the exchange or tunnel that holds it releases it. */
  hold (reason: ReadHold): void {
    if (this.#holds === 0) this.socket.pause()
    this.#holds |= reason
  }

  /** Lift `reason` (ReadHold bits, several at once allowed); reading resumes when none is left. */
  release (reason: number): void {
    if ((this.#holds & reason) === 0) return
    this.#holds &= ~reason
    if (this.#holds === 0 && this.#state !== State.CLOSED) this.socket.resume()
  }

  /** Close now; exchanges still in flight fail (or are retried when nothing of theirs was answered). */
  destroy (error?: ProxyError): void {
    if (error !== undefined && this.#error === null) this.#error = error
    this.#noReuse = true
    this.socket.destroy()
  }

  /** The request gives the connection up for the rest of its life (its tunnel now owns the socket). */
  detach (): Socket {
    this.#state = State.CLOSED
    this.#detached = true
    this.#inflight.length = 0
    clock.delete(this)
    this.socket.removeListener('data', onData)
    this.socket.removeListener('end', onEnd)
    this.socket.removeListener('error', onError)
    this.socket.removeListener('close', onClose)
    this.socket.removeListener('drain', onDrain)
    this.#parser.destroy()
    this.pool.forget(this)
    return this.socket
  }

  // ---- MessageSink: the response parser's events ----

  onHead (head: MessageHead): number {
    const request = this.#inflight[0]
    if (request === undefined) {
      this.#error = new ProxyError('unsolicited_response', `${this.target.authority} sent a response nobody asked for`, 'upstream', 502)
      return -1
    }
    this.#interim = head.status < 200 && head.status !== 101
    if (!this.#interim) {
      const total = request.responseTotalTimeout
      this.#totalRunning = total > 0 && head.status !== 101
      this.deadline = this.#totalRunning ? this.#sentAt + total : 0
    }
    // after a 101 the connection speaks another protocol, whether or not the request takes it
    if (!head.keepAlive || head.status === 101) this.#noReuse = true
    const result = request.onResponseHead(head, this.#parser.needsEof)
    this.#switching = result === HeadersResult.UPGRADE
    return result
  }

  onBody (body: Buffer): number {
    lendPiece()
    return this.#inflight[0].onResponseBody(body)
  }

  onMessageComplete (): number {
    // a 101: llhttp stops with PAUSED_UPGRADE right after this, and the request takes the socket
    if (this.#switching) return CB_OK
    if (this.#interim) {
      // a 1xx before the final response: the same request goes on
      this.#interim = false
      return CB_OK
    }
    const request = this.#inflight.shift()!
    this.served++
    if (!request.requestSent) this.#noReuse = true // it answered before reading all of the request
    if (this.#inflight.length === 0 && this.#noReuse) this.socket.destroy()
    request.onResponseComplete()
    // back to the pool only once the whole chunk is parsed: bytes after the last response must
    // not become the answer to the next request sent on this connection
    if (this.#inflight.length > 0) this.armResponseTimeoutIfSent()
    return CB_OK
  }

  /** Arm the response-head timeout when the oldest request was sent in full and awaits its head. */
  armResponseTimeoutIfSent (): void {
    const first = this.#inflight[0]
    if (first !== undefined && first.requestSent && !first.responseStarted) this.armResponseTimeout()
  }

  // ---- socket events ----

  onConnect (): void {
    const opener = this.#opener!
    this.#opener = null
    this.target.markUp()
    if (opener.settled) {
      // its client went away or it failed meanwhile: the new connection serves someone else
      this.#state = State.ACTIVE
      this.pool.release(this)
    } else {
      this.send(opener)
      this.pool.fillPipeline(this)
    }
  }

  onData (chunk: Buffer): void {
    beginBatch()
    try {
      const ret = this.#parser.execute(chunk)
      if (ret === Errno.OK) {
        if (this.#inflight.length === 0 && this.#state === State.ACTIVE && !this.#noReuse && !this.socket.destroyed) this.pool.release(this)
      } else if (ret === Errno.PAUSED_UPGRADE) {
        // a 101 its request declined (a filter answered in its place) was completed above, and the
        // connection closed with it
        // the tunnel keeps what came after the 101: never a view of a reused read buffer
        if (this.#switching) this.#inflight[0].onUpgraded(copyIfLent(chunk.subarray(this.#parser.errorOffset())))
        else if (!this.socket.destroyed) this.socket.destroy()
      } else if (!this.socket.destroyed) {
        this.destroy(this.#error ?? new ProxyError('bad_response',
          `${this.target.authority} sent a malformed response (${this.#parser.describeError(ret)})`, 'upstream', 502))
      }
    } catch (err) {
      this.onInternalError(err)
    } finally {
      endBatch()
    }
  }

  /** A read, from the socket's handle (core/read-into.ts `readDirectly`). */
  onHandleRead (length: number, buffer: Buffer): boolean {
    return this.#onRead(length, buffer)
  }

  /** The buffer of the socket's next read. */
  nextBuffer (): Buffer {
    return this.#reads.buffer
  }

  /**
   * A cleartext socket read `length` bytes into `buffer`. From the shared buffer, a copy is parsed
   * (views of it must not outlive this call); from an own buffer, views of it are lent for the
   * dispatch (core/loan.ts) and it is read into again if none was kept. The next buffer is chosen
   * here; Node asks for it right after. False: stop reading (a tunnel's stream is full).
   */
  #onRead (length: number, buffer: Buffer): boolean {
    const reads = this.#reads
    if (this.#detached) return this.socket.push(reads.copy(length, buffer))
    const chunk = reads.begin(length, buffer)
    try {
      this.onData(chunk)
    } finally {
      reads.end(this.#inflight.length > 0 && this.#state !== State.CLOSED && !this.#switching)
    }
    return true
  }

  /** A defect of rp4's own surfaced on this connection: it is closed (its exchanges fail), the process goes on. */
  onInternalError (err: unknown): void {
    const error = new ProxyError('internal_error', `internal error: ${(err as Error).stack ?? String(err)}`, 'internal', 502, false, err)
    this.target.events.upstreamError(error, this.target.authority)
    this.destroy(error)
  }

  onEnd (): void {
    // the backend closed: the end of a close-delimited body, or of the connection
    if (this.#inflight.length > 0) {
      beginBatch()
      let ret: number
      try {
        ret = this.#parser.finish()
      } finally {
        endBatch()
      }
      if (ret !== Errno.OK && ret !== Errno.PAUSED && this.#error === null) {
        this.#error = new ProxyError('truncated_response', `${this.target.authority} closed the connection mid-response`, 'upstream', 502)
      }
    }
    this.socket.destroy()
  }

  onTimeout (): void {
    if (this.#state === State.CONNECTING) {
      this.destroy(new ProxyError('connect_timeout', `connect to ${this.target.authority} timed out`, 'upstream', 502, true))
    } else if (this.#state === State.IDLE) {
      this.socket.destroy()
    } else if (this.#inflight.length > 0) {
      this.destroy(this.#totalRunning && this.#inflight[0].responseStarted
        ? new ProxyError('response_total_timeout', `${this.target.authority} did not finish its response in time`, 'upstream', 504)
        : new ProxyError('response_timeout', `${this.target.authority} sent no response in time`, 'upstream', 504))
    }
  }

  onClose (): void {
    this.#reads.release()
    const wasConnecting = this.#state === State.CONNECTING
    this.#state = State.CLOSED
    this.#noReuse = true
    clock.delete(this)
    this.#parser.destroy()
    this.pool.forget(this)
    const target = this.target
    const opener = this.#opener
    if (wasConnecting && opener !== null) {
      this.#opener = null
      const error = this.#error ?? new ProxyError('connect_failed', `cannot connect to ${this.target.authority}`, 'upstream', 502, true)
      ;(opener.dispatchState.target ?? target).connectFailed(opener, error)
      return
    }
    const inflight = this.#inflight.splice(0)
    const reused = this.served > 0
    for (let i = 0; i < inflight.length; i++) {
      const error = this.#error ?? new ProxyError('upstream_closed', `${this.target.authority} closed the connection`, 'upstream', 502)
      // the first request failed with the error; those pipelined behind it never got an answer
      ;(inflight[i].dispatchState.target ?? target).connectionLost(inflight[i], i === 0 ? error : new ProxyError('pipeline_aborted', error.message, 'upstream', 502, true), reused || i > 0)
    }
  }

  onSocketError (err: Error): void {
    if (this.#error === null) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error'
      const connecting = this.#state === State.CONNECTING
      this.#error = new ProxyError(connecting ? 'connect_failed' : 'upstream_reset',
        `${connecting ? 'cannot connect to' : 'connection to'} ${this.target.authority}: ${code}`, 'upstream', 502, connecting, err)
    }
  }

  /** A batched write of a request body left the socket full: the client sending it must wait. */
  onWriteBlocked (): void {
    const inflight = this.#inflight
    const last = inflight[inflight.length - 1]
    if (last !== undefined && !last.requestSent) last.onUpstreamWriteBlocked()
  }

  onDrain (): void {
    // the request body's sender may go on
    const inflight = this.#inflight
    const last = inflight[inflight.length - 1]
    if (last !== undefined && !last.requestSent) last.onUpstreamDrain()
  }
}

// Each listener contains what a defect could throw to this connection: no exception reaches the process.
function onConnect (this: OwnedSocket): void { try { this[kOwner].onConnect() } catch (err) { this[kOwner].onInternalError(err) } }
function onData (this: OwnedSocket, chunk: Buffer): void { this[kOwner].onData(chunk) }
function onEnd (this: OwnedSocket): void { try { this[kOwner].onEnd() } catch (err) { this[kOwner].onInternalError(err) } }
function onError (this: OwnedSocket, err: Error): void { this[kOwner].onSocketError(err) }
function onClose (this: OwnedSocket): void { try { this[kOwner].onClose() } catch (err) { this[kOwner].onInternalError(err) } }
function onDrain (this: OwnedSocket): void { try { this[kOwner].onDrain() } catch (err) { this[kOwner].onInternalError(err) } }

