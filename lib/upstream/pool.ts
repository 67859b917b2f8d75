/**
 * The connections to one target: idle ones kept for reuse (most recently used first: the warmest),
 * a cap on how many are open, and a queue of requests waiting for one.
 */
import { ProxyError } from '../core/errors.js'
import { hasPendingOutput } from '../core/batch.js'
import { UpstreamConnection, type ConnectionPool } from './connection.js'
import type { UpstreamRequest, UpstreamTarget } from './handler.js'

export class Pool implements ConnectionPool {
  /** The target it serves; a reload that keeps the target's connection settings hands it to the new one. */
  target: UpstreamTarget

  readonly #idle: UpstreamConnection[] = []
  readonly #open = new Set<UpstreamConnection>()
  readonly #waiting: UpstreamRequest[] = []
  #waitingHead = 0
  readonly #max: number
  readonly #maxQueue: number
  readonly #pipelining: number

  constructor (target: UpstreamTarget) {
    this.target = target
    const settings = target.settings.pool
    this.#max = settings.maxConnections
    this.#maxQueue = settings.maxQueue
    this.#pipelining = settings.pipelining
  }

  get openCount (): number { return this.#open.size }
  get idleCount (): number { return this.#idle.length }
  /** Requests waiting for a connection. */
  get waitingCount (): number { return this.#waiting.length - this.#waitingHead }
  /** Requests that had to wait in the queue for a connection, since this pool began. */
  waits = 0
  get pipelining (): number { return this.#pipelining }

  /**
   * Find `request` a connection, in this order: with pipelining, a connection already written to
   * in this turn (the requests leave in one write); an idle one; a new one under the cap; with
   * pipelining, the least loaded pipeline; else a place in the queue. Pipelining behind a request
   * in flight comes after a new connection because a slow response would hold up the ones behind
   * it. `fresh` skips pooled connections (a retry after a reused one failed).
   */
  acquire (request: UpstreamRequest, fresh: boolean): void {
    // a connection that opened with a PROXY header speaks for one client: never shared
    const own = this.target.settings.sendProxy !== null
    const pipelining = this.#pipelining > 1 && request.pipelinable && !fresh && !own
    if (!fresh && !own) {
      if (pipelining) {
        const conn = this.#pipelineSlot(true)
        if (conn !== null) {
          conn.send(request)
          return
        }
      }
      const idle = this.#idle
      while (idle.length > 0) {
        const conn = idle.pop()!
        if (conn.usable) {
          conn.send(request)
          return
        }
      }
    }
    if (this.#open.size < this.#max) {
      this.#connect(request)
      return
    }
    if (pipelining) {
      const conn = this.#pipelineSlot(false)
      if (conn !== null) {
        conn.send(request)
        return
      }
    }
    if (this.#waiting.length - this.#waitingHead >= this.#maxQueue) {
      request.fail(new ProxyError('queue_full', `${this.target.authority}: connection queue full`, 'upstream', 503))
      return
    }
    request.dispatchState.waitingIn = this
    this.waits++
    this.#waiting.push(request)
  }

  /** A connection finished every request it carried and may be reused. */
  release (conn: UpstreamConnection): void {
    if (conn.holds !== 0) {
      // paused by someone no longer on it: whoever it went to next would never be read. A defect
      // of ours, caught here so that it costs one connection, not a request
      const error = new ProxyError('internal_error', `internal error: ${this.target.authority} connection released while paused (holds ${conn.holds})`, 'internal', 502)
      this.target.events.upstreamError(error, this.target.authority)
      conn.destroy(error)
      return
    }
    const next = this.target.settings.sendProxy === null ? this.#nextWaiting() : null
    if (next !== null) {
      conn.send(next)
      return
    }
    if (this.target.closing || this.target.settings.sendProxy !== null) {
      conn.destroy()
      return
    }
    conn.setIdle()
    this.#idle.push(conn)
  }

  /** A connection with room in its pipeline takes waiting requests that may be pipelined. */
  fillPipeline (conn: UpstreamConnection): void {
    if (this.target.settings.sendProxy !== null) return
    const waiting = this.#waiting
    while (this.#waitingHead < waiting.length && waiting[this.#waitingHead].pipelinable && conn.canPipeline(this.#pipelining)) {
      conn.send(this.#nextWaiting()!)
    }
  }

  /** A connection closed (or failed to connect): forget it, and open another for a waiting request. */
  forget (conn: UpstreamConnection): void {
    this.#open.delete(conn)
    const i = this.#idle.indexOf(conn)
    if (i !== -1) this.#idle.splice(i, 1)
    if (this.#open.size < this.#max && !this.target.closing) {
      const next = this.#nextWaiting()
      if (next !== null) this.#connect(next)
    }
  }

  /** A request stopped waiting (its client went away, or it failed). */
  cancel (request: UpstreamRequest): void {
    const i = this.#waiting.indexOf(request, this.#waitingHead)
    if (i !== -1) this.#waiting.splice(i, 1)
    request.dispatchState.waitingIn = null
  }

  /** Close idle connections (the proxy is closing). */
  closeIdle (): void {
    for (const conn of this.#idle.splice(0)) conn.destroy()
  }

  #connect (request: UpstreamRequest): void {
    this.#open.add(new UpstreamConnection(this, request))
  }

  /** The least loaded connection that can take one more request; with `written`, only among those written to in this turn. */
  #pipelineSlot (written: boolean): UpstreamConnection | null {
    let best: UpstreamConnection | null = null
    for (const conn of this.#open) {
      if ((!written || hasPendingOutput(conn.socket)) && conn.canPipeline(this.#pipelining) &&
        (best === null || conn.inflightCount < best.inflightCount)) best = conn
    }
    return best
  }

  #nextWaiting (): UpstreamRequest | null {
    const waiting = this.#waiting
    if (this.#waitingHead >= waiting.length) return null
    const next = waiting[this.#waitingHead]
    waiting[this.#waitingHead++] = undefined as unknown as UpstreamRequest
    if (this.#waitingHead === waiting.length) {
      waiting.length = 0
      this.#waitingHead = 0
    }
    next.dispatchState.waitingIn = null
    return next
  }
}
