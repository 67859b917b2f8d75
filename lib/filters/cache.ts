/**
 * An RFC 9111 shared cache as a filter, nearest the upstream in a route's filter list (it stores
 * what the backend sent; compression, nearer the client, encodes hits per client).
 *
 * - onRequest: GET and HEAD are looked up (by scheme, host and target, then the Vary fields of
 *   the stored response); a fresh entry is answered from the store (Age, Cache-Status, the
 *   client's conditionals and Range evaluated against it); a stale one is revalidated, or served
 *   while it is revalidated in the background (stale-while-revalidate); a miss while the same URI
 *   is being fetched waits for that response and streams it as it arrives (coalescing).
 * - onUpstreamRequest: a revalidation carries the entry's validators (If-None-Match,
 *   If-Modified-Since) instead of the client's.
 * - onResponse: a 304 to a revalidation updates the entry's headers (§4.3.4) and answers from it;
 *   a 5xx (the backend's, or rp4's own 502/504) is replaced by the stale entry where
 *   stale-if-error allows; a storable response is recorded as it passes (a body transform), and
 *   stored once complete; an unsafe method's success invalidates the URI, and its Location and
 *   Content-Location (§4.4).
 */
import { Transform, type TransformCallback } from 'node:stream'
import { evaluatePreconditions, hasConditions, httpDate, ifRangeHolds, Precondition, validatorsOf } from '../http/conditional.js'
import {
  notStorable, requestDirectives, responseFacts, staleAllowance, usability, Use,
  type ResponseFacts,
} from '../http/cache-control.js'
import { HeaderList } from '../http/headers.js'
import { RequestHead, type ResponseHead } from '../http/message.js'
import { contentRange, multipart, parseRange, type ByteRange } from '../http/range.js'
import type { CacheModel } from '../model/model.js'
import type { Filter, FilterSession, Verdict } from '../session/filter.js'
import { kOutlivesClient, type LocalBody } from '../session/body.js'
import type { Session } from '../session/session.js'
import { DiskStore } from './cache-disk.js'
import { CacheEntry, MemoryStore, secondaryKey } from './cache-store.js'

/** Header fields never stored: they describe one hop or one message's framing. */
const UNSTORED = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length', 'age', 'cache-status'])

const CONDITIONALS = ['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range']

/** What the cache decided for one request, kept in its context. */
interface State {
  primary: string
  requestTime: number
  /** A stored response being revalidated for this request. */
  stale: CacheEntry | null
  /** This request fills the entry other requests for the URI wait on. */
  filling: boolean
  /** The request's own directives forbid storing. */
  noStore: boolean
  /** This request was spawned to refresh `stale` in the background. */
  background: boolean
  /** Answered from the store: its response hooks see the cache's own answer, not the backend's. */
  served: boolean
  /** The client's conditional headers, set aside while the entry's validators went upstream. */
  conditionals: string[] | null
  /**
   * The client asked for `bytes=0-` and this request fetches the whole response for the store:
   * its If-Range, set aside ('' for none), so that the client still gets its 206. Null otherwise.
   */
  fromStart: string | null
}

const STATE = Symbol('rp4.cache')

export class HttpCache implements Filter {
  readonly name = 'cache'
  readonly store: MemoryStore
  /** The directory entries are kept in across restarts; null: memory only. */
  readonly disk: DiskStore | null
  readonly #model: CacheModel
  /** URIs being fetched: the requests that miss meanwhile wait on these. */
  readonly #inflight = new Map<string, Inflight>()
  /** Requests this cache spawned to revalidate an entry in the background, with that entry. */
  readonly #background = new WeakMap<RequestHead, CacheEntry>()
  readonly #refreshing = new Set<string>()

  constructor (model: CacheModel) {
    this.#model = model
    this.store = new MemoryStore(model.size)
    const disk = model.dir === null ? null : new DiskStore(model.dir, this.store)
    this.disk = disk
    if (disk !== null) {
      // entries read back at startup are on disk already: only new ones are written
      this.store.onStored = entry => { if (!disk.fromDisk.has(entry)) disk.write(entry) }
      this.store.onDropped = entry => disk.remove(entry)
    }
  }

  /** Remove every variant of `url` (`http://host/path?query`); how many entries. */
  purge (url: string): number {
    return this.store.delete(url)
  }

  purgePrefix (prefix: string): number {
    return this.store.deletePrefix(prefix)
  }

  onRequest (session: FilterSession): Verdict | Promise<Verdict> {
    const request = session.request
    const method = request.method
    if (method !== 'GET' && method !== 'HEAD') return 'continue'
    const primary = primaryKey(session)
    const now = Date.now()
    const background = this.#background.get(request)
    if (background !== undefined) {
      setState(session, { primary, requestTime: now, stale: background, filling: false, noStore: false, background: true, served: false, conditionals: null, fromStart: null })
      return 'continue'
    }
    // §3.5: a request with credentials is answered by the backend alone
    if (request.headers.get('authorization') !== undefined) return 'continue'
    const req = requestDirectives(request.headers)
    const state: State = { primary, requestTime: now, stale: null, filling: false, noStore: req.has('no-store'), background: false, served: false, conditionals: null, fromStart: null }
    setState(session, state)
    const entry = this.store.find(primary, request.headers)
    if (entry !== undefined) {
      const facts = entry.facts
      const age = entry.ageAt(now)
      const lifetime = entry.lifetime
      const use = usability(facts, req, age, lifetime)
      if (use === Use.FRESH) return serve(session, entry, age, `hit; ttl=${lifetime - age}`)
      // a client that asked for fresher than this (max-age, min-fresh) is not given it stale
      const allowance = use === Use.STALE && !req.has('max-age') && !req.has('min-fresh') ? staleAllowance(facts, 'stale-while-revalidate', this.#model.staleWhileRevalidate / 1000) : 0
      if (allowance > 0 && age - lifetime <= allowance) {
        this.#refresh(session, entry)
        return serve(session, entry, age, `hit; fwd=stale; detail=stale-while-revalidate; ttl=${lifetime - age}`)
      }
      state.stale = entry
      return 'continue'
    }
    if (method !== 'GET' || req.has('no-cache')) return 'continue'
    const inflight = this.#inflight.get(primary)
    if (inflight !== undefined) return inflight.join(session)
    const range = request.headers.getAll('range')
    if (range.length > 0) {
      // a Range request does not fetch for others: its backend answers 206, which is not stored,
      // and the requests that waited on it would each go to the backend after it. Except the
      // range that is the whole response (`bytes=0-`, what a media player asks first): the
      // whole response is fetched and stored, and this client gets it as its 206
      if (range.length > 1 || !FROM_START.test(range[0])) return 'continue'
      state.fromStart = request.headers.get('if-range') ?? ''
    }
    this.#inflight.set(primary, new Inflight())
    state.filling = true
    return 'continue'
  }

  onUpstreamRequest (session: FilterSession, head: RequestHead): void {
    const state = stateOf(session)
    if (state?.fromStart != null) {
      // the whole response, whatever the client's validators for its range say (kept in the state)
      head.headers.delete('range')
      head.headers.delete('if-range')
      return
    }
    if (state?.stale == null) return
    // the validators are the entry's: a 304 then speaks of it, and the client's own conditionals
    // are answered here (the head is the client's request, edited in place: they are kept aside)
    const kept: string[] = []
    for (const name of CONDITIONALS) {
      for (const value of head.headers.getAll(name)) kept.push(name, value)
      head.headers.delete(name)
    }
    state.conditionals = kept
    const stored = state.stale.headerList
    const etag = stored.get('etag')
    const modified = stored.get('last-modified')
    if (etag !== undefined) head.headers.set('If-None-Match', etag)
    if (modified !== undefined) head.headers.set('If-Modified-Since', modified)
  }

  onResponse (session: FilterSession, head: ResponseHead): void {
    const request = session.request
    const method = request.method
    if (method !== 'GET' && method !== 'HEAD') {
      this.#invalidate(session, head)
      return
    }
    const state = stateOf(session)
    if (state === undefined) {
      head.headers.set('Cache-Status', 'rp4; fwd=bypass')
      return
    }
    if (state.served) return
    const now = Date.now()
    const stale = state.stale
    if (stale !== null) {
      if (head.status === 304) {
        this.#abandon(session)
        this.#update(stale, head, state.requestTime, now)
        if (state.background) return
        const kept = state.conditionals
        if (kept !== null) {
          for (const name of CONDITIONALS) request.headers.delete(name)
          for (let i = 0; i < kept.length; i += 2) request.headers.append(kept[i], kept[i + 1])
        }
        serve(session, stale, stale.ageAt(now), 'fwd=stale; fwd-status=304')
        return
      }
      if (head.status >= 500 && !state.background) {
        const age = stale.ageAt(now)
        const over = age - stale.lifetime
        const allowance = staleAllowance(stale.facts, 'stale-if-error', this.#model.staleIfError / 1000)
        if (allowance > 0 && over <= allowance) {
          this.#abandon(session)
          serve(session, stale, age, `hit; fwd=stale; fwd-status=${head.status}; detail=stale-if-error`)
          return
        }
      }
    }
    const facts = responseFacts(head.status, head.headers)
    const lengthField = head.headers.get('content-length')
    const length = Number(lengthField ?? 0)
    // what the backend declared, -1 for none (a body until close, or chunked)
    const declared = lengthField === undefined ? -1 : length
    const why = state.noStore || method !== 'GET' ? 'request'
      : length > this.#model.maxEntrySize ? 'too-large'
        : notStorable(method, request.headers, requestDirectives(request.headers), facts)
    if (why !== null) {
      this.#abandon(session)
      if (state.fromStart !== null) wholeAsRange(head, declared, state.fromStart)
      if (!state.background) head.headers.set('Cache-Status', `rp4; fwd=${stale !== null ? 'stale' : 'uri-miss'}; fwd-status=${head.status}; detail=${why.replace(/ /g, '-')}`)
      return
    }
    const fields = varyFields(head.headers)
    const headers = storedHeaders(head, now)
    const entry = new CacheEntry(state.primary, secondaryKey(request.headers, fields), fields, head.status, head.reason, headers, state.requestTime, now)
    entry.expected = declared
    let inflight: Inflight | undefined
    if (state.filling) {
      // requests for the URI arriving until the entry is complete are served from it as it fills
      inflight = this.#inflight.get(state.primary)
      inflight?.publish(entry)
      state.filling = false
    }
    if (!state.background) head.headers.set('Cache-Status', `rp4; fwd=${stale !== null ? 'stale' : 'uri-miss'}; fwd-status=${head.status}; stored`)
    session.transformBody(new Recorder(entry, this.store, this.#model.maxEntrySize, () => {
      if (inflight !== undefined && this.#inflight.get(state.primary) === inflight) this.#inflight.delete(state.primary)
    }))
    // stored as the backend sent it; the client that asked for bytes=0- gets it as a 206
    if (state.fromStart !== null) wholeAsRange(head, declared, state.fromStart)
  }

  onLog (session: FilterSession): void {
    this.#abandon(session)
    const state = stateOf(session)
    if (state?.background === true) this.#refreshing.delete(state.primary)
  }

  /** The waiters on this request's URI go to the backend themselves. */
  #abandon (session: FilterSession): void {
    const state = stateOf(session)
    if (state === undefined || !state.filling) return
    state.filling = false
    const inflight = this.#inflight.get(state.primary)
    this.#inflight.delete(state.primary)
    inflight?.publish(null)
  }

  #refresh (session: FilterSession, entry: CacheEntry): void {
    if (this.#refreshing.has(entry.primary)) return
    this.#refreshing.add(entry.primary)
    const request = session.request
    const headers = new HeaderList([...request.headers.raw])
    for (const name of CONDITIONALS) headers.delete(name)
    headers.delete('range')
    const head = new RequestHead('GET', request.target, 1, 1, headers)
    this.#background.set(head, entry)
    session.spawn(head)
  }

  /** §4.3.4: the stored headers take the 304's (framing aside); its times become the entry's. */
  #update (entry: CacheEntry, head: ResponseHead, requestTime: number, responseTime: number): void {
    const stored = entry.headerList
    const fresh = head.headers.raw
    for (let i = 0; i < fresh.length; i += 2) {
      if (UNSTORED.has(fresh[i].toLowerCase())) continue
      stored.delete(fresh[i])
    }
    for (let i = 0; i < fresh.length; i += 2) {
      if (UNSTORED.has(fresh[i].toLowerCase())) continue
      stored.append(fresh[i], fresh[i + 1])
    }
    entry.revalidated(stored.raw, requestTime, responseTime)
  }

  /** §4.4: a successful unsafe request invalidates its URI, and Location and Content-Location on the same host. */
  #invalidate (session: FilterSession, head: ResponseHead): void {
    const method = session.request.method
    if (method === 'OPTIONS' || method === 'TRACE' || head.status < 200 || head.status >= 400) return
    const primary = primaryKey(session)
    this.store.delete(primary)
    const origin = primary.slice(0, primary.indexOf('/', primary.indexOf('//') + 2))
    for (const name of ['location', 'content-location']) {
      const value = head.headers.get(name)
      if (value === undefined) continue
      let url: URL
      try {
        url = new URL(value, primary)
      } catch {
        continue
      }
      const target = url.protocol + '//' + url.host + url.pathname + url.search
      if (target.startsWith(origin + '/')) this.store.delete(target)
    }
  }
}

/** `Range: bytes=0-`: from the first byte to the last, the whole representation. */
const FROM_START = /^\s*bytes\s*=\s*0+\s*-\s*$/i

/**
 * The whole response fetched for a client that asked for `bytes=0-`, made the 206 it asked for
 * (RFC 9110 §14.2), its length unchanged: a 200 with a declared `length` above zero, whose validators its
 * If-Range (`ifRange`, '' for none) names. Otherwise it gets the 200, as a server that ignores
 * Range would send.
 */
function wholeAsRange (head: ResponseHead, length: number, ifRange: string): void {
  if (head.status !== 200 || !(length > 0)) return
  if (ifRange !== '' && !ifRangeHolds(ifRange, validatorsOf(head.headers))) return
  head.status = 206
  head.reason = 'Partial Content'
  head.headers.set('Content-Range', `bytes 0-${length - 1}/${length}`)
}

/** Requests that missed while the same URI was being fetched: they wait for its response head. */
class Inflight {
  readonly #waiters: Array<{ session: FilterSession, resolve: (verdict: Verdict) => void }> = []
  /** The entry being filled, once its head arrived. */
  #entry: CacheEntry | null = null

  /** A request for the URI: served from the entry being filled, or once its head arrives. */
  join (session: FilterSession): Verdict | Promise<Verdict> {
    const entry = this.#entry
    if (entry !== null) return entry.failed || !matches(session, entry) ? 'continue' : serve(session, entry, 0, 'hit; detail=coalesced')
    return new Promise(resolve => this.#waiters.push({ session, resolve }))
  }

  /** The response arrived (null: not storable, or failed): each waiter is served from it, or goes upstream. */
  publish (entry: CacheEntry | null): void {
    this.#entry = entry
    for (const { session, resolve } of this.#waiters.splice(0)) {
      if (entry === null || !matches(session, entry)) resolve('continue')
      else resolve(serve(session, entry, 0, 'hit; detail=coalesced'))
    }
  }
}

function matches (session: FilterSession, entry: CacheEntry): boolean {
  return entry.secondary === secondaryKey(session.request.headers, entry.varyFields)
}

/** Records the body into its entry as it passes; the entry is stored once complete. */
class Recorder extends Transform {
  readonly #entry: CacheEntry
  readonly #store: MemoryStore
  /** The entry is complete or failed: the URI is no longer being fetched. */
  readonly #settled: () => void
  readonly #max: number
  /** Over the largest entry: the rest passes unrecorded (memory stays bounded). */
  #dropped = false

  constructor (entry: CacheEntry, store: MemoryStore, max: number, settled: () => void) {
    super()
    this.#entry = entry
    this.#store = store
    this.#max = max
    this.#settled = settled
  }

  /** Clients streaming from the entry need the rest though the client that brought it left (session.ts `abort`). */
  [kOutlivesClient] (): boolean {
    return !this.#dropped && this.#entry.readers > 0
  }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (!this.#dropped && this.#entry.length + chunk.length > this.#max) {
      // a response of unknown length grew past the bound: never stored; requests streamed from it are cut
      this.#dropped = true
      this.#entry.fail()
      this.#settled()
    }
    if (!this.#dropped) this.#entry.append(chunk)
    done(null, chunk)
  }

  override _flush (done: TransformCallback): void {
    if (!this.#dropped) {
      this.#entry.finish()
      this.#store.set(this.#entry)
      this.#settled()
    }
    done()
  }

  override _destroy (err: Error | null, done: (error?: Error | null) => void): void {
    // cut short (the client left, the backend failed): never stored, and its readers fail
    this.#entry.fail()
    this.#settled()
    done(err)
  }
}

/**
 * Answer from a stored (or arriving) entry: the client's conditionals and Range against it, Age
 * and Cache-Status added. A plain hit on a complete entry is its stored pairs plus three, and its
 * body as one buffer: the head and a small body leave in one write, a large body without a copy.
 */
function serve (session: FilterSession, entry: CacheEntry, age: number, status: string): Verdict {
  const request = session.request
  const state = stateOf(session)
  if (state !== undefined) state.served = true
  const cacheStatus = 'rp4; ' + status
  // a plain request (no If-* field, no Range) is the stored response in full
  const conditional = hasConditions(request.headers)
  const validators = entry.validators
  const condition = conditional ? evaluatePreconditions(request.method, request.headers, validators) : Precondition.PASS
  // Age and Cache-Status are never stored (UNSTORED): appending them is setting them
  if (condition === Precondition.NOT_MODIFIED) return respondStored(session, entry, 304, withAge(entry, age, cacheStatus, -1))
  if (condition === Precondition.FAILED) return session.respond(412, [['Cache-Status', cacheStatus]])
  if (request.method === 'HEAD') return respondStored(session, entry, entry.status, withAge(entry, age, cacheStatus, entry.complete ? entry.length : -1))
  const range = conditional ? request.headers.get('range') : undefined
  // an entry still filling has the length its backend declared: one range of it streams as its bytes arrive
  const total = entry.complete ? entry.length : entry.expected
  if (range !== undefined && total >= 0 && entry.status === 200) {
    const ifRange = request.headers.get('if-range')
    if (ifRange === undefined || ifRangeHolds(ifRange, validators)) {
      const parsed = parseRange(range, total)
      if (parsed.kind === 'unsatisfiable') {
        return session.respond(416, [['Content-Range', `bytes */${total}`], ['Cache-Status', cacheStatus]])
      }
      // several ranges of an entry still filling: the whole response (a server may ignore Range)
      if (parsed.kind === 'ranges' && (entry.complete || parsed.ranges.length === 1)) return serveRanges(session, entry, age, cacheStatus, parsed.ranges, total)
    }
  }
  if (!entry.complete) return respondStored(session, entry, entry.status, withAge(entry, age, cacheStatus, -1), entry.read())
  return respondStored(session, entry, entry.status, withAge(entry, age, cacheStatus, entry.length), entry.whole() ?? entry.read())
}

/**
 * The stored fields, then Age and Cache-Status, then Content-Length when known (`length` ≥ 0), as
 * a flat list of the answer's own. The stored fields were checked when they were stored (a parsed
 * response's, or set through HeaderList), and the cache's own are digits and its status line.
 */
function withAge (entry: CacheEntry, age: number, cacheStatus: string, length: number): string[] {
  const out = entry.block.fields.slice()
  out.push('Age', String(age > 0 ? age : 0), 'Cache-Status', cacheStatus)
  if (length >= 0) out.push('Content-Length', String(length))
  return out
}

/** Answer with fields the cache vouches for (`withAge`): not checked one by one again. */
function respondStored (session: FilterSession, entry: CacheEntry, status: number, fields: string[], body?: LocalBody): Verdict {
  return (session as Session).respondFields(status, fields, body, entry.block)
}

/** `total`: the entry's length, or the one its backend declared while it fills (then `ranges` is one range). */
function serveRanges (session: FilterSession, entry: CacheEntry, age: number, cacheStatus: string, ranges: readonly ByteRange[], total: number): Verdict {
  const headers = entry.headerList
  headers.set('Age', String(Math.max(0, age)))
  headers.set('Cache-Status', cacheStatus)
  if (ranges.length === 1) {
    const only = ranges[0]
    headers.set('Content-Range', contentRange(only, total))
    headers.set('Content-Length', String(only.end - only.start + 1))
    const whole = entry.whole()
    return session.respond(206, pairs(headers), whole !== null ? whole.subarray(only.start, only.end + 1) : entry.read(only.start, only.end))
  }
  const type = headers.get('content-type')
  const parts = multipart(ranges, entry.length, type, 'rp4-' + Math.random().toString(36).slice(2, 14))
  headers.set('Content-Type', parts.contentType)
  headers.set('Content-Length', String(parts.length))
  const whole = entry.whole() ?? Buffer.concat(entry.chunks)
  const pieces: Buffer[] = []
  for (let i = 0; i < ranges.length; i++) pieces.push(parts.heads[i], whole.subarray(ranges[i].start, ranges[i].end + 1))
  pieces.push(parts.tail)
  return session.respond(206, pairs(headers), Buffer.concat(pieces, parts.length))
}

function pairs (headers: HeaderList): Array<[string, string]> {
  const raw = headers.raw
  const out: Array<[string, string]> = []
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i], raw[i + 1]])
  return out
}

/**
 * The fields kept with a response. One that came without Date gets the time it was received (RFC
 * 9110 §6.6.1: a recipient with a clock that caches such a response must add it), so that every
 * hit tells when it was made, not when it was served.
 */
function storedHeaders (head: ResponseHead, receivedAt: number): string[] {
  const raw = head.headers.raw
  const out: string[] = []
  let dated = false
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase()
    if (name === 'date') dated = true
    if (!UNSTORED.has(name)) out.push(raw[i], raw[i + 1])
  }
  if (!dated) out.push('Date', httpDate(receivedAt))
  return out
}

/** The URI a response is stored under: scheme, Host (as sent, port included) and target. */
export function primaryKey (session: FilterSession): string {
  const request = session.request
  const host = request.headers.get('host')?.trim().toLowerCase() ?? ''
  return (session.client.secure ? 'https://' : 'http://') + host + request.path + request.query
}

function varyFields (headers: HeaderList): string[] {
  const out: string[] = []
  for (const value of headers.getAll('vary')) {
    for (const field of value.split(',')) {
      const name = field.trim().toLowerCase()
      if (name !== '' && !out.includes(name)) out.push(name)
    }
  }
  return out.sort()
}

function setState (session: FilterSession, state: State): void {
  (session.ctx as Record<symbol, unknown>)[STATE] = state
}

function stateOf (session: FilterSession): State | undefined {
  return (session.ctx as Record<symbol, State | undefined>)[STATE]
}

export type { ResponseFacts }
