/**
 * Power of two choices: two distinct candidates at random, the less loaded one wins. The load is
 * requests in flight per unit of weight, optionally multiplied by the target's smoothed latency
 * (as Finagle's and Envoy's P2C do), so that a slow target sheds work before its queue shows it.
 * Random pairs avoid the herd that "least loaded of all" causes when many picks see the same
 * snapshot; two choices are enough to make the worst target's load exponentially unlikely.
 */
import { Random, type PickView, type Policy } from './policy.js'

export class PowerOfTwo implements Policy {
  readonly #random: Random
  readonly #latency: boolean

  constructor (seed: number, latency: boolean) {
    this.#random = new Random(seed)
    this.#latency = latency
  }

  pick (view: PickView): number {
    const { candidates, count } = view
    if (count === 1) return candidates[0]
    const i = this.#random.below(count)
    let j = this.#random.below(count - 1)
    if (j >= i) j++
    const a = candidates[i]
    const b = candidates[j]
    return this.#score(view, a) <= this.#score(view, b) ? a : b
  }

  #score (view: PickView, index: number): number {
    const load = (view.active(index) + 1) / view.weight(index)
    // a target with no measurement yet counts as 1 ms: it gets tried, and measured
    return this.#latency ? load * Math.max(1, view.latency(index)) : load
  }
}
