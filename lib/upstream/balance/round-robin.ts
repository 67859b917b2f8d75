/**
 * Smooth weighted round robin (nginx's): each pick adds every candidate's weight to its running
 * score, takes the highest, and takes the total off the winner. Weights 5:1:1 give
 * a a b a c a a rather than a a a a a b c, so a heavy target's turns are spread, and with equal
 * weights it is plain rotation. Only candidates take part, so a target that is down neither
 * accumulates turns nor comes back with a burst.
 */
import type { PickView, Policy } from './policy.js'

export class RoundRobin implements Policy {
  readonly #current: Float64Array

  constructor (targets: number) {
    this.#current = new Float64Array(targets)
  }

  pick (view: PickView): number {
    const current = this.#current
    const { candidates, count } = view
    let total = 0
    let best = -1
    for (let i = 0; i < count; i++) {
      const index = candidates[i]
      const weight = view.weight(index)
      current[index] += weight
      total += weight
      if (best === -1 || current[index] > current[best]) best = index
    }
    current[best] -= total
    return best
  }
}
