/**
 * Filters: the typed hooks a request passes through (see phases.ts for the order). Every hook is
 * optional; a route's filters are compiled once, at configuration time, into one array per hook,
 * so a request visits only the filters that implement that hook, and a hook nobody implements
 * costs one null check.
 *
 * Hooks are synchronous unless they return a promise (an auth call, a cache lookup): while one is
 * pending, rp4 reads nothing more from that client.
 */
import type { Transform } from 'node:stream'
import type { ProxyError } from '../core/errors.js'
import type { RequestHead, ResponseHead } from '../http/message.js'
import type { LocalBody } from './body.js'

/** A request hook's explicit answer: go on, or the hook has answered the request itself. */
export type Verdict = 'continue' | 'responded'

/** Headers as a filter gives them: an object, or name/value pairs (repeated names allowed). */
export type HeaderInit = Readonly<Record<string, string>> | ReadonlyArray<readonly [string, string]>

/** What a filter sees of the request it is called for. */
export interface FilterSession {
  /** Sequence number of the request within the proxy. */
  readonly id: number
  /** The request head: change it in place (method, target, path, headers) in `onRequest`. */
  readonly request: RequestHead
  /** The client: its IP (as X-Forwarded-For shows it), `IP:PORT`, and whether rp4 terminated TLS for it. */
  readonly client: Readonly<{ ip: string, label: string, secure: boolean }>
  /** Name of the route that matched. */
  readonly route: string
  /** State of this request for the filters' own use: nothing of rp4 reads or writes it. */
  readonly ctx: Record<string, unknown>
  /** The response head once there is one (from the backend, or rp4's own). */
  readonly response: ResponseHead | null
  /** `HOST:PORT` of the backend chosen, once one is. */
  readonly target: string | null
  /**
   * Answer the request now with this status, headers and body (in `onRequest`: nothing goes
   * upstream; in `onResponse`: the backend's response is dropped, this one goes instead).
   * Returns 'responded', to be returned by the hook.
   *
   * A Readable body is pulled with backpressure (paused while the client is full) and framed by
   * the headers given: with a Content-Length, that many bytes; without, chunked (or until close
   * for an HTTP/1.0 client). On HEAD it is destroyed unread.
   */
  respond (status: number, headers?: HeaderInit, body?: LocalBody): Verdict
  /**
   * In `onResponse`: pass the body through this transform (a compressor, a recorder), after the
   * ones added before it. Its `_flush` is the end-of-body hook; it may be asynchronous and keeps
   * backpressure both ways. Ignored (destroyed) for a response without a body (HEAD, 204, 304).
   * A filter that changes the body's length must drop or fix Content-Length in `head` itself.
   */
  transformBody (transform: Transform): void
  /**
   * Send `head` (a GET without a body) through this route on its own, its response going nowhere
   * but the route's filters (a cache refreshing an entry in the background).
   */
  spawn (head: RequestHead): void
}

/**
 * A route action implemented outside the session (static files): `'responded'` when it called
 * `session.respond`, `'continue'` when it has nothing for this request (the route's fallback
 * group, when it has one, gets the request; 404 otherwise).
 */
export interface RouteHandler {
  readonly name: string
  handle (session: FilterSession): Verdict | Promise<Verdict>
}

export interface Filter {
  /** Shown in errors and logs. */
  readonly name?: string
  /** The request head arrived and the route was chosen: inspect, rewrite, or answer. */
  onRequest? (session: FilterSession): Verdict | Promise<Verdict>
  /** The request is about to be encoded for the backend: rp4's forwarding headers are already in `head`. */
  onUpstreamRequest? (session: FilterSession, head: RequestHead): void
  /** A final response head (the backend's or rp4's own) before it is encoded for the client. */
  onResponse? (session: FilterSession, head: ResponseHead): void
  /** A piece of the response body: return it, something in its place, or null to drop it. */
  onResponseBody? (session: FilterSession, chunk: Buffer): Buffer | null
  /** The body is complete (before the transforms flush): return a last piece to append, or null. */
  onResponseEnd? (session: FilterSession): Buffer | null
  /** The request is over: answered (`session.response`), refused or failed (`error`). */
  onLog? (session: FilterSession, error: ProxyError | null): void
}

/** A route's filters, one array per hook in call order; null where no filter implements the hook. */
export interface FilterChain {
  readonly onRequest: readonly Filter[] | null
  readonly onUpstreamRequest: readonly Filter[] | null
  /** In reverse order of the route's filter list: the last filter to see the request is the first to see its response. */
  readonly onResponse: readonly Filter[] | null
  readonly onResponseBody: readonly Filter[] | null
  readonly onResponseEnd: readonly Filter[] | null
  readonly onLog: readonly Filter[] | null
}

/** Compile a filter list into per-hook arrays. */
export function compileFilters (filters: readonly Filter[]): FilterChain {
  const pick = (hook: keyof Filter, list: readonly Filter[]): readonly Filter[] | null => {
    const out = list.filter(f => typeof f[hook] === 'function')
    return out.length === 0 ? null : Object.freeze(out)
  }
  const reversed = [...filters].reverse()
  return Object.freeze({
    onRequest: pick('onRequest', filters),
    onUpstreamRequest: pick('onUpstreamRequest', filters),
    onResponse: pick('onResponse', reversed),
    onResponseBody: pick('onResponseBody', reversed),
    onResponseEnd: pick('onResponseEnd', reversed),
    onLog: pick('onLog', filters),
  })
}

export const EMPTY_CHAIN: FilterChain = compileFilters([])
