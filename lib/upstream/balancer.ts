/**
 * Round robin over the targets, skipping a target for a while after it failed to connect
 * (passive health), and failing over to the next target when a connect fails.
 */
import { clock } from '../core/clock.js'
import type { TargetConfig } from '../config/resolve.js'
import type { Pool } from './pool.js'

export class Balancer {
  readonly pools: readonly Pool[]
  readonly #retryAfter: number
  #next = 0

  constructor (pools: readonly Pool[], failedTargetMs: number) {
    this.pools = pools
    this.#retryAfter = failedTargetMs
  }

  /**
   * The pool for a request's `attempt`-th try (0 first). First tries rotate; a failover takes the
   * targets after the first one in order, so that every target is tried once before giving up.
   * Targets marked down are skipped while any other is up. Returns null when every target was tried.
   */
  pick (first: number, attempt: number): Pool | null {
    const pools = this.pools
    const n = pools.length
    if (attempt >= n) return null
    if (attempt === 0) {
      const now = clock.now
      for (let i = 0; i < n; i++) {
        const pool = pools[(this.#next + i) % n]
        if (pool.downUntil <= now) {
          this.#next = (pool.index + 1) % n
          return pool
        }
      }
      // every target is down: try them anyway, a target may have come back
      const pool = pools[this.#next]
      this.#next = (this.#next + 1) % n
      return pool
    }
    return pools[(first + attempt) % n]
  }

  markDown (pool: Pool): void {
    pool.downUntil = clock.after(this.#retryAfter)
  }

  markUp (pool: Pool): void {
    pool.downUntil = 0
  }
}

export type { TargetConfig }
