/**
 * Passive outlier detection: what real traffic says about a target. Connect failures and resets
 * in a row, 5xx responses in a row, or a success rate far below the group's over an interval eject
 * the target for a time that grows with each of its ejections (base × n, capped). Never more than
 * a share of the group is ejected at once: when half the fleet looks bad, the trouble is more
 * likely rp4's own network or a shared dependency, and ejecting more would only crush the rest.
 * Like Envoy's outlier detection; the counters cost a few integer writes per response.
 */
import type { OutlierModel } from '../../model/model.js'

/** What the detector acts on: the group's balancer. */
export interface Ejectable {
  readonly targets: readonly unknown[]
  eject (index: number, until: number, detail: string): void
  ejectedUntil (index: number): number
  readonly ejectedCount: number
  /** The ejection of `index` is over (its time ran out): say so. */
  ejectionEnded (index: number): void
}

export class OutlierDetector {
  readonly #model: OutlierModel
  readonly #target: Ejectable
  readonly #now: () => number
  #failures: Int32Array
  #errors5xx: Int32Array
  #ejections: Int32Array
  #windowTotal: Int32Array
  #windowOk: Int32Array
  #windowStart: number
  readonly #timers: Array<NodeJS.Timeout | null>

  constructor (model: OutlierModel, target: Ejectable, now: () => number) {
    const n = target.targets.length
    this.#model = model
    this.#target = target
    this.#now = now
    this.#failures = new Int32Array(n)
    this.#errors5xx = new Int32Array(n)
    this.#ejections = new Int32Array(n)
    this.#windowTotal = new Int32Array(n)
    this.#windowOk = new Int32Array(n)
    this.#windowStart = now()
    this.#timers = new Array(n).fill(null)
  }

  /** The group has `n` targets now (discovery added some): counters for the new ones. */
  resize (n: number): void {
    const old = this.#failures.length
    if (n <= old) return
    const grow = (from: Int32Array): Int32Array => {
      const to = new Int32Array(n)
      to.set(from)
      return to
    }
    this.#failures = grow(this.#failures)
    this.#errors5xx = grow(this.#errors5xx)
    this.#ejections = grow(this.#ejections)
    this.#windowTotal = grow(this.#windowTotal)
    this.#windowOk = grow(this.#windowOk)
    for (let i = old; i < n; i++) this.#timers.push(null)
  }

  /** A connect failure, or a reset before the response completed. */
  failure (index: number): void {
    this.#count(index, false)
    const limit = this.#model.consecutiveFailures
    if (limit > 0 && ++this.#failures[index] >= limit) this.#eject(index, `${this.#failures[index]} failures in a row`)
  }

  /** A response head with `status`. */
  response (index: number, status: number): void {
    this.#failures[index] = 0
    const ok = status < 500
    this.#count(index, ok)
    if (ok) {
      this.#errors5xx[index] = 0
      return
    }
    const limit = this.#model.consecutive5xx
    if (limit > 0 && ++this.#errors5xx[index] >= limit) this.#eject(index, `${this.#errors5xx[index]} 5xx responses in a row`)
  }

  #count (index: number, ok: boolean): void {
    const rate = this.#model.successRate
    if (rate === null) return
    this.#windowTotal[index]++
    if (ok) this.#windowOk[index]++
    const now = this.#now()
    if (now - this.#windowStart >= rate.interval) {
      this.#windowStart = now
      this.#evaluateSuccessRates(rate.minRequests, rate.stdevFactor)
    }
  }

  /** Targets whose success rate is more than `factor` standard deviations below the mean of those with enough requests. */
  #evaluateSuccessRates (minRequests: number, factor: number): void {
    const rates: Array<[number, number]> = []
    for (let i = 0; i < this.#windowTotal.length; i++) {
      if (this.#windowTotal[i] >= minRequests) rates.push([i, this.#windowOk[i] / this.#windowTotal[i]])
    }
    this.#windowTotal.fill(0)
    this.#windowOk.fill(0)
    // a rate is only "far below the group's" when there is a group to compare with
    if (rates.length < 2) return
    const mean = rates.reduce((a, [, r]) => a + r, 0) / rates.length
    const stdev = Math.sqrt(rates.reduce((a, [, r]) => a + (r - mean) ** 2, 0) / rates.length)
    const threshold = mean - factor * stdev
    for (const [index, rate] of rates) {
      if (rate < threshold) this.#eject(index, `success rate ${(rate * 100).toFixed(1)}% against the group's ${(mean * 100).toFixed(1)}%`)
    }
  }

  #eject (index: number, detail: string): void {
    const target = this.#target
    const now = this.#now()
    if (target.ejectedUntil(index) > now) return
    const n = target.targets.length
    if ((target.ejectedCount + 1) * 100 > this.#model.maxEjectedPercent * n) return
    const times = ++this.#ejections[index]
    const length = Math.min(this.#model.baseEjection * times, this.#model.maxEjection)
    this.#failures[index] = 0
    this.#errors5xx[index] = 0
    target.eject(index, now + length, `${detail}; ejected for ${length} ms (ejection ${times})`)
    this.#announceEnd(index, length)
  }

  /** Ejections are rare: a timer each is cheaper than a sweep, and the return is announced on time. */
  #announceEnd (index: number, ms: number): void {
    const old = this.#timers[index]
    if (old !== null) clearTimeout(old)
    const timer = setTimeout(() => {
      this.#timers[index] = null
      // timers may fire a little early on the balancer's clock: wait out the rest
      const left = this.#target.ejectedUntil(index) - this.#now()
      if (left > 0) this.#announceEnd(index, Math.ceil(left) + 1)
      else this.#target.ejectionEnded(index)
    }, ms)
    timer.unref()
    this.#timers[index] = timer
  }

  close (): void {
    for (const timer of this.#timers) if (timer !== null) clearTimeout(timer)
  }
}
