/**
 * One request, from its parsed head to the last byte of its response, through a fixed list of
 * phases (phases.ts): request received → route chosen → request filters → action (proxy, respond,
 * redirect) → upstream request → response head → response body → logged. It keeps the request's
 * context for the filters, and one failure path (`fail`) that turns any failure into rp4's own
 * response, or a cut connection when part of a response already went out.
 *
 * The session talks to a downstream (a ResponseSink, and a Downstream for holding the client's
 * input) and to the upstream layer (it implements UpstreamRequest); it never sees a socket.
 */
import { clock, httpNow, type Timed } from '../core/clock.js'
import { ProxyError } from '../core/errors.js'
import { keepLoan, settlePieces, unlent } from '../core/loan.js'
import { CB_ERROR, CB_OK, HeadersResult } from '../http1/llhttp.js'
import type { MessageHead } from '../http1/head.js'
import { encodeRequestHead } from '../http1/encode.js'
import { encodeProxyHeader } from '../http/proxy-header.js'
import { errorResponse, reasonOf } from '../http/errors.js'
import { forwardResponse, HOST_PLACEHOLDER, type ForwardContext } from '../http/forwarding.js'
import { forwardIdentity } from './identity.js'
import { HeaderList, type FieldBlock } from '../http/headers.js'
import { cookieValue } from '../http/fields.js'
import { ResponseHead, type RequestHead } from '../http/message.js'
import { BodyKind, type RequestFacts } from '../http/validate.js'
import type { Group } from '../upstream/group.js'
import type { HashBy } from '../model/model.js'
import { DispatchState, ReadHold, type RequestChannel, type UpstreamRequest } from '../upstream/handler.js'
import type { Transform } from 'node:stream'
import { BodyPipeline, isReadable, LocalSource, SourceHold, type LocalBody, type PipelineOwner, type SourceOwner } from './body.js'
import type { ClientInfo, FilterChain, FilterSession, HeaderInit, RouteHandler, Verdict } from './filter.js'
import { Phase } from './phases.js'
import { ClientHold, type Downstream, type IdentityHeaders, type ResponseSink, type UpgradedUpstream } from './sink.js'

/** Request fields a TRACE answered by rp4 does not echo. */
const CREDENTIALS: ReadonlySet<string> = new Set(['authorization', 'proxy-authorization', 'cookie'])

/** What a route is to a session: compiled at configuration time. */
export interface SessionRoute {
  readonly name: string
  readonly action: SessionAction
  readonly chain: FilterChain
  /** Largest request body, bytes; 0: no limit. */
  readonly maxBodySize: number
  readonly responseTimeout: number
  readonly responseTotalTimeout: number
  /** `Strict-Transport-Security` over TLS, instead of the listener's; null: the listener's. */
  readonly hsts: string | null
  /** Only a client with a verified certificate is served; others get 403. */
  readonly requireClientCertificate: boolean
}

export type SessionAction =
  | Readonly<{ kind: 'proxy', group: Group }>
  | Readonly<{ kind: 'respond', status: number, headers: ReadonlyArray<readonly [string, string]>, body: Buffer }>
  | Readonly<{ kind: 'redirect', location: string, status: number }>
  /** A handler answers (static files); when it has nothing, `fallback` gets the request (null: 404). */
  | Readonly<{ kind: 'handler', handler: RouteHandler, fallback: Group | null }>

/** What a session needs from the proxy around it. */
export interface SessionHost {
  forwardContext (ip: string, secure: boolean): ForwardContext
  readonly via: string
  requestStarted (session: Session): void
  responseDone (session: Session): void
  clientError (error: ProxyError, client: string): void
  upstreamError (error: ProxyError, target: string): void
  /** rp4's own trouble (here: a filter that failed), tied to no client's fault. */
  proxyError (error: ProxyError): void
  /** Somebody reads the upstream timings (an access log): only then are they taken. */
  readonly timing: boolean
}

const enum Response { NONE, STREAMING, DONE }
/** A request whose client left: no; its response still being read for a transform (abort); read to its end. */
const enum Orphan { NO, READING, DONE }

/** A request body up to this size is read and dropped after rp4 answered early, keeping the connection. */
const SKIPPABLE_BODY = 64 * 1024
/** Request bytes held while no upstream connection is attached; beyond it the client is paused. */
const PENDING_LIMIT = 64 * 1024

export class Session implements UpstreamRequest, FilterSession, PipelineOwner, SourceOwner {
  readonly id: number
  readonly request: RequestHead
  readonly facts: RequestFacts
  readonly started: number
  readonly #host: SessionHost
  readonly #downstream: Downstream
  #sink: ResponseSink | null = null
  #route: SessionRoute | null = null
  #ctx: Record<string, unknown> | null = null
  #phase = Phase.REQUEST

  /** The connection carrying this request, once attached. */
  upstream: RequestChannel | null = null
  /** Read holds this session put on `upstream`: lifted whenever it leaves that connection. */
  #upstreamHolds = 0
  readonly dispatchState = new DispatchState()
  /** The request head as bytes for the upstream hop, encoded once (a retry sends the same). */
  #encoded = ''

  #fromBackend = false

  /** The client has sent the whole request. */
  requestComplete: boolean
  /** The whole request has been written upstream. */
  requestSent = false
  #pending: Buffer[] | null = null
  #pendingBytes = 0
  #bodyBytes = 0
  /** Response body bytes handed to the client. */
  bytesOut = 0
  /** performance.now() at dispatch, at a connection attached, at the response head: 0 when not taken (timing off, or it did not happen). */
  #dispatchedAt = 0
  #attachedAt = 0
  #headAt = 0

  #response = Response.NONE
  /** The backend's body is dropped (a filter answered in its place). */
  #discard = false
  /** What a filter answered with (`respond`), to be sent once the hooks are done. */
  #local: { status: number, headers: HeaderInit | undefined, body: LocalBody | undefined, fields: string[] | undefined, block: FieldBlock | null } | null = null
  /** Transforms the response hooks asked for (`transformBody`), until the pipeline is built. */
  #transforms: Transform[] | null = null
  /** The body's transforms, for a response that has some; null on the plain path. */
  #pipeline: BodyPipeline | null = null
  /** A local body being pulled (a file, a cache entry); null otherwise. */
  #source: LocalSource | null = null
  /** A local response streams its body: `#localClose` is the close decided with its head. */
  #localStream = false
  #localClose = false
  #responseHead: ResponseHead | null = null
  status = 0
  #finished = false
  /** Whether the client left while a transform still wanted the body (`abort`). */
  #orphan = Orphan.NO
  #logged = false
  /** Seconds for Retry-After on a 429. */
  #retryAfter = 0
  #error: ProxyError | null = null
  #tunnel: RequestChannel | null = null
  #upgradeRest: Buffer | null = null

  /** @param started when the request began, when that was before now (a head refused before it was complete) */
  constructor (host: SessionHost, downstream: Downstream, id: number, request: RequestHead, facts: RequestFacts, started = clock.refresh()) {
    this.#host = host
    this.#downstream = downstream
    this.id = id
    this.request = request
    this.facts = facts
    this.started = started
    this.requestComplete = facts.body === BodyKind.NONE
  }

  // ---- FilterSession ----

  get client (): ClientInfo { return this.#downstream.client }
  /** `Strict-Transport-Security` for this request's response: the route's, else the listener's; never over cleartext. */
  get hsts (): string | null {
    const tls = this.#downstream.client.tls
    return tls === null ? null : this.#route?.hsts ?? tls.hsts
  }
  get route (): string { return this.#route?.name ?? '' }
  get ctx (): Record<string, unknown> { return (this.#ctx ??= {}) }
  get response (): ResponseHead | null { return this.#responseHead }
  get target (): string | null { return this.dispatchState.target?.authority ?? null }
  /** The error this request ended with, if any. */
  get error (): ProxyError | null { return this.#error }
  /** Request body bytes read from the client. */
  get bytesIn (): number { return this.#bodyBytes }
  get retries (): number { const state = this.dispatchState; return state.retries + (state.retried ? 1 : 0) }
  /** ms from dispatch to a connection attached, and to the response head; -1 when it did not happen or timing is off. */
  get upstreamConnect (): number { return this.#attachedAt === 0 ? -1 : this.#attachedAt - this.#dispatchedAt }
  get upstreamFirstByte (): number { return this.#headAt === 0 ? -1 : this.#headAt - this.#dispatchedAt }
  tlsInfo (): Readonly<{ version: string, sni: string, alpn: string }> { return this.#downstream.tlsInfo() }

  proxyHeader (version: 'v1' | 'v2'): Buffer {
    const { source, destination } = this.#downstream.addresses()
    const tls = this.#downstream.tlsInfo()
    return encodeProxyHeader(version === 'v1' ? 1 : 2, source, destination, { alpn: tls.alpn, authority: tls.sni })
  }

  /**
   * The downstream found the response body's length different from its Content-Length (`short`
   * bytes missing, `excess` bytes dropped): a body filter changed the body and left the header.
   * Reported as that route's filters' failure; the downstream closes the connection.
   */
  lengthMismatch (short: number, excess: number): void {
    const names = this.#route?.chain.onResponseBody?.map(f => f.name ?? '(unnamed)').join(', ') ?? '(none)'
    const error = new ProxyError('filter_error', `response to ${this.request.method} ${this.request.target}: the body ${short > 0 ? `ended ${short} bytes short of` : `ran ${excess} bytes past`} its Content-Length (body filters: ${names}; one that changes the length must remove Content-Length in onResponse)`, 'internal', 0)
    this.#host.proxyError(error)
  }

  /** True while the response hooks run on the backend's own head (not on an answer of rp4's). */
  get responseFromBackend (): boolean { return this.#fromBackend }

  /** The forwarding headers' facts for this request's client. */
  forwardContext (): ForwardContext {
    const client = this.#downstream.client
    return this.#host.forwardContext(client.ip, client.secure)
  }

  /** The client certificate's identity headers on the upstream request, where the listener asks for them (identity.ts). */
  forwardIdentity (head: RequestHead): void {
    const identity = this.#downstream.identityHeaders
    if (identity !== null) forwardIdentity(head.headers, identity, this.#downstream.client.tls?.certificate ?? null)
  }

  respond (status: number, headers?: HeaderInit, body?: LocalBody): Verdict {
    if (!Number.isInteger(status) || status < 200 || status > 999) throw new TypeError(`respond: status ${status} is not a final status`)
    if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body) && !isReadable(body)) throw new TypeError('respond: the body must be a string, a Buffer or a Readable')
    const previous = this.#local?.body
    if (isReadable(previous) && previous !== body) previous.destroy()
    this.#local = { status, headers, body, fields: undefined, block: null }
    return 'responded'
  }

  /**
   * `respond`, with the fields as a flat `[name, value, …]` array that rp4 itself checked already
   * (a stored response's own fields, which were a parsed response's or went through HeaderList's
   * checks): taken as they are, not checked field by field again. Not for what a filter of the
   * user's supplies: that goes through `respond`.
   * @param block the field block `fields` begins with (a copy of its fields, then any more), whose kept encoding the head then reuses
   */
  respondFields (status: number, fields: string[], body?: LocalBody, block: FieldBlock | null = null): Verdict {
    const verdict = this.respond(status, undefined, body)
    const local = this.#local!
    local.fields = fields
    local.block = block
    return verdict
  }

  /**
   * Send `head` (a GET without a body) through this route on its own, as if another client had:
   * the route's filters see it and its response, which goes nowhere else (a cache refreshing an
   * entry in the background). The client of this request is not held for it.
   */
  spawn (head: RequestHead): void {
    const route = this.#route
    if (route === null) return
    const facts: RequestFacts = { invalid: '', body: BodyKind.NONE, contentLength: -1, expectContinue: false, needsHost: head.headers.get('host') === undefined }
    const session = new Session(this.#host, new DetachedDownstream(this.#downstream), this.id, head, facts)
    session.start(new DiscardSink(session), route, null, false)
  }

  transformBody (transform: Transform): void {
    if (this.settled) {
      transform.destroy()
      return
    }
    (this.#transforms ??= []).push(transform)
  }

  // ---- UpstreamRequest ----

  get pipelinable (): boolean {
    const method = this.request.method
    return this.facts.body === BodyKind.NONE && !this.request.upgrade && (method === 'GET' || method === 'HEAD')
  }

  get replayable (): boolean {
    const method = this.request.method
    return this.requestComplete && this.facts.body === BodyKind.NONE &&
      (method === 'GET' || method === 'HEAD' || method === 'OPTIONS' || method === 'PUT' || method === 'DELETE' || method === 'TRACE')
  }

  get resendable (): boolean { return this.requestComplete && this.facts.body === BodyKind.NONE && !this.request.upgrade }

  get finished (): boolean { return this.#finished }
  get settled (): boolean { return this.#finished || this.#response === Response.DONE }
  get responseStarted (): boolean { return this.#response !== Response.NONE }
  get responseTimeout (): number {
    const route = this.#route!.responseTimeout
    const perTry = this.dispatchState.perTryTimeout
    return perTry > 0 && perTry < route ? perTry : route
  }
  get responseTotalTimeout (): number { return this.#route!.responseTotalTimeout }

  // ---- phase: request received ----

  /**
   * The head is parsed and checked by the downstream. `route` is the route chosen (null: none
   * matched). `refusal`: the downstream refuses the request itself (a malformed head, a method it
   * does not serve), with that error's status; `report`: the refusal is not reported yet.
   */
  start (sink: ResponseSink, route: SessionRoute | null, refusal: ProxyError | null, report = true): void {
    this.#sink = sink
    this.#route = route
    this.#host.requestStarted(this)
    if (refusal !== null) {
      if (!report) return this.fail(refusal)
      return this.refuse(refusal)
    }
    const tls = this.#downstream.client.tls
    if (tls !== null && tls.refusal !== null) {
      return this.refuse(new ProxyError('client_certificate_refused', `no verified client certificate: ${tls.refusal}`, 'downstream', 403))
    }
    if (route === null) return this.refuse(new ProxyError('no_route', `no route for ${this.request.host || '(no host)'} ${this.request.path}`, 'downstream', 404))
    if (route.requireClientCertificate && tls?.certificate == null) {
      return this.refuse(new ProxyError('client_certificate_required', `route ${route.name} requires a verified client certificate`, 'downstream', 403))
    }
    const max = route.maxBodySize
    if (max > 0 && this.facts.contentLength > max) {
      return this.refuse(new ProxyError('body_too_large', `request body of ${this.facts.contentLength} bytes over the limit of ${max}`, 'downstream', 413))
    }
    this.#requestHooks(0)
  }

  /** Run the route's request hooks from `index`; a promise holds the client until it settles. */
  #requestHooks (index: number): void {
    const hooks = this.#route!.chain.onRequest
    if (hooks !== null) {
      for (let i = index; i < hooks.length; i++) {
        let verdict: Verdict | Promise<Verdict>
        try {
          verdict = hooks[i].onRequest!(this)
        } catch (err) {
          return this.#filterFailed(hooks[i].name, err)
        }
        if (verdict === 'continue') continue
        if (verdict === 'responded') return this.#afterRequestHooks()
        if (verdict !== null && typeof verdict === 'object' && typeof verdict.then === 'function') {
          this.#downstream.hold(ClientHold.FILTER)
          const name = hooks[i].name
          const wait = new FilterWait(this.#route!.responseTimeout, () => {
            // a hook's I/O that never answers must not hold the client forever
            this.#downstream.release(ClientHold.FILTER)
            if (this.settled) return
            const error = new ProxyError('filter_timeout', `filter ${name ?? '(unnamed)'} on ${this.request.method} ${this.request.target}: no answer within ${this.#route!.responseTimeout} ms`, 'internal', 504)
            this.#host.proxyError(error)
            this.fail(error)
          })
          verdict.then(result => {
            if (!wait.settle()) return
            this.#downstream.release(ClientHold.FILTER)
            if (this.settled) return
            if (result === 'continue') this.#requestHooks(i + 1)
            else if (result === 'responded') this.#afterRequestHooks()
            else this.#filterFailed(name, new TypeError(`onRequest resolved to ${String(result)}, not 'continue' or 'responded'`))
          }, (err: unknown) => {
            if (!wait.settle()) return
            this.#downstream.release(ClientHold.FILTER)
            if (!this.settled) this.#filterFailed(name, err)
          })
          return
        }
        return this.#filterFailed(hooks[i].name, new TypeError(`onRequest returned ${String(verdict)}, not 'continue' or 'responded'`))
      }
    }
    this.#afterRequestHooks()
  }

  #filterFailed (name: string | undefined, err: unknown): void {
    const error = new ProxyError('filter_error', `filter ${name ?? '(unnamed)'} on ${this.request.method} ${this.request.target} from ${this.#downstream.client.label}: ${(err as Error)?.message ?? String(err)}`, 'internal', 500, false, err)
    this.#host.proxyError(error)
    this.fail(error)
  }

  // ---- phase: action ----

  #afterRequestHooks (): void {
    if (this.#local !== null) return this.#sendLocal()
    const action = this.#route!.action
    switch (action.kind) {
      case 'proxy': return this.#proxy(action.group)
      case 'respond':
        this.#local = { status: action.status, headers: action.headers, body: action.body, fields: undefined, block: null }
        return this.#sendLocal()
      case 'redirect': {
        const location = this.#fillLocation(action.location)
        // an HTTP/1.0 request without Host: `https:///path` would be no URL at all
        if (location === null) return this.refuse(new ProxyError('bad_request', 'a redirect to $host for a request without Host', 'downstream', 400))
        this.#local = { status: action.status, headers: [['Location', location]], body: undefined, fields: undefined, block: null }
        return this.#sendLocal()
      }
      case 'handler': return this.#runHandler(action.handler, action.fallback)
    }
  }

  #runHandler (handler: RouteHandler, fallback: Group | null): void {
    let verdict: Verdict | Promise<Verdict>
    try {
      verdict = handler.handle(this)
    } catch (err) {
      return this.#filterFailed(handler.name, err)
    }
    if (verdict === 'continue' || verdict === 'responded') return this.#afterHandler(handler, verdict, fallback)
    if (verdict !== null && typeof verdict === 'object' && typeof verdict.then === 'function') {
      this.#downstream.hold(ClientHold.FILTER)
      verdict.then(result => {
        this.#downstream.release(ClientHold.FILTER)
        if (!this.settled) this.#afterHandler(handler, result, fallback)
      }, (err: unknown) => {
        this.#downstream.release(ClientHold.FILTER)
        if (!this.settled) this.#filterFailed(handler.name, err)
      })
      return
    }
    this.#filterFailed(handler.name, new TypeError(`handle returned ${String(verdict)}, not 'continue' or 'responded'`))
  }

  #afterHandler (handler: RouteHandler, verdict: Verdict, fallback: Group | null): void {
    if (verdict === 'responded' && this.#local !== null) return this.#sendLocal()
    if (verdict !== 'continue') return this.#filterFailed(handler.name, new TypeError(`handle gave ${String(verdict)} without an answer`))
    if (fallback !== null) return this.#proxy(fallback)
    // nothing to serve is an ordinary answer, not the client's fault: not reported as an error
    this.fail(new ProxyError('not_found', `${handler.name}: nothing at ${this.request.path}`, 'downstream', 404))
  }

  /** The redirect target with its placeholders filled in; null when it needs a host the request did not give. */
  #fillLocation (template: string): string | null {
    if (!template.includes('$')) return template
    const request = this.request
    let missing = false
    const location = template.replace(/\$(scheme|hostname|host|path|query)/g, (_, name: string) => {
      switch (name) {
        case 'scheme': return this.#downstream.client.secure ? 'https' : 'http'
        case 'host': {
          const host = request.headers.get('host')?.trim() ?? ''
          if (host === '') missing = true
          return host
        }
        case 'hostname': {
          const host = request.host
          if (host === '') missing = true
          return host
        }
        case 'path': return request.path
        default: return request.query
      }
    })
    return missing ? null : location
  }

  // ---- phase: upstream request ----

  #proxy (group: Group): void {
    const request = this.request
    // RFC 9110 7.6.2: TRACE and OPTIONS count their hops (a string compare, for the others)
    if ((request.method === 'OPTIONS' || request.method === 'TRACE') && this.#lastHop(request)) return
    this.#phase = Phase.UPSTREAM
    const hooks = this.#route!.chain.onUpstreamRequest
    if (hooks !== null) {
      for (let i = 0; i < hooks.length; i++) {
        try {
          hooks[i].onUpstreamRequest!(this, request)
        } catch (err) {
          return this.#filterFailed(hooks[i].name, err)
        }
      }
    }
    this.#encoded = encodeRequestHead(request)
    if (this.#host.timing) this.#dispatchedAt = performance.now()
    this.#dispatching = true
    group.dispatch(this)
    this.#dispatching = false
  }

  /**
   * Max-Forwards on a TRACE or OPTIONS request that would be forwarded (RFC 9110 7.6.2): 0 makes
   * rp4 the final recipient, which answers itself (true); any other count is passed on one less.
   * OPTIONS gets a 200 without content; TRACE gets its request back as `message/http`, without
   * the fields that carry credentials (9.3.8: Authorization, Proxy-Authorization, Cookie). A
   * value that is no count, or a count past 15 digits (no number counts it down exactly), is
   * passed on as it is; of several fields the first counts, and one goes on.
   */
  #lastHop (request: RequestHead): boolean {
    const headers = request.headers
    const at = headers.indexOf('max-forwards')
    if (at === -1) return false
    const value = headers.valueAt(at).trim()
    if (!/^[0-9]{1,15}$/.test(value)) return false
    const hops = Number(value)
    if (hops > 0) {
      headers.set('Max-Forwards', String(hops - 1))
      return false
    }
    if (request.method === 'OPTIONS') {
      this.#local = { status: 200, headers: undefined, body: undefined, fields: undefined, block: null }
    } else {
      let echo = `${request.method} ${request.target} HTTP/${request.versionMajor}.${request.versionMinor}\r\n`
      const raw = headers.raw
      for (let i = 0; i < raw.length; i += 2) {
        if (!CREDENTIALS.has(raw[i].toLowerCase())) echo += `${raw[i]}: ${raw[i + 1]}\r\n`
      }
      this.#local = { status: 200, headers: [['Content-Type', 'message/http']], body: echo + '\r\n', fields: undefined, block: null }
    }
    this.#sendLocal()
    return true
  }

  /** Within group.dispatch(): a connection attached now (an idle one from the pool) took no time to get. */
  #dispatching = false

  /** The hash policy's key: the client's IP, the request target, a header's value or a cookie's; null when absent. */
  hashKey (by: HashBy, name: string): string | null {
    switch (by) {
      case 'ip': return this.#downstream.client.ip
      case 'uri': return this.request.target
      case 'header': return this.request.headers.get(name) ?? null
      case 'cookie': return cookieValue(this.request.headers, name)
    }
  }

  /** Given a connection: write the request head and whatever of the body already arrived. */
  attach (conn: RequestChannel): void {
    this.upstream = conn
    if (this.#dispatchedAt !== 0) this.#attachedAt = this.#dispatching ? this.#dispatchedAt : performance.now()
    conn.writeHead(this.facts.needsHost ? this.#encoded.replace(HOST_PLACEHOLDER, conn.target.authority) : this.#encoded)
    const pending = this.#pending
    if (pending !== null) {
      this.#pending = null
      this.#pendingBytes = 0
      const chunked = this.facts.body === BodyKind.CHUNKED
      for (let i = 0; i < pending.length; i++) conn.writeBody(pending[i], chunked)
      this.#downstream.release(ClientHold.PENDING)
    }
    if (this.requestComplete) this.#endRequest(conn)
  }

  onRequestBody (body: Buffer): void {
    const limit = this.#route?.maxBodySize ?? 0
    this.#bodyBytes += body.length
    if (limit > 0 && this.#bodyBytes > limit) {
      // a chunked body can only be measured as it comes: the request is cut off here
      if (this.#response === Response.NONE) this.refuse(new ProxyError('body_too_large', `request body over the limit of ${limit} bytes`, 'downstream', 413))
      return
    }
    if (this.#response === Response.DONE) return // answered early: the rest of the body is dropped
    const conn = this.upstream
    if (conn === null) {
      // kept as views of the client's chunks until a connection is attached (copies of a reused read buffer's)
      (this.#pending ??= []).push(unlent(body))
      this.#pendingBytes += body.length
      if (this.#pendingBytes >= PENDING_LIMIT) this.#downstream.hold(ClientHold.PENDING)
      return
    }
    if (!conn.writeBody(body, this.facts.body === BodyKind.CHUNKED)) this.#downstream.hold(ClientHold.UPSTREAM_FULL)
  }

  onRequestComplete (): void {
    this.requestComplete = true
    const conn = this.upstream
    if (conn !== null && !this.requestSent) this.#endRequest(conn)
  }

  onUpstreamDrain (): void {
    this.#downstream.release(ClientHold.UPSTREAM_FULL)
  }

  onUpstreamWriteBlocked (): void {
    this.#downstream.hold(ClientHold.UPSTREAM_FULL)
  }

  #endRequest (conn: RequestChannel): void {
    conn.endBody(this.facts.body === BodyKind.CHUNKED)
    this.requestSent = true
    this.#downstream.release(ClientHold.UPSTREAM_FULL)
    if (this.#response === Response.NONE) conn.armResponseTimeoutIfSent()
  }

  // ---- phase: response head ----

  onResponseHead (message: MessageHead, untilClose: boolean): number {
    if (this.#finished) return CB_ERROR
    if (this.#dispatchedAt !== 0 && this.#headAt === 0) this.#headAt = performance.now()
    const status = message.status
    if (status < 100) {
      // `099` parses, but is no status: as an interim response it would leave the client waiting
      this.upstream?.destroy(new ProxyError('bad_response', `backend answered with status ${status}`, 'upstream', 502))
      return CB_ERROR
    }
    if (status < 200 && status !== 101) {
      // interim responses mean something only to an HTTP/1.1 client: the sink decides
      const head = new ResponseHead(status, message.reason, new HeaderList(message.headers), message.versionMajor, message.versionMinor)
      forwardResponse(head, this.#host.via)
      this.#sink!.interim(head)
      return HeadersResult.CONTINUE
    }
    if (status === 101 && !this.request.upgrade) {
      this.upstream?.destroy(new ProxyError('bad_response', 'backend switched protocols without an upgrade request', 'upstream', 502))
      return CB_ERROR
    }
    const state = this.dispatchState
    state.responded(status, clock.now)
    // given up for another target: the connection closes under this request and the group sends it again
    if (status >= 500 && state.owner !== null && state.owner.retryOnStatus(this, status)) return CB_ERROR
    const head = new ResponseHead(status, message.reason, new HeaderList(message.headers), message.versionMajor, message.versionMinor)
    if (state.setCookie !== null) head.headers.append('Set-Cookie', this.#downstream.client.secure ? state.setCookie + '; Secure' : state.setCookie)
    this.#response = Response.STREAMING
    this.#phase = Phase.RESPONSE
    this.#fromBackend = true
    const passed = this.#responseHooks(head)
    this.#fromBackend = false
    if (!passed) return CB_ERROR
    if (this.#local !== null) {
      // a filter answered in the backend's place: its body is read and dropped (and so are the transforms asked for it)
      this.#dropTransforms()
      this.#discard = true
      this.#sendLocal()
      return this.request.method === 'HEAD' ? HeadersResult.SKIP_BODY : HeadersResult.CONTINUE
    }
    // a response hook may have changed it (the cache answers bytes=0- with the whole response as a 206)
    this.status = head.status
    this.#responseHead = head
    if (this.#transforms !== null) this.#buildPipeline(head)
    // an upgrade the backend declined: that connection cannot carry another request; nor can one
    // whose request body is still coming (an early answer to an upload): the client is told so
    this.#sink!.head(head, untilClose, status !== 101 && (this.request.upgrade || !this.requestComplete))
    if (status === 101) return HeadersResult.UPGRADE
    return this.request.method === 'HEAD' ? HeadersResult.SKIP_BODY : HeadersResult.CONTINUE
  }

  /** The route's response hooks on `head`. False when one threw (the request has failed). */
  #responseHooks (head: ResponseHead): boolean {
    const hooks = this.#route?.chain.onResponse ?? null
    if (hooks === null) return true
    const previous = this.#responseHead
    this.#responseHead = head
    for (let i = 0; i < hooks.length; i++) {
      try {
        hooks[i].onResponse!(this, head)
      } catch (err) {
        this.#responseHead = previous
        this.#response = Response.NONE
        this.#dropTransforms()
        this.#filterFailed(hooks[i].name, err)
        return false
      }
      if (this.#local !== null) break
    }
    return true
  }

  // ---- phase: response body ----

  onResponseBody (chunk: Buffer): number {
    // a response answered in the backend's place may be complete already: its body is still read, so that the connection can be reused
    if (this.#discard) {
      settlePieces()
      return CB_OK
    }
    if (this.#finished) return CB_ERROR
    if (!this.#deliver(chunk)) this.#holdUpstream(ReadHold.DOWNSTREAM)
    return CB_OK
  }

  /** A piece of the body through the body hooks, then the transforms or the client. False: the client is full. */
  #deliver (chunk: Buffer): boolean {
    let body: Buffer | null = chunk
    const hooks = this.#route?.chain.onResponseBody ?? null
    // filters and transforms may keep what they are given: the backend's read buffer is not read into again
    if (hooks !== null || this.#pipeline !== null) keepLoan()
    if (hooks !== null) {
      for (let i = 0; i < hooks.length && body !== null; i++) body = hooks[i].onResponseBody!(this, body)
      if (body === null || body.length === 0) return true
    }
    if (this.#pipeline !== null) {
      this.#pipeline.write(body)
      return true // a full transform pauses the producer itself (pauseInput)
    }
    // what reaches the client is counted (nginx's $body_bytes_sent): after the transforms, when there are some
    this.bytesOut += body.length
    return this.#sink!.body(body)
  }

  onResponseComplete (): void {
    if (this.#discard) {
      this.#leaveUpstream() // the local answer already ended the response
      return
    }
    if (this.#finished) return
    this.#leaveUpstream()
    this.#endBody()
  }

  /** The producer is done: the end hooks, then the transforms flush, or the response ends now. */
  #endBody (): void {
    const hooks = this.#route?.chain.onResponseEnd ?? null
    if (hooks !== null) {
      for (let i = 0; i < hooks.length; i++) {
        let piece: Buffer | null
        try {
          piece = hooks[i].onResponseEnd!(this)
        } catch (err) {
          return this.#filterFailed(hooks[i].name, err)
        }
        if (piece === null || piece.length === 0) continue
        if (this.#pipeline !== null) this.#pipeline.write(piece)
        else {
          this.bytesOut += piece.length
          this.#sink!.body(piece)
        }
      }
    }
    if (this.#pipeline !== null) return this.#pipeline.end()
    this.#response = Response.DONE
    // the rest of the request cannot be skipped safely: the connection closes after this response
    this.#sink!.end(this.#localStream ? this.#localClose : !this.requestComplete)
  }

  // ---- body transforms (PipelineOwner) and local sources (SourceOwner) ----

  #buildPipeline (head: ResponseHead): void {
    const transforms = this.#transforms!
    this.#transforms = null
    const status = head.status
    if (this.request.method === 'HEAD' || status === 204 || status === 304 || status < 200) {
      for (let i = 0; i < transforms.length; i++) transforms[i].destroy()
      return
    }
    this.#pipeline = new BodyPipeline(this, transforms)
  }

  #dropTransforms (): void {
    const transforms = this.#transforms
    if (transforms === null) return
    this.#transforms = null
    for (let i = 0; i < transforms.length; i++) transforms[i].destroy()
  }

  pipelineBody (chunk: Buffer): boolean {
    if (this.#finished || this.#orphan !== Orphan.NO) return true
    this.bytesOut += chunk.length
    return this.#sink!.body(chunk)
  }

  pipelineEnd (): void {
    this.#pipeline = null
    if (this.#finished || this.#response === Response.DONE) return
    this.#response = Response.DONE
    this.#sink!.end(this.#localStream ? this.#localClose : !this.requestComplete)
  }

  pipelineError (err: Error): void {
    this.#pipeline = null
    const error = new ProxyError('transform_error', `body transform on ${this.request.method} ${this.request.target}: ${err.message}`, 'internal', 502, false, err)
    this.#host.proxyError(error)
    this.fail(error)
  }

  pauseInput (): void {
    if (this.#source !== null) this.#source.hold(SourceHold.TRANSFORM)
    else this.#holdUpstream(ReadHold.TRANSFORM)
  }

  resumeInput (): void {
    if (this.#source !== null) this.#source.release(SourceHold.TRANSFORM)
    else this.#releaseUpstream(ReadHold.TRANSFORM)
  }

  sourceData (chunk: Buffer): void {
    if (this.#finished) return
    if (!this.#deliver(chunk)) this.#source?.hold(SourceHold.DOWNSTREAM)
  }

  sourceEnd (): void {
    this.#source = null
    if (this.#finished || this.#response === Response.DONE) return
    this.#endBody()
  }

  sourceError (err: Error): void {
    this.#source = null
    const error = new ProxyError('local_body_error', `reading the body of ${this.request.method} ${this.request.target}: ${err.message}`, 'internal', 500, false, err)
    this.#host.proxyError(error)
    this.fail(error)
  }

  /** The backend accepted the upgrade; `rest` is what it sent after the 101 head. */
  onUpgraded (rest: Buffer): void {
    // nothing more is parsed on that connection: the tunnel reads it once the 101 is out
    this.upstream!.hold(ReadHold.TUNNEL)
    this.#tunnel = this.#leaveUpstream()
    this.#upgradeRest = rest
    this.#response = Response.DONE
    this.#sink!.upgrade(() => this.#takeUpgrade())
  }

  #takeUpgrade (): UpgradedUpstream | null {
    const conn = this.#tunnel
    const rest = this.#upgradeRest
    this.#tunnel = null
    if (conn === null || rest === null) return null
    return { socket: conn.detach(), rest }
  }

  // ---- output backpressure, as the downstream reports it ----

  /** The downstream can take more of this response (its turn came, or the client drained). */
  onWritable (): void {
    if (this.#pipeline !== null) this.#pipeline.resume()
    else if (this.#source !== null) this.#source.release(SourceHold.DOWNSTREAM)
    else this.#releaseUpstream(ReadHold.DOWNSTREAM)
  }

  /** The client's socket went over its mark: stop reading the backend. */
  onBlocked (): void {
    if (this.#pipeline !== null) this.#pipeline.pause()
    else if (this.#source !== null) this.#source.hold(SourceHold.DOWNSTREAM)
    else this.#holdUpstream(ReadHold.DOWNSTREAM)
  }

  // ---- rp4's own answers ----

  /** Answer with what `respond` or the route's action set: the route's response hooks see it too. */
  #sendLocal (): void {
    const local = this.#local!
    this.#local = null
    const list = new HeaderList(local.fields, local.block)
    const headers = local.headers
    // a block's fields hold no framing field when it says so: the searches below start after them
    const from = local.block !== null && !local.block.framing ? local.block.fields.length >> 1 : 0
    try {
      // checked as they are added: a CR or LF from a filter must not split the response
      if (Array.isArray(headers)) for (const [name, value] of headers as ReadonlyArray<readonly [string, string]>) list.append(name, value)
      else if (headers !== undefined) for (const [name, value] of Object.entries(headers)) list.append(name, value)
    } catch (err) {
      return this.#filterFailed('respond', err)
    }
    const given = local.body
    const stream = isReadable(given) ? given : null
    const body = given === undefined || stream !== null ? EMPTY : typeof given === 'string' ? Buffer.from(given) : given as Buffer
    const head = new ResponseHead(local.status, reasonOf(local.status), list)
    list.delete('Transfer-Encoding', from)
    // a stream is framed by the Content-Length given, or chunked; a whole body by its length,
    // except where the length given describes a body not sent (HEAD, 304)
    const describes = body.length === 0 && (this.request.method === 'HEAD' || local.status === 304) && list.indexOf('content-length', from) !== -1
    if (stream === null && !describes && local.status !== 304 && local.status !== 204) list.set('Content-Length', String(body.length), from)
    if (this.#phase !== Phase.RESPONSE) {
      // hooks that answer in the response phase have had their turn; an answer from the request side goes through them now
      this.#response = Response.STREAMING
      if (!this.#responseHooks(head)) {
        stream?.destroy()
        return
      }
      const again = this.#local as { body: LocalBody | undefined } | null
      if (again !== null) {
        if (again.body !== stream) stream?.destroy()
        this.#dropTransforms()
        return this.#sendLocal()
      }
    }
    this.#phase = Phase.DONE
    if (stream === null && this.#transforms === null) return this.#respondWith(head, body)
    this.#respondStreaming(head, stream, body)
  }

  /** A local answer whose body is pulled from a stream, or passes through transforms. */
  #respondStreaming (head: ResponseHead, stream: import('node:stream').Readable | null, body: Buffer): void {
    const sink = this.#sink!
    dated(head)
    this.status = head.status
    this.#responseHead = head
    const close = !this.#bodyCanBeSkipped() || this.request.upgrade || !sink.keepAlive
    if (this.#transforms !== null) this.#buildPipeline(head)
    const status = head.status
    if (this.request.method === 'HEAD' || status === 204 || status === 304) {
      stream?.destroy()
      this.#response = Response.DONE
      sink.head(head, false, close)
      sink.end(close)
      return
    }
    this.#response = Response.STREAMING
    this.#localStream = true
    this.#localClose = close
    sink.head(head, false, close)
    if (stream === null) {
      if (body.length > 0) this.#deliver(body)
      return this.#endBody()
    }
    this.#source = new LocalSource(this, stream)
    this.#source.start()
  }

  #respondWith (head: ResponseHead, body: Buffer, forceClose = false): void {
    const sink = this.#sink!
    dated(head)
    this.status = head.status
    this.#responseHead = head
    this.#response = Response.DONE
    const close = forceClose || !this.#bodyCanBeSkipped() || this.request.upgrade || !sink.keepAlive
    if (body.length === 0 || this.request.method === 'HEAD') {
      sink.head(head, false, close)
    } else {
      this.bytesOut += body.length
      // a block's answer (a file, a stored response) has a body nobody changes: the sink may keep what it makes of it
      if (head.headers.block !== null) sink.whole(head, close, body)
      else {
        sink.head(head, false, close)
        sink.body(body)
      }
    }
    sink.end(close)
  }

  /**
   * Answered before the request body arrived: the connection can go on if the rest of the body
   * can be read and dropped, a bounded Content-Length body the client sends whatever we answer.
   * A chunked or large body, or one the client holds back for a 100 Continue, closes it instead.
   */
  #bodyCanBeSkipped (): boolean {
    if (this.requestComplete) return true
    const facts = this.facts
    return facts.body === BodyKind.LENGTH && facts.contentLength <= SKIPPABLE_BODY && !facts.expectContinue && this.upstream === null
  }

  /** Refuse the request with `error.status` (counted and reported as a client error). */
  refuse (error: ProxyError, retryAfter = 0): void {
    this.#host.clientError(error, this.#downstream.client.label)
    this.#retryAfter = retryAfter
    this.fail(error)
  }

  // ---- failures ----

  /** The connection carrying this request closed before the response completed: the group decides what follows. */
  detachUpstream (): boolean {
    this.#leaveUpstream()
    return !this.#finished
  }

  /**
   * The one place a request fails: answer with the error's status when nothing of the response
   * went out yet, otherwise cut the connection so that the truncation shows.
   */
  fail (error: ProxyError): void {
    if (this.#finished || this.#response === Response.DONE) return
    this.#error ??= error
    this.#release()
    if (this.#response === Response.NONE && error.status !== 0) {
      const page = errorResponse(error.status, this.#retryAfter)
      // a backend that failed: the response hooks may answer in its place (a cache's stale-if-error)
      if (this.#phase === Phase.UPSTREAM && this.#route?.chain.onResponse != null && error.source === 'upstream') {
        this.#phase = Phase.RESPONSE
        this.#response = Response.STREAMING
        if (!this.#responseHooks(page.head)) return
        this.#dropTransforms()
        if (this.#local !== null) return this.#sendLocal()
        this.#response = Response.NONE
      }
      // a request that could not be framed: nothing after it can be trusted to be a request
      if (error.status === 400 || !this.requestComplete) this.#downstream.stopReading()
      this.#respondWith(page.head, page.body, error.status === 400)
      return
    }
    this.#response = Response.DONE
    this.#sink!.reset(error)
  }

  /** The client went away: stop whatever is under way upstream, and make sure its socket is not reused. */
  abort (): void {
    if (this.#finished || this.#orphan !== Orphan.NO) return
    const pipeline = this.#pipeline
    if (pipeline !== null && this.#response === Response.STREAMING && pipeline.outlivesClient) {
      // a cache entry other clients are streaming from is being filled: the response is read to
      // its end for them, into nothing, and this request is finished (logged) then
      this.#orphan = Orphan.READING
      this.#sink = new DiscardSink(this, true)
      pipeline.resume()
      return
    }
    this.#finished = true
    this.#release()
    this.dispatchState.done()
  }

  #release (): void {
    if (this.#source !== null) {
      this.#source.destroy()
      this.#source = null
    }
    if (this.#pipeline !== null) {
      this.#pipeline.destroy()
      this.#pipeline = null
    }
    this.#dropTransforms()
    const local = this.#local as { body: LocalBody | undefined } | null
    if (local !== null && isReadable(local.body)) local.body.destroy()
    const state = this.dispatchState
    if (state.waitingIn !== null) state.waitingIn.cancel(this)
    // a connection being opened for this request is left to open: it serves others from the pool
    const conn = this.#leaveUpstream()
    if (conn !== null) conn.destroy()
  }

  /** @internal The response an orphan read for others ended (or failed): finished now. */
  orphanDone (): void {
    if (this.#orphan !== Orphan.READING) return
    this.#orphan = Orphan.DONE
    this.finish()
  }

  /** The response is written (or the connection is gone): the logging phase. */
  finish (): void {
    // an orphan is finished by its own sink, once the body it reads for others has ended
    if (this.#logged || this.#orphan === Orphan.READING) return
    this.#logged = true
    this.#finished = true
    this.#phase = Phase.DONE
    this.dispatchState.done()
    const hooks = this.#route?.chain.onLog ?? null
    if (hooks !== null) {
      for (let i = 0; i < hooks.length; i++) {
        try {
          hooks[i].onLog!(this, this.#error)
        } catch (err) {
          this.#host.proxyError(new ProxyError('filter_error', `filter ${hooks[i].name ?? '(unnamed)'} onLog: ${(err as Error)?.message ?? String(err)}`, 'internal', 0, false, err))
        }
      }
    }
    this.#host.responseDone(this)
  }

  // ---- holds on the upstream connection ----

  /** Pause reading the backend for this request's sake; only the request reading its response there may. */
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
  #leaveUpstream (): RequestChannel | null {
    const conn = this.upstream
    this.upstream = null
    if (conn !== null && this.#upstreamHolds !== 0) conn.release(this.#upstreamHolds)
    this.#upstreamHolds = 0
    return conn
  }
}

const EMPTY = Buffer.alloc(0)

/** A filter's pending promise, bounded by the route's response timeout on the coarse clock. */
class FilterWait implements Timed {
  deadline: number
  #onTimeout: (() => void) | null

  constructor (ms: number, onTimeout: () => void) {
    this.#onTimeout = onTimeout
    this.deadline = clock.after(ms)
    clock.add(this)
  }

  /** The promise settled: false when it came too late (the request has moved on). */
  settle (): boolean {
    if (this.#onTimeout === null) return false
    this.#onTimeout = null
    clock.delete(this)
    return true
  }

  onTimeout (): void {
    const onTimeout = this.#onTimeout
    this.#onTimeout = null
    clock.delete(this)
    onTimeout?.()
  }
}

/** A spawned request's client side: the client it was spawned for, with nobody to hold or stop. */
class DetachedDownstream implements Downstream {
  readonly #of: Downstream
  constructor (of: Downstream) { this.#of = of }
  get client (): ClientInfo { return this.#of.client }
  get identityHeaders (): IdentityHeaders | null { return this.#of.identityHeaders }
  addresses (): ReturnType<Downstream['addresses']> { return this.#of.addresses() }
  tlsInfo (): ReturnType<Downstream['tlsInfo']> { return this.#of.tlsInfo() }
  hold (): void {}
  release (): void {}
  stopReading (): void {}
}

/**
 * A response read and dropped: a spawned request's, or an orphan's (a request whose client left,
 * read to its end for a transform's sake: `abort`). The request is finished when it ends.
 */
class DiscardSink implements ResponseSink {
  readonly #session: Session
  readonly #orphan: boolean
  #started = false
  constructor (session: Session, orphan = false) {
    this.#session = session
    this.#orphan = orphan
  }

  get started (): boolean { return this.#started }
  get keepAlive (): boolean { return true }
  interim (): void {}
  head (): void { this.#started = true }
  whole (): void { this.#started = true }
  body (): boolean { return true }
  end (): void { this.#done() }
  upgrade (): void { this.#done() }
  reset (): void { this.#done() }

  #done (): void {
    if (this.#orphan) this.#session.orphanDone()
    else this.#session.finish()
  }
}

/**
 * rp4's own answer says when it was made: RFC 9110 §6.6.1 has an origin server with a clock send
 * Date in its 2xx, 3xx and 4xx responses (and allows it in 5xx). A stored response's own Date
 * stays (the cache adds one when it stores a response without).
 */
function dated (head: ResponseHead): void {
  if (head.status < 200) return
  const list = head.headers
  // the search passes over a name by its length alone unless it has four characters
  // the value is made here, a fixed form: no need for append's checks
  if (list.indexOf('date') === -1) list.raw.push('Date', httpNow())
}
