/**
 * Power of two choices: two distinct candidates at random, the less loaded one wins. The load is
 * requests in flight per unit of weight, optionally multiplied by the target's smoothed latency
 * (as Finagle's and Envoy's P2C do), so that a slow target sheds work before its queue shows it.
 * Random pairs avoid the herd that "least loaded of all" causes when many picks see the same
 * snapshot; two choices are enough to make the worst target's load exponentially unlikely.
 *
 * Weights: the pair is drawn in proportion to the weights (slow start included), and a tie goes
 * to the first drawn. Comparing load per weight alone would not do: with nothing in flight every
 * pair ties at 0, and one target at weight 3 would win every pair it is in (all the traffic of a
 * quiet group) rather than three shares of four.
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
    let total = 0
    let equal = true
    const first = view.weight(candidates[0])
    for (let k = 0; k < count; k++) {
      const w = view.weight(candidates[k])
      total += w
      if (w !== first) equal = false
    }
    let i: number
    let j: number
    if (equal) {
      i = this.#random.below(count)
      j = this.#random.below(count - 1)
      if (j >= i) j++
    } else {
      i = this.#draw(view, total, -1)
      j = this.#draw(view, total - view.weight(candidates[i]), i)
    }
    const a = candidates[i]
    const b = candidates[j]
    return this.#score(view, a) <= this.#score(view, b) ? a : b
  }

  /** A candidate position drawn in proportion to weight, `skip` left out (`total`: the others' weights). */
  #draw (view: PickView, total: number, skip: number): number {
    const { candidates, count } = view
    let r = this.#random.fraction() * total
    let last = -1
    for (let k = 0; k < count; k++) {
      if (k === skip) continue
      last = k
      r -= view.weight(candidates[k])
      if (r < 0) return k
    }
    // rounding left a sliver: the last one
    return last
  }

  #score (view: PickView, index: number): number {
    // a target with no measurement yet counts as 1 ms: it gets tried, and measured
    if (this.#latency) return (view.active(index) + 1) / view.weight(index) * Math.max(1, view.latency(index))
    return view.active(index) / view.weight(index)
  }
}
