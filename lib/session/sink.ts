/**
 * The two sides a session talks to, as interfaces: the downstream it answers through (an HTTP/1
 * connection today, HTTP/2 later) and the upstream layer (upstream/handler.ts). A session never
 * sees a socket or a byte of framing.
 */
import type { ProxyError } from '../core/errors.js'
import type { ResponseHead } from '../http/message.js'
import type { ClientInfo } from './filter.js'

/** Request headers a listener sets from the verified client certificate; null: not set. */
export interface IdentityHeaders {
  readonly subject: string | null
  readonly fingerprint: string | null
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
  /** A filter's hook is working (a promise is pending). */
  FILTER = 16,
}

/** A tunnel's backend side once a 101 went out: its socket and what it sent after the 101's head. */
export interface UpgradedUpstream {
  socket: import('node:net').Socket
  rest: Buffer
}

/** The response side of one request, as the downstream offers it to the session. */
export interface ResponseSink {
  /** An interim (1xx) response: passed on where the client's protocol has them. */
  interim (head: ResponseHead): void
  /**
   * The final response head. `untilClose`: its body ends when the backend closes (no length).
   * `close`: the client connection must close after this response.
   */
  head (head: ResponseHead, untilClose: boolean, close: boolean): void
  /**
   * A final head and its whole body, for a body the caller never changes once given (a file's
   * kept bytes, a stored response's): the sink may keep what it makes of the two and use it again
   * for the same head and body. Stands for `head`, `body` and nothing else (`end` follows).
   */
  whole (head: ResponseHead, close: boolean, body: Buffer): void
  /** A piece of the body. False: stop producing until `onWritable` (the client is full, or its turn has not come). */
  body (chunk: Buffer): boolean
  /** The response is complete; `close`: the client connection closes after it. */
  end (close: boolean): void
  /** The backend accepted an upgrade: the connection becomes a tunnel once the 101 is written. */
  upgrade (take: () => UpgradedUpstream | null): void
  /** Cut the response short: the client must see the truncation (the connection is closed). */
  reset (error: ProxyError): void
  /** Nothing of a response was written yet for this request (not even held for its turn). */
  readonly started: boolean
  /** The client connection may stay open after this response, as far as the request side is concerned. */
  readonly keepAlive: boolean
}

/** What the downstream connection offers a session beyond its response sink. */
export interface Downstream {
  /** The client's IP (X-Forwarded-For), `IP:PORT` (logs), and what its TLS says. */
  readonly client: ClientInfo
  /** The listener forwards client certificates in these headers (client copies removed first); null: it does not. */
  readonly identityHeaders: IdentityHeaders | null
  /** The client (as a PROXY header named it, if one did) and the address it reached rp4 at. */
  addresses (): Readonly<{ source: Readonly<{ ip: string, port: number }>, destination: Readonly<{ ip: string, port: number }> }>
  /** The TLS version and server name of the client's handshake ('' for cleartext, or no SNI): read for logs only. */
  tlsInfo (): Readonly<{ version: string, sni: string, alpn: string }>
  hold (reason: ClientHold): void
  release (reason: ClientHold): void
  /** No further request is read from this connection. */
  stopReading (): void
}
