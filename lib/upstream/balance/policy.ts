/**
 * What a balancing policy sees: the targets it may choose from now (the balancer has already left
 * out those that are down, ejected, tried or held back for backups), each with its effective
 * weight (slow start included) and its load. A policy only chooses; health is not its business.
 */

/** The candidates of one pick, and what a policy may read of each target (by target index). */
export interface PickView {
  /** Target indices to choose from, `count` of them. */
  readonly candidates: Int32Array
  readonly count: number
  /** Weight now: the configured weight, scaled down during slow start (never 0). */
  weight (index: number): number
  /** Requests (HTTP) or connections (TCP) in flight. */
  active (index: number): number
  /** Smoothed latency of its responses, ms (0 before any). */
  latency (index: number): number
}

export interface Policy {
  /** A target index among `view.candidates`; `key` is the request's hash key when the policy asked for one. */
  pick (view: PickView, key: string | null): number
}

/**
 * A small deterministic generator (xorshift32): P2C's random pairs are reproducible from a seed
 * in specs, and cost no crypto call per request.
 */
export class Random {
  #state: number

  constructor (seed: number) {
    this.#state = (seed >>> 0) || 0x9e3779b9
  }

  /** An integer in [0, n). */
  below (n: number): number {
    let x = this.#state
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.#state = x >>> 0
    return this.#state % n
  }

  /** A number in [0, 1). */
  fraction (): number {
    return this.below(0x100000000) / 0x100000000
  }
}
