/**
 * Filters: the typed hooks a request passes through (see phases.ts for the order). Every hook is
 * optional; a route's filters are compiled once, at configuration time, into one array per hook,
 * so a request visits only the filters that implement that hook, and a hook nobody implements
 * costs one null check.
 *
 * Hooks are synchronous unless they return a promise (an auth call, a cache lookup): while one is
 * pending, rp4 reads nothing more from that client, for at most the route's response timeout
 * (then 504, `filter_timeout`).
 */
import type { Transform } from 'node:stream'
import type { ProxyError } from '../core/errors.js'
import type { RequestHead, ResponseHead } from '../http/message.js'
import type { ClientCertificate } from '../tls/client-certificate.js'

export type { ClientCertificate }

/** What rp4 knows of a client connection's TLS (rp4 terminated it), fixed once its handshake is done. */
export interface TlsClient {
  /** `Strict-Transport-Security` for responses on this connection (the listener's); null: none. */
  readonly hsts: string | null
  /** The client certificate, verified against the listener's CA bundle (tls.clientCertificates); null: none. */
  readonly certificate: ClientCertificate | null
  /** Why every request on this connection is answered 403 (tls.clientCertificates.onFailure: forbidden); null: served. */
  readonly refusal: string | null
}

/** The client of a request. */
export interface ClientInfo {
  /** Its IP, as X-Forwarded-For shows it. */
  readonly ip: string
  /** `IP:PORT`, as logs show it. */
  readonly label: string
  /** rp4 terminated TLS for it. */
  readonly secure: boolean
  /** What its TLS says (null: cleartext). */
  readonly tls: TlsClient | null
}

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
  /** The client: its IP (as X-Forwarded-For shows it), `IP:PORT`, whether rp4 terminated TLS for it, and its verified certificate. */
  readonly client: ClientInfo
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
  /** The request is about to be encoded for the backend: hop-by-hop headers are gone and rp4's forwarding headers are in `head`. */
  onUpstreamRequest? (session: FilterSession, head: RequestHead): void
  /** A final response head (the backend's, its hop-by-hop headers gone and Via added, or rp4's own) before it is encoded for the client. */
  onResponse? (session: FilterSession, head: ResponseHead): void
  /**
   * A piece of the response body: return it, something in its place, or null to drop it. A filter
   * that changes the body's length removes Content-Length in `onResponse` (the body is then
   * chunked, or sent until close to an HTTP/1.0 client); rp4 never sends bytes past a declared
   * length, and closes the connection when the body does not add up to it.
   */
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

/**
 * Compile a filter list into per-hook arrays. `hop`: filters that stand for the hop between rp4
 * and the backend (the forwarding headers): first on every hook in both directions, before the
 * list's own, so that what the others see on either side is what crosses the hop.
 */
export function compileFilters (filters: readonly Filter[], hop: readonly Filter[] = []): FilterChain {
  const pick = (hook: keyof Filter, list: readonly Filter[]): readonly Filter[] | null => {
    const out = [...hop, ...list].filter(f => typeof f[hook] === 'function')
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
