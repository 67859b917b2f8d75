/**
 * One coarse clock for every timeout in the process. Connections keep a `deadline` (ms on this
 * clock, 0 for none) and register once; a single timer sweeps them. Arming a timeout on the hot
 * path is one number written, not a timer created.
 */
export interface Timed {
  /** When to fire, on `clock.now`'s scale; 0 disarms. */
  deadline: number
  onTimeout (): void
  /** `onTimeout` threw: the owner closes what it owns (the process goes on). */
  onInternalError? (err: unknown): void
}

/** Sweep period: the resolution of every timeout. */
const RESOLUTION = 50

class Clock {
  /** Milliseconds, refreshed on every sweep and whenever read through `refresh()`. */
  now = performance.now()
  readonly #items = new Set<Timed>()
  #timer: NodeJS.Timeout | null = null

  add (item: Timed): void {
    this.#items.add(item)
    if (this.#timer === null) {
      this.now = performance.now()
      this.#timer = setInterval(sweep, RESOLUTION)
      this.#timer.unref()
    }
  }

  delete (item: Timed): void {
    this.#items.delete(item)
    if (this.#items.size === 0 && this.#timer !== null) {
      clearInterval(this.#timer)
      this.#timer = null
    }
  }

  /** `now + ms`, on a reading of this turn (`turn()`). */
  after (ms: number): number {
    return this.turn() + ms
  }

  /** A fresh reading of the clock. */
  refresh (): number {
    this.now = performance.now()
    return this.now
  }

  /**
   * While one socket read is handled (a write batch, core/batch.ts), the reading taken when it
   * began; otherwise a fresh one. Everything that read triggers (the request it starts, the
   * deadlines it arms) happened when its bytes arrived, and the clock is read once for all of it.
   */
  turn (): number {
    return this.#pinned ? this.now : this.refresh()
  }

  #pinned = false

  /** A socket read is being handled: read the clock once for it. */
  pin (): void {
    this.now = performance.now()
    this.#pinned = true
  }

  unpin (): void {
    this.#pinned = false
  }

  sweep (): void {
    const now = this.refresh()
    for (const item of this.#items) {
      if (item.deadline !== 0 && item.deadline <= now) {
        item.deadline = 0
        try {
          item.onTimeout()
        } catch (err) {
          if (item.onInternalError !== undefined) item.onInternalError(err)
          else this.delete(item)
        }
      }
    }
  }
}

export const clock = new Clock()

let dateText = ''
/** When (on `clock.now`'s scale) the wall clock's second changes next: the Date is made again then. */
let dateUntil = -1

/**
 * Now as an HTTP date (RFC 9110 §5.6.7, IMF-fixdate), for the Date of rp4's own responses: made
 * once per second of the wall clock, so that every response of that second shares one string.
 * Within the second it costs no clock read beyond the one this turn took (`turn()`); the wall
 * clock is asked again when the monotonic clock says its second is over.
 */
export function httpNow (): string {
  const now = clock.turn()
  if (now >= dateUntil) {
    const ms = Date.now()
    dateText = new Date(ms - (ms % 1000)).toUTCString()
    dateUntil = now + (1000 - (ms % 1000))
  }
  return dateText
}

function sweep (): void {
  clock.sweep()
}
