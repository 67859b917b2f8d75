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

/** `bytes` in `elapsed` ms, past the grace period, is slower than `minRate` bytes/s (0: no minimum). */
export function belowMinRate (bytes: number, elapsed: number, minRate: number): boolean {
  return minRate > 0 && elapsed >= RATE_GRACE_MS && bytes * 1000 / elapsed < minRate
}

/** How often a head or body being received is checked for its rate and its timeout, ms. */
export function rateCheckInterval (timeouts: Readonly<{ requestBody: number, requestHead: number }>): number {
  return Math.min(1000, timeouts.requestBody, timeouts.requestHead)
}

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

  /** The stretch began earlier than measured (bytes held while the protocol was detected): true when moved back. */
  backdate (since: number): boolean {
    if (since >= this.#since) return false
    this.#since = since
    return true
  }

  /** A byte of the body arrived (the pause timer starts again). */
  touch (): void {
    this.#lastByteAt = clock.now
  }

  /** Too slow, or stalled (`stalled` is the caller's judgement of its own deadline)? */
  check (now: number, stalled: boolean): Verdict {
    if (stalled) return Verdict.STALLED
    return belowMinRate(this.#bytes, now - this.#since, this.#minRate) ? Verdict.SLOW : Verdict.OK
  }
}
