/**
 * Least outstanding requests (HTTP) / least connections (TCP), weighted: the candidate with the
 * fewest in flight per unit of weight. Among equals the search starts after the target chosen
 * last, so ties go round in turn and an idle group does not send everything to its first target.
 */
import type { PickView, Policy } from './policy.js'

export class LeastActive implements Policy {
  #last = -1

  pick (view: PickView): number {
    const { candidates, count } = view
    // candidates are in target order: start at the first one after the last chosen
    let start = 0
    while (start < count && candidates[start] <= this.#last) start++
    if (start === count) start = 0
    let best = -1
    let bestScore = Infinity
    for (let k = 0; k < count; k++) {
      const index = candidates[(start + k) % count]
      const score = view.active(index) / view.weight(index)
      if (score < bestScore) {
        best = index
        bestScore = score
      }
    }
    this.#last = best
    return best
  }
}
