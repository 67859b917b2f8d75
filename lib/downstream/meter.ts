/**
 * The slow-client meter: a request head must be complete within its timeout, and a head or body
 * must keep arriving at `minDataRate` bytes/s once it has had RATE_GRACE_MS to get going (as
 * Apache's mod_reqtimeout, MinRate=500); a body may not pause longer than its timeout. Time rp4
 * itself holds the client back does not count: the owner restarts the stretch when it lets go.
 */
import { clock } from '../core/clock.js'

/** A head or body slower than the minimum rate is refused once it has had this long to get going. */
const RATE_GRACE_MS = 2000

export const enum Verdict { OK, STALLED, SLOW }

export class RequestMeter {
  readonly #minRate: number
  /** When the measured stretch began, its bytes since, the last byte's time. */
  #since = 0
  #bytes = 0
  #lastByteAt = 0

  constructor (minRate: number) {
    this.#minRate = minRate
  }

  get lastByteAt (): number { return this.#lastByteAt }

  /** Measure from now: the rate, and the time since the last byte. Returns now. */
  start (): number {
    const now = clock.refresh()
    this.#since = now
    this.#lastByteAt = now
    this.#bytes = 0
    return now
  }

  bytes (n: number): void {
    this.#bytes += n
  }

  /** A byte of the body arrived (the pause timer starts again). */
  touch (): void {
    this.#lastByteAt = clock.now
  }

  /** Too slow, or stalled (`stalled` is the caller's judgement of its own deadline)? */
  check (now: number, stalled: boolean): Verdict {
    if (stalled) return Verdict.STALLED
    const elapsed = now - this.#since
    const min = this.#minRate
    return min > 0 && elapsed >= RATE_GRACE_MS && this.#bytes * 1000 / elapsed < min ? Verdict.SLOW : Verdict.OK
  }
}
