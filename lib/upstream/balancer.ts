/**
 * Round robin over one route's targets, skipping a target for a while after it failed to connect
 * (passive health), and failing over to the next target when a connect fails. Index-based, so
 * that HTTP pools and raw TCP relays use the same one.
 */
import { clock } from '../core/clock.js'
import type { TargetModel } from '../model/model.js'

export class Balancer {
  readonly targets: readonly Pick<TargetModel, 'authority'>[]
  readonly #downUntil: number[]
  readonly #retryAfter: number
  #next = 0

  constructor (targets: readonly Pick<TargetModel, 'authority'>[], failedTargetMs: number) {
    this.targets = targets
    this.#downUntil = targets.map(() => 0)
    this.#retryAfter = failedTargetMs
  }

  /**
   * The target index for the `attempt`-th try (0 first) of a request or connection whose first
   * try was `first`; -1 when every target was tried. First tries rotate over the targets that are
   * up (all of them when none is: one may be back); a failover takes the targets after the first
   * one in order, so that each is tried once.
   */
  pick (first: number, attempt: number): number {
    const n = this.targets.length
    if (attempt >= n) return -1
    if (attempt > 0) return (first + attempt) % n
    const now = clock.now
    for (let i = 0; i < n; i++) {
      const index = (this.#next + i) % n
      if (this.#downUntil[index] <= now) {
        this.#next = (index + 1) % n
        return index
      }
    }
    const index = this.#next
    this.#next = (index + 1) % n
    return index
  }

  markDown (index: number): void { this.#downUntil[index] = clock.after(this.#retryAfter) }
  markUp (index: number): void { this.#downUntil[index] = 0 }
  /** A reload replaced the group: the targets that stay keep their health. */
  takeHealth (old: Balancer): void {
    this.targets.forEach((target, i) => {
      const j = old.targets.findIndex(t => t.authority === target.authority)
      if (j !== -1) this.#downUntil[i] = old.#downUntil[j]
    })
  }

  /** Skipped for now: it failed to connect within the failed-target time. */
  isDown (index: number): boolean { return this.#downUntil[index] > clock.refresh() }
}
