/**
 * One request's response on an HTTP/1 client connection: the session's ResponseSink. It encodes
 * the head for the client's hop (framing, Connection), frames the body (chunked where the client
 * speaks HTTP/1.1 and the length is unknown), and keeps responses in request order: a response
 * whose turn has not come is held (its producer is told to pause, so at most one read of it waits
 * in memory) and written when the ones before it are done.
 */
import type { Socket } from 'node:net'
import type { ProxyError } from '../core/errors.js'
import { unlent } from '../core/loan.js'
import { CRLF, LAST_CHUNK, chunkHeader, encodeResponseHead, frameResponse, keptWhole, type ResponseFraming } from '../http1/encode.js'
import type { ResponseHead } from '../http/message.js'
import { BodyKind } from '../http/validate.js'
import type { Session } from '../session/session.js'
import type { ResponseSink, UpgradedUpstream } from '../session/sink.js'

/** What a response needs from its connection. */
export interface ResponseOwner {
  /** The response that may write to the socket now (the oldest in the queue). */
  readonly first: H1Response | undefined
  /** The connection may stay open after `response`'s (its request did not ask to close, and more may be read). */
  keepAliveAfter (response: H1Response): boolean
  write (data: string | Buffer): boolean
  /** The first response made progress: move through every response that is complete. */
  advance (): void
  destroy (error?: ProxyError): void
}

const INTERIM: ResponseFraming = { body: BodyKind.NONE, close: false, dropTransferEncoding: true, addChunked: false, length: -1, dropContentLength: true, covered: 0 }

export class H1Response implements ResponseSink {
  readonly #owner: ResponseOwner
  readonly session: Session
  #body = BodyKind.NONE
  /** Body bytes still owed under Content-Length (LENGTH framing). */
  #remaining = 0
  /** Bytes offered beyond the declared length: dropped. */
  #excess = 0
  /** Output produced while an earlier response still has the connection. */
  #held: Array<string | Buffer> | null = null
  #started = false
  #done = false
  /** The connection closes after this response. */
  closeAfter = false
  /** Bytes the client sent after an upgrade request, to forward once the backend accepted. */
  upgradeData: Buffer | null = null
  #upgrade: (() => UpgradedUpstream | null) | null = null

  constructor (owner: ResponseOwner, session: Session) {
    this.#owner = owner
    this.session = session
  }

  get first (): boolean { return this.#owner.first === this }
  get started (): boolean { return this.#started }
  get done (): boolean { return this.#done }
  get keepAlive (): boolean { return this.#owner.keepAliveAfter(this) }
  get upgraded (): boolean { return this.#upgrade !== null }

  interim (head: ResponseHead): void {
    // interim responses mean something only to an HTTP/1.1 client
    if (!this.session.request.http11) return
    this.#emit(encodeResponseHead(head, INTERIM, true))
  }

  head (head: ResponseHead, untilClose: boolean, close: boolean): void {
    const framing = this.#frame(head, untilClose, close)
    this.#emit(encodeResponseHead(head, framing, this.session.request.http11))
  }

  whole (head: ResponseHead, close: boolean, body: Buffer): void {
    const framing = this.#frame(head, false, close)
    const http11 = this.session.request.http11
    // the head and body as one buffer kept with the head's block, when both are what they were last time
    const out = keptWhole(head, framing, http11, body)
    if (typeof out === 'string') {
      this.#emit(out)
      this.body(body)
      return
    }
    this.#remaining = 0
    this.#emit(out)
  }

  /** The framing of `head` for this client, and what follows from it for the body and the connection. */
  #frame (head: ResponseHead, untilClose: boolean, close: boolean): ResponseFraming {
    const request = this.session.request
    const hsts = this.session.hsts
    // the backend's own policy, when it sends one, is the host's to state
    if (hsts !== null && !head.headers.has('strict-transport-security')) head.headers.append('Strict-Transport-Security', hsts)
    const framing = frameResponse(head, request.method, request.http11, !close && this.#owner.keepAliveAfter(this), untilClose)
    this.#body = framing.body
    this.#remaining = framing.length
    this.#started = true
    this.closeAfter = framing.close || head.status === 101
    return framing
  }

  body (chunk: Buffer): boolean {
    if (this.#body === BodyKind.LENGTH) {
      // never more than the head declared: bytes past it would be read as the next response
      if (chunk.length > this.#remaining) {
        this.#excess += chunk.length - this.#remaining
        chunk = chunk.subarray(0, this.#remaining)
      }
      this.#remaining -= chunk.length
      return chunk.length === 0 ? true : this.#emit(chunk)
    }
    if (this.#body !== BodyKind.CHUNKED) return this.#emit(chunk)
    this.#emit(chunkHeader(chunk.length))
    this.#emit(chunk)
    return this.#emit(CRLF)
  }

  end (close: boolean): void {
    if (this.#body === BodyKind.LENGTH && (this.#remaining !== 0 || this.#excess !== 0)) {
      // a body filter changed the length and left Content-Length as it was
      // short: the close after the bytes written is how the client sees the truncation
      this.session.lengthMismatch(this.#remaining, this.#excess)
      close = true
    }
    if (this.#body === BodyKind.CHUNKED) this.#emit(LAST_CHUNK)
    if (close) this.closeAfter = true
    this.#done = true
    if (this.first) this.#owner.advance()
  }

  upgrade (take: () => UpgradedUpstream | null): void {
    this.#upgrade = take
    this.#done = true
    if (this.first) this.#owner.advance()
  }

  reset (error: ProxyError): void {
    this.#done = true
    this.#owner.destroy(error)
  }

  /** The tunnel's backend side, taken once the 101 is written. */
  takeUpgrade (): UpgradedUpstream | null {
    const take = this.#upgrade
    this.#upgrade = null
    return take === null ? null : take()
  }

  #emit (data: string | Buffer): boolean {
    if (!this.first) {
      // held past the read that brought it: not a view of a reused read buffer
      (this.#held ??= []).push(typeof data === 'string' ? data : unlent(data))
      return false
    }
    return this.#owner.write(data)
  }

  /**
   * This response became first: write what was held, and tell whether it is complete (the
   * connection moves on to the next one). Its producer may go on if the socket took it all.
   */
  takeTurn (socket: Socket): boolean {
    const held = this.#held
    let ok = true
    if (held !== null) {
      this.#held = null
      for (let i = 0; i < held.length; i++) ok = this.#owner.write(held[i])
    }
    if (this.#done) return true
    if (ok && !socket.writableNeedDrain) this.session.onWritable()
    return false
  }
}
