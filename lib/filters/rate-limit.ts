/**
 * Requests per client IP, as a token bucket: `burst` requests at once, refilled at `rate` per
 * second. IPv6 clients are grouped by /64 (one host usually holds the whole prefix). Buckets that
 * are full again are forgotten on a sweep, so memory follows the clients active lately.
 */
import { clock } from '../core/clock.js'

interface Bucket {
  tokens: number
  /** clock ms of the last refill */
  at: number
}

/** Past this many tracked clients, full buckets are swept before a new one is added. */
const SWEEP_ABOVE = 65_536

export class RateLimiter {
  readonly #rate: number
  readonly #burst: number
  readonly #buckets = new Map<string, Bucket>()

  /** @param rate requests per second; @param burst the bucket's size */
  constructor (rate: number, burst: number) {
    this.#rate = rate / 1000
    this.#burst = burst
  }

  /** Take one token for `ip`. Returns 0 when the request may go, else seconds until it could (Retry-After). */
  take (ip: string): number {
    const key = ip.includes(':') ? prefix64(ip) : ip
    const now = clock.refresh()
    let bucket = this.#buckets.get(key)
    if (bucket === undefined) {
      if (this.#buckets.size >= SWEEP_ABOVE) this.#sweep(now)
      bucket = { tokens: this.#burst, at: now }
      this.#buckets.set(key, bucket)
    } else {
      bucket.tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.at) * this.#rate)
      bucket.at = now
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1
      return 0
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.#rate / 1000))
  }

  #sweep (now: number): void {
    for (const [key, bucket] of this.#buckets) {
      if (bucket.tokens + (now - bucket.at) * this.#rate >= this.#burst) this.#buckets.delete(key)
    }
  }
}

/** The first four groups of an IPv6 address, expanded enough to compare: `2001:db8:0:1`. */
export function prefix64 (ip: string): string {
  const double = ip.indexOf('::')
  let groups: string[]
  if (double === -1) {
    groups = ip.split(':')
  } else {
    const head = ip.slice(0, double).split(':').filter(g => g !== '')
    const tail = ip.slice(double + 2).split(':').filter(g => g !== '')
    groups = [...head, ...Array<string>(Math.max(0, 8 - head.length - tail.length)).fill('0'), ...tail]
  }
  return groups.slice(0, 4).map(g => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')
}
