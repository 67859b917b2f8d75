/**
 * Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoravcsik, 2016; what HAProxy's
 * `hash-balance-factor` and Envoy's ring hash do). Each target owns points on a ring in proportion
 * to its weight; a key goes to the owner of the first point at or after its hash. A target that
 * leaves (down, ejected) gives its keys to the next owners round the ring and nobody else's keys
 * move, so caches behind the group stay warm. The bound: a target already carrying more than
 * `loadFactor` × the mean of the candidates' loads is passed over for the next one round the ring,
 * so one hot key cannot crush its owner.
 */
import type { PickView, Policy } from './policy.js'

/** Points per unit of weight: enough for an even spread of keys between a few targets. */
const POINTS_PER_WEIGHT = 160

/** FNV-1a over UTF-16 units, then a finalizer (murmur3's) so that near keys land far apart. */
export function hashKey (key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

export class HashRing implements Policy {
  /** Sorted point hashes, and the target owning each. */
  readonly #points: Uint32Array
  readonly #owners: Int32Array
  readonly #loadFactor: number
  /** Which targets are candidates in the pick under way, by target index. */
  readonly #candidate: Uint8Array

  /**
   * @param targets each target's name (what its points are derived from: stable across restarts and reorderings) and weight
   * @param present whether target `index` is in the group (gone ones own no points)
   */
  constructor (targets: ReadonlyArray<{ authority: string, weight: number }>, loadFactor: number, present: (index: number) => boolean) {
    const points: Array<[number, number]> = []
    targets.forEach((t, index) => {
      if (!present(index)) return
      const n = POINTS_PER_WEIGHT * t.weight
      for (let i = 0; i < n; i++) points.push([hashKey(`${t.authority}-${i}`), index])
    })
    // ties (rare) are broken by owner so that the ring does not depend on the targets' order
    points.sort((a, b) => a[0] - b[0] || targets[a[1]].authority.localeCompare(targets[b[1]].authority))
    this.#points = Uint32Array.from(points, p => p[0])
    this.#owners = Int32Array.from(points, p => p[1])
    this.#loadFactor = loadFactor
    this.#candidate = new Uint8Array(targets.length)
  }

  pick (view: PickView, key: string | null): number {
    if (key === null) throw new Error('hash policy picked without a key')
    const { candidates, count } = view
    const candidate = this.#candidate
    let total = 0
    for (let i = 0; i < count; i++) {
      candidate[candidates[i]] = 1
      total += view.active(candidates[i])
    }
    // the request being placed counts too; ceil, so that an idle group always has room
    const bound = Math.ceil(this.#loadFactor * (total + 1) / count)
    const points = this.#points
    const owners = this.#owners
    const n = points.length
    let at = lowerBound(points, hashKey(key))
    let first = -1
    let chosen = -1
    for (let step = 0; step < n; step++, at++) {
      const owner = owners[at % n]
      if (candidate[owner] === 0) continue
      if (first === -1) first = owner
      if (view.active(owner) < bound) {
        chosen = owner
        break
      }
    }
    for (let i = 0; i < count; i++) candidate[candidates[i]] = 0
    // every candidate at the bound cannot happen (their mean is below it), but never return nothing
    return chosen !== -1 ? chosen : first !== -1 ? first : candidates[0]
  }
}

function lowerBound (points: Uint32Array, value: number): number {
  let lo = 0
  let hi = points.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (points[mid] < value) lo = mid + 1
    else hi = mid
  }
  return lo
}
