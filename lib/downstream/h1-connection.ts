/**
 * One client connection speaking HTTP/1.x: parses requests with llhttp, starts a session for
 * each, keeps their responses in request order (pipelining), keep-alive between them, and the
 * client's timeouts: idle, request head, request body, minimum data rate (meter.ts). When it is
 * done the socket goes to a lingering close (linger.ts); after a 101, to a tunnel.
 */
import type { Socket } from 'node:net'
import { clock, type Timed } from '../core/clock.js'
import { beginBatch, deferBatches, endBatch, flush, send, sendEnd, type WriteOwner } from '../core/batch.js'
import { ProxyError } from '../core/errors.js'
import { kOwner, localOf, peerLabel, peerOf } from '../core/symbols.js'
import { disown, own, readOwned, type SocketOwner } from '../core/owner.js'
import { canPark } from '../core/park.js'
import { hasPendingOutput } from '../core/batch.js'
import { giveCount, takeCount } from '../admission/caps.js'
import { copyIfLent, lendPiece } from '../core/loan.js'
import { SHARED_SIZE, type SocketReads } from '../core/read-buffers.js'
import { skipReadMore } from '../core/read-more.js'
import { CB_OK, CB_PAUSE, Errno, ParserType } from '../http1/llhttp.js'
import { HttpParser, LimitError, type MessageSink } from '../http1/parser.js'
import type { MessageHead } from '../http1/head.js'
import { HeaderList } from '../http/headers.js'
import { RequestHead } from '../http/message.js'
import { BodyKind, inspectRequest, type RequestFacts } from '../http/validate.js'
import type { RouteTable } from '../routing/table.js'
import { Session, type SessionHost } from '../session/session.js'
import { ClientHold, type Downstream, type IdentityHeaders } from '../session/sink.js'
import type { ClientInfo, TlsClient } from '../session/filter.js'
import { relay } from '../tcp/relay.js'
import { H1Response, type ResponseOwner } from './h1-response.js'
import { linger } from './linger.js'
import { RequestMeter, Verdict, rateCheckInterval } from './meter.js'
import { ParkedClient, type ClientConnection, type ParkHost } from './parked.js'

/** The HTTP engine's settings for client connections. */
export interface H1Settings {
  readonly maxHeaderSize: number
  readonly maxRequestLine: number
  readonly maxHeaders: number
  readonly maxPipelinedRequests: number
  /** bytes/s; 0: no minimum. */
  readonly minDataRate: number
  /** ms; clientPark 0: never. */
  readonly timeouts: Readonly<{ clientIdle: number, clientPark: number, requestHead: number, requestBody: number }>
}

/** What a client connection needs from the proxy around it. */
export interface H1Host extends SessionHost, ParkHost {
  readonly settings: H1Settings
  /** The proxy is closing: answer what is in flight, read nothing more. */
  readonly closing: boolean
  /** The proxy is draining: each connection's next response says `Connection: close`, and is its last. */
  readonly draining: boolean
  nextId (): number
}

const enum Wait { NONE, IDLE, HEAD, BODY, CLOSED }

interface OwnedSocket extends Socket { [kOwner]: H1Connection }

const NO_TLS = Object.freeze({ version: '', sni: '', alpn: '' })

const FACTS_REFUSED: RequestFacts = { invalid: 'refused', body: BodyKind.NONE, contentLength: -1, expectContinue: false, needsHost: false }

export class H1Connection implements MessageSink, Timed, WriteOwner, ResponseOwner, Downstream, SocketOwner, ClientConnection {
  readonly #host: H1Host
  /** The routes of the listener this client came through. */
  readonly #routes: RouteTable
  readonly socket: OwnedSocket
  readonly client: ClientInfo
  readonly identityHeaders: IdentityHeaders | null
  readonly #parser: HttpParser
  readonly #meter: RequestMeter
  /** Responses in request order; the first one owns the socket's output. */
  readonly #queue: H1Response[] = []
  /** The session whose request body is being received. */
  #receiving: Session | null = null
  /** Bytes read but not parsed while parsing is paused. */
  #stash: Buffer | null = null
  #holds = 0
  /** llhttp was paused (CB_PAUSE) and must be resumed before it parses again. */
  #parserPaused = false
  /** No further request will be read: the connection closes once the queue is done. */
  #noMore = false
  /** The client sent its FIN (`#noMore` follows once what it sent before is parsed). */
  #ended = false
  #resumeScheduled = false
  /** Reads went to core/read-buffers.ts (tried once). */
  #switched = false
  /** Reads through the stream so far (counted until the switch). */
  #streamReads = 0
  #wait = Wait.IDLE
  /** When the wait must be over: the head being received complete (HEAD), the idle time (IDLE). */
  #end = 0
  #error: ProxyError | null = null
  /** `#error` was reported already (the client's), or is a backend's, reported on its side: not reported again at close. */
  #errorReported = false
  deadline = 0

  /**
   * @param tls what rp4's TLS termination learned (null: cleartext)
   * @param identity the listener's client-certificate headers (null: none)
   */
  constructor (host: H1Host, socket: Socket, tls: TlsClient | null, routes: RouteTable, identity: IdentityHeaders | null = null) {
    this.#host = host
    this.#routes = routes
    this.identityHeaders = identity
    this.socket = socket as OwnedSocket
    const peer = peerOf(socket)
    this.client = Object.freeze({ ip: peer.ip, label: peerLabel(peer), secure: tls !== null, tls })
    const settings = host.settings
    this.#parser = new HttpParser(ParserType.REQUEST, this, settings.maxHeaderSize, settings.maxRequestLine, settings.maxHeaders)
    this.#meter = new RequestMeter(settings.minDataRate)
    socket.setNoDelay(true)
    // the responses of one turn's reads leave together at its end (core/batch.ts)
    deferBatches(socket)
    skipReadMore(socket)
    // a socket from the listener's detection keeps its listeners: only the owner changes
    own(socket, this)
    socket.on('drain', onDrain)
    this.#idle()
    clock.add(this)
  }

  /** Idle from now: closed after `clientIdle`, parked after `clientPark` if that comes first. */
  #idle (): void {
    const { clientIdle, clientPark } = this.#host.settings.timeouts
    const now = clock.turn()
    this.#end = now + clientIdle
    this.deadline = clientPark > 0 && clientPark < clientIdle && canPark && !this.client.secure ? now + clientPark : this.#end
  }

  get label (): string { return this.client.label }

  addresses (): Readonly<{ source: Readonly<{ ip: string, port: number }>, destination: Readonly<{ ip: string, port: number }> }> {
    return { source: peerOf(this.socket), destination: localOf(this.socket) }
  }

  tlsInfo (): Readonly<{ version: string, sni: string, alpn: string }> {
    if (!this.client.secure) return NO_TLS
    const socket = this.socket as Socket & { getProtocol?: () => string | null, servername?: string | false, alpnProtocol?: string | false }
    return {
      version: socket.getProtocol?.() ?? '',
      sni: typeof socket.servername === 'string' ? socket.servername : '',
      alpn: typeof socket.alpnProtocol === 'string' ? socket.alpnProtocol : '',
    }
  }
  get first (): H1Response | undefined { return this.#queue[0] }
  get idle (): boolean { return this.#queue.length === 0 && !this.#parser.inHead }

  /**
   * The connection stays open after `response`: its request did not ask to close, and when no
   * further request will be read, only the last response closes it.
   */
  keepAliveAfter (response: H1Response): boolean {
    if (!response.session.request.keepAlive) return false
    if (!this.#noMore && !this.#host.closing) return true
    return this.#queue[this.#queue.length - 1] !== response
  }

  // ---- MessageSink: the request parser's events ----

  onHead (message: MessageHead): number {
    this.#wait = Wait.NONE
    this.deadline = 0
    const host = this.#host
    const request = new RequestHead(message.method, message.url, message.versionMajor, message.versionMinor,
      new HeaderList(message.headers), message.keepAlive, message.upgrade)
    const facts = inspectRequest(request)
    // the parser read the clock when this request began (in this read or an earlier one)
    const session = new Session(host, this, host.nextId(), request, facts, clock.now)
    const response = new H1Response(this, session)
    this.#queue.push(response)
    if (host.draining) this.#noMore = true
    let refusal: ProxyError | null = null
    if (facts.invalid !== '') refusal = new ProxyError('bad_request', facts.invalid, 'downstream', 400)
    else if (request.method === 'CONNECT') refusal = new ProxyError('bad_request', 'CONNECT is not served', 'downstream', 405)
    if (refusal !== null) {
      // nothing after a request that cannot be framed or served is read
      this.#noMore = true
      session.requestComplete = true
    } else if (facts.body !== BodyKind.NONE) {
      this.#receiving = session
      // the body must keep coming, fast enough (not counting while rp4 holds it back, nor while
      // a client that sent Expect: 100-continue waits for its go-ahead: timing starts at its first byte)
      this.#wait = Wait.BODY
      if (facts.expectContinue) this.deadline = 0
      else this.#startStretch()
    }
    session.start(response, refusal === null ? this.#routes.find(request) : null, refusal)
    // refused, or answered before its body came: nothing more is parsed; a filter at work: not yet
    if (this.#noMore || (this.#holds & ClientHold.FILTER) !== 0) {
      if (this.#noMore && this.#receiving === session && session.settled) this.#receiving = null
      return CB_PAUSE
    }
    return CB_OK
  }

  onBody (body: Buffer): number {
    lendPiece()
    this.#meter.touch()
    if (this.deadline === 0 && this.#wait === Wait.BODY && this.#holds === 0) this.#startStretch()
    this.#receiving?.onRequestBody(body)
    return CB_OK
  }

  onMessageComplete (): number {
    const last = this.#queue[this.#queue.length - 1]
    this.#receiving = null
    if (this.#wait === Wait.BODY) {
      this.#wait = Wait.NONE
      this.deadline = 0
    }
    // answered and finished already (an answer of rp4's own, a cache hit): the next request may follow at once
    if (last === undefined) return this.#noMore ? CB_PAUSE : CB_OK
    const session = last.session
    if (!session.requestComplete || session.facts.body !== BodyKind.NONE) session.onRequestComplete()
    if (session.request.upgrade) return CB_OK // llhttp stops with PAUSED_UPGRADE next
    if (!session.request.keepAlive || this.#noMore) {
      this.#noMore = true
      return CB_PAUSE
    }
    return this.#queue.length >= this.#host.settings.maxPipelinedRequests ? CB_PAUSE : CB_OK
  }

  // ---- reading ----

  /**
   * A read into a buffer of core/read-buffers.ts: its bytes are parsed as a chunk, lent for the
   * dispatch when the buffer is this connection's own; a request body still coming may have its
   * next reads go to one.
   */
  onRead (reads: SocketReads, length: number, buffer: Buffer): void {
    const chunk = reads.begin(length, buffer)
    try {
      this.onData(chunk)
    } finally {
      reads.end(this.#receiving !== null && this.#wait !== Wait.CLOSED)
    }
  }

  onData (chunk: Buffer): void {
    this.#meter.bytes(chunk.length)
    // a cleartext socket's next reads go to buffers chosen per read (core/read-buffers.ts) instead
    // of a fresh one each: once a large request body comes, or once the connection is read a
    // second time (kept alive); a connection of one read never pays for the switch
    if (!this.#switched && !this.client.secure &&
      (++this.#streamReads >= 2 || (chunk.length >= SHARED_SIZE / 2 && this.#receiving !== null))) {
      this.#switched = true
      readOwned(this.socket)
    }
    if (this.#stash !== null || this.#holds !== 0) {
      // parsing is paused; keep the bytes in order (bounded: the socket is paused too)
      this.#stash = this.#stash === null ? copyIfLent(chunk) : Buffer.concat([this.#stash, chunk])
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
        const now = this.#startStretch()
        this.#meter.bytes(chunk.length)
        this.#end = now + this.#host.settings.timeouts.requestHead
        this.deadline = Math.min(this.deadline, this.#end)
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
    if (this.#wait !== Wait.HEAD || !this.#meter.backdate(since)) return
    this.#end = since + this.#host.settings.timeouts.requestHead
    this.deadline = clock.now
  }

  /** A defect of rp4's own surfaced on this connection: it is closed, the process goes on. */
  onInternalError (err: unknown): void {
    this.#host.clientError(new ProxyError('internal_error', `internal error: ${(err as Error).stack ?? String(err)}`, 'internal', 500, false, err), this.label)
    this.destroy()
  }

  #parseStopped (ret: number, chunk: Buffer): void {
    // kept past this read: not a view of a reused read buffer
    const rest = copyIfLent(chunk.subarray(this.#parser.errorOffset()))
    if (ret === Errno.PAUSED || ret === Errno.PAUSED_UPGRADE) {
      const last = this.#queue[this.#queue.length - 1]
      if (last !== undefined && last.session.request.upgrade && ret === Errno.PAUSED_UPGRADE) {
        // what follows an upgrade request belongs to the new protocol: forwarded only after a 101
        last.upgradeData = rest
        this.#noMore = true
        this.hold(ClientHold.UPGRADE)
        return
      }
      this.#parserPaused = true
      this.hold(ClientHold.PIPELINE)
      if (!this.#noMore) {
        if (rest.length > 0) this.#stash = rest
        // responses may have completed while this chunk was parsed: there may be room already
        if (this.#queue.length < this.#host.settings.maxPipelinedRequests) this.release(ClientHold.PIPELINE)
      }
      return
    }
    const limit = this.#parser.limitError
    const status = limit === LimitError.HEAD_TOO_LARGE || limit === LimitError.TOO_MANY_HEADERS ? 431 : limit === LimitError.URL_TOO_LONG ? 414 : 400
    const error = new ProxyError('bad_request', 'malformed request: ' + this.#parser.describeError(ret), 'downstream', status)
    this.#host.clientError(error, this.label)
    this.stopReading()
    const receiving = this.#receiving
    this.#receiving = null
    if (receiving !== null) {
      receiving.fail(error)
      return
    }
    // the broken request never became a session: answer it after those before it
    this.#respondLocally(status)
  }

  /** An error response of rp4's own for a request whose head never completed, in turn after those in flight, then close. */
  #respondLocally (status: number): void {
    this.#noMore = true
    // reported as what the client sent of it, timed from its first byte
    const partial = this.#parser.partialHead()
    const request = new RequestHead(partial.method, partial.url, 1, 1, new HeaderList(), false, false)
    const session = new Session(this.#host, this, this.#host.nextId(), request, FACTS_REFUSED, this.#parser.headStartedAt || undefined)
    const response = new H1Response(this, session)
    this.#queue.push(response)
    session.start(response, null, new ProxyError('bad_request', 'refused', 'downstream', status), false)
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

  release (reason: ClientHold): void {
    if ((this.#holds & reason) === 0) return
    this.#holds &= ~reason
    if (this.#holds === 0) {
      if (this.#wait === Wait.BODY) this.#startStretch()
      this.#resume()
    }
  }

  /** Measure the head or body from now: its rate, and the time since its last byte. */
  #startStretch (): number {
    const now = this.#meter.start()
    this.deadline = now + this.#checkEvery()
    return now
  }

  #checkEvery (): number {
    return rateCheckInterval(this.#host.settings.timeouts)
  }

  /** A head or body check: too slow or stalled gives 408, otherwise the next check is armed. Returns true when refused. */
  #tooSlow (now: number, stalled: boolean): boolean {
    const verdict = this.#meter.check(now, stalled)
    if (verdict === Verdict.OK) return false
    const what = this.#wait === Wait.HEAD ? 'request head' : 'request body'
    const reason = verdict === Verdict.STALLED ? `${what} not received in time` : `${what} slower than ${this.#host.settings.minDataRate} bytes/s`
    this.#host.clientError(new ProxyError(this.#wait === Wait.HEAD ? 'request_head_timeout' : 'request_body_timeout', reason, 'downstream', 408), this.label)
    return true
  }

  #resume (): void {
    if (this.#stash !== null || this.#parserPaused) {
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
    if (this.#holds !== 0 || this.socket.destroyed || this.#wait === Wait.CLOSED) return
    if (this.#parserPaused) {
      this.#parserPaused = false
      this.#parser.resume()
    }
    const stash = this.#stash
    this.#stash = null
    if (stash !== null) this.#parse(stash)
    if (this.#ended && !this.#noMore && this.#stash === null && !this.#parserPaused) this.#endOfInput()
    if (this.#holds === 0 && this.#stash === null && !this.socket.destroyed && (this.#wait as Wait) !== Wait.CLOSED) this.socket.resume()
  }

  // ---- writing ----

  write (data: string | Buffer): boolean {
    const socket = this.socket
    if (socket.destroyed) return true
    return send(socket, data)
  }

  /** The first response made progress: move through every response that is complete. */
  advance (): void {
    const queue = this.#queue
    while (queue.length > 0) {
      const response = queue[0]
      if (!response.takeTurn(this.socket)) return
      queue.shift()
      response.session.finish()
      if (response.upgraded) {
        this.#startTunnel(response)
        return
      }
      if (response.closeAfter) {
        this.#noMore = true
        for (const later of queue.splice(0)) {
          later.session.abort()
          later.session.finish()
        }
        break
      }
    }
    if (queue.length > 0) return
    if (this.#noMore || this.#host.closing) {
      this.#closeAfterWrites()
      return
    }
    this.#wait = Wait.IDLE
    this.#idle()
    this.release(ClientHold.PIPELINE)
  }

  #startTunnel (response: H1Response): void {
    const upstream = response.takeUpgrade()
    if (upstream === null) {
      this.destroy()
      return
    }
    // the 101 may still sit in this batch's output: it goes first
    flush(this.socket)
    const socket = this.#detach()
    if (upstream.rest.length > 0) socket.write(upstream.rest)
    flush(upstream.socket)
    if (response.upgradeData !== null && response.upgradeData.length > 0) upstream.socket.write(response.upgradeData)
    const stash = this.#stash
    if (stash !== null) upstream.socket.write(stash)
    relay(socket, upstream.socket)
  }

  /**
   * Give the socket up: to a tunnel (no listener of ours stays on it), or to a lingering close
   * (`toLinger`: the owner listeners stay, the linger becomes their owner).
   */
  #detach (toLinger = false): Socket {
    const socket = this.socket
    flush(socket)
    this.#wait = Wait.CLOSED
    clock.delete(this)
    if (!toLinger) disown(socket)
    socket.removeListener('drain', onDrain)
    this.#parser.destroy()
    this.#host.forget(this)
    socket.resume()
    return socket
  }

  /** Close now: a truncated response must show as one, so no graceful end. */
  destroy (error?: ProxyError): void {
    if (error !== undefined && this.#error === null) {
      this.#error = error
      // the client's failure is reported here, a backend's on its side; rp4's own (a drain that ran out) when the socket closes
      this.#errorReported = error.source !== 'internal'
      if (error.source === 'downstream') this.#host.clientError(error, this.label)
    }
    // what was sent before goes first: the close after it is how a truncation shows
    flush(this.socket)
    this.socket.destroy()
  }

  /**
   * The proxy drains: a connection with a request under way ends after its response (which says
   * `Connection: close`); an idle one stays open, so that a request its client is sending right
   * now is answered rather than met by a closed socket, and its next request gets that answer.
   */
  drain (): void {
    if (this.idle) return
    this.#noMore = true
  }

  /** Close if nothing is under way (the proxy is closing); otherwise after the current responses. */
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
    this.#ended = true
    // what the client sent before its FIN is still read: requests held back by the pipeline limit
    // or a filter at work wait in the stash (or in the paused parser), and are answered first
    if (!this.#noMore && (this.#stash !== null || this.#parserPaused)) return
    this.#endOfInput()
  }

  /** The client's FIN, once everything it sent before it was parsed: answer what was asked, then close. */
  #endOfInput (): void {
    this.#noMore = true
    if (this.#receiving !== null) {
      const session = this.#receiving
      this.#receiving = null
      session.fail(new ProxyError('client_aborted', 'client closed mid-request', 'downstream', 0))
      return
    }
    if (this.#queue.length === 0) sendEnd(this.socket)
  }

  onTimeout (): void {
    const now = clock.now
    const timeouts = this.#host.settings.timeouts
    if (this.#wait === Wait.BODY && this.#receiving !== null) {
      if (!this.#tooSlow(now, now - this.#meter.lastByteAt >= timeouts.requestBody)) {
        this.deadline = now + this.#checkEvery()
        return
      }
      const session = this.#receiving
      this.#receiving = null
      this.#wait = Wait.NONE
      session.fail(new ProxyError('request_body_timeout', 'request body too slow or stalled', 'downstream', 408))
      return
    }
    if (this.#wait === Wait.HEAD) {
      if (!this.#tooSlow(now, now >= this.#end)) {
        this.deadline = Math.min(now + this.#checkEvery(), this.#end)
        return
      }
      this.stopReading()
      this.#respondLocally(408)
      return
    }
    if (this.#wait === Wait.IDLE && now < this.#end) {
      // idle long enough to park; or not parkable now, and closed at the idle time's end
      if (!this.#park()) this.deadline = this.#end
      return
    }
    this.#closeAfterWrites()
  }

  /**
   * Give everything up but the socket's handle (downstream/parked.ts): only between requests,
   * with nothing read and not parsed, nothing waiting to be written, and no end either way.
   */
  #park (): boolean {
    const socket = this.socket
    if (this.#queue.length !== 0 || this.#parser.inHead || this.#stash !== null || this.#holds !== 0 || this.#parserPaused ||
      this.#noMore || this.#ended || this.#receiving !== null || this.#host.closing || hasPendingOutput(socket)) return false
    const parked = new ParkedClient(this.#host, this.#routes, this.identityHeaders, peerOf(socket), this.#end)
    // every listener of rp4's comes off first: the socket's 'close' still comes once the handle is taken
    const count = takeCount(socket)
    disown(socket, true)
    socket.removeListener('drain', onDrain)
    if (!parked.take(socket, count)) {
      // not parkable after all (the socket has something under way): back as it was
      if (count !== null) giveCount(socket, count)
      own(socket, this)
      socket.on('drain', onDrain)
      return false
    }
    this.#wait = Wait.CLOSED
    clock.delete(this)
    this.#parser.destroy()
    this.#host.forget(this)
    return true
  }

  /** Done with this client: the socket goes to a lingering close once the output is written. */
  #closeAfterWrites (): void {
    if (this.#wait === Wait.CLOSED) return
    this.#noMore = true
    this.#stash = null
    this.#holds = 0
    linger(this.#detach(true))
  }

  onDrain (): void {
    this.#queue[0]?.session.onWritable()
  }

  /** A batched write left the socket over its high-water mark: stop reading the backend feeding it. */
  onWriteBlocked (): void {
    this.#queue[0]?.session.onBlocked()
  }

  onSocketError (err: Error): void {
    if (this.#error === null) {
      this.#error = new ProxyError('client_error', `client ${this.label}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, 'downstream', 0, false, err)
    }
  }

  onClose (): void {
    clock.delete(this)
    this.#wait = Wait.CLOSED
    this.#parser.destroy()
    this.#host.forget(this)
    const queue = this.#queue.splice(0)
    if (queue.length > 0 && this.#error === null) {
      this.#error = new ProxyError('client_closed', `client ${this.label} closed with a request in flight`, 'downstream', 0)
    }
    if (this.#error !== null && !this.#errorReported && (queue.length > 0 || this.#error.code === 'client_error')) {
      this.#host.clientError(this.#error, this.label)
    }
    for (const response of queue) {
      response.session.abort()
      response.session.finish()
    }
  }
}

// Each listener contains what a defect could throw to this connection: no exception reaches the process.
function onDrain (this: OwnedSocket): void { try { this[kOwner].onDrain() } catch (err) { this[kOwner].onInternalError(err) } }
function resumeParsing (conn: H1Connection): void { conn.resumeParsing() }
