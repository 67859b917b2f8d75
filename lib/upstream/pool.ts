/**
 * The connections to one backend: idle ones kept for reuse (most recently used first: the warmest),
 * a cap on how many are open, and a queue of exchanges waiting for one.
 */
import type { TargetConfig } from '../config/resolve.js'
import type { Exchange } from '../proxy/exchange.js'
import type { ProxyCore } from '../proxy/core.js'
import { ProxyError } from '../core/errors.js'
import { UpstreamConnection } from './connection.js'
import { hasPendingOutput } from '../core/batch.js'

export class Pool {
  readonly target: TargetConfig
  readonly index: number
  readonly core: ProxyCore

  readonly #idle: UpstreamConnection[] = []
  readonly #open = new Set<UpstreamConnection>()
  readonly #waiting: Exchange[] = []
  #waitingHead = 0
  readonly #max: number
  readonly #maxQueue: number
  readonly #pipelining: number

  constructor (core: ProxyCore, target: TargetConfig, index: number) {
    this.core = core
    this.target = target
    this.index = index
    this.#max = core.config.upstream.maxConnections
    this.#maxQueue = core.config.upstream.maxQueue
    this.#pipelining = core.config.upstream.pipelining
  }

  get openCount (): number { return this.#open.size }
  get idleCount (): number { return this.#idle.length }

  /**
   * Find `exchange` a connection, in this order: with pipelining, a connection already written to
   * in this turn (the requests leave in one write); an idle one; a new one under the cap; with
   * pipelining, the least loaded pipeline; else a place in the queue. Pipelining behind a request
   * in flight comes after a new connection because a slow response would hold up the ones behind
   * it. `fresh` skips pooled connections (a retry after a reused one failed).
   */
  acquire (exchange: Exchange, fresh: boolean): void {
    const pipelining = this.#pipelining > 1 && exchange.pipelinable && !fresh
    if (!fresh) {
      if (pipelining) {
        // a connection already written to in this turn: the requests leave in one write
        const conn = this.#pipelineSlot(true)
        if (conn !== null) {
          conn.send(exchange)
          return
        }
      }
      const idle = this.#idle
      while (idle.length > 0) {
        const conn = idle.pop()!
        if (conn.usable) {
          conn.send(exchange)
          return
        }
      }
    }
    if (this.#open.size < this.#max) {
      this.#connect(exchange)
      return
    }
    if (pipelining) {
      const conn = this.#pipelineSlot(false)
      if (conn !== null) {
        conn.send(exchange)
        return
      }
    }
    if (this.#waiting.length - this.#waitingHead >= this.#maxQueue) {
      exchange.fail(new ProxyError('queue_full', `${this.target.authority}: connection queue full`, 'upstream', 503))
      return
    }
    exchange.waitingIn = this
    this.#waiting.push(exchange)
  }

  /** A connection finished every exchange it carried and may be reused. */
  release (conn: UpstreamConnection): void {
    if (conn.holds !== 0) {
      // paused by someone no longer on it: whoever it went to next would never be read. A defect
      // of ours, caught here so that it costs one connection, not a request
      const error = new ProxyError('internal_error', `internal error: ${this.target.authority} connection released while paused (holds ${conn.holds})`, 'internal', 502)
      this.core.upstreamError(error, this.target.authority)
      conn.destroy(error)
      return
    }
    const next = this.#nextWaiting()
    if (next !== null) {
      conn.send(next)
      return
    }
    if (this.core.closing) {
      conn.destroy()
      return
    }
    conn.setIdle()
    this.#idle.push(conn)
  }

  /** A connection with room in its pipeline takes waiting exchanges that may be pipelined. */
  fillPipeline (conn: UpstreamConnection): void {
    const waiting = this.#waiting
    while (this.#waitingHead < waiting.length && waiting[this.#waitingHead].pipelinable && conn.canPipeline(this.#pipelining)) {
      conn.send(this.#nextWaiting()!)
    }
  }

  /** A connection closed (or failed to connect): forget it, and open another for a waiting exchange. */
  forget (conn: UpstreamConnection): void {
    this.#open.delete(conn)
    const i = this.#idle.indexOf(conn)
    if (i !== -1) this.#idle.splice(i, 1)
    if (this.#open.size < this.#max && !this.core.closing) {
      const next = this.#nextWaiting()
      if (next !== null) this.#connect(next)
    }
  }

  /** An exchange stopped waiting (its client went away). */
  cancel (exchange: Exchange): void {
    const i = this.#waiting.indexOf(exchange, this.#waitingHead)
    if (i !== -1) this.#waiting.splice(i, 1)
    exchange.waitingIn = null
  }

  /** Close idle connections (the proxy is closing, or tests want a clean slate). */
  closeIdle (): void {
    for (const conn of this.#idle.splice(0)) conn.destroy()
  }

  #connect (exchange: Exchange): void {
    const conn = new UpstreamConnection(this, exchange)
    this.#open.add(conn)
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

  #nextWaiting (): Exchange | null {
    const waiting = this.#waiting
    if (this.#waitingHead >= waiting.length) return null
    const next = waiting[this.#waitingHead]
    waiting[this.#waitingHead++] = undefined as unknown as Exchange
    if (this.#waitingHead === waiting.length) {
      waiting.length = 0
      this.#waitingHead = 0
    }
    next.waitingIn = null
    return next
  }
}
