/**
 * Which target a request (or a relayed connection) goes to. The balancer keeps each target's
 * state (weight, backup, down after a refused connect or failed tries in a row, active-check
 * health, outlier ejection, load, latency, when it came back) and decides which targets may be chosen now; the policy
 * (balance/) chooses among them. Index-based, so that HTTP pools and raw TCP relays share it.
 *
 * Who may be chosen, in order: the primaries that are up; when none is, the backups that are up;
 * when none of those either, every primary (one may be back; a failed connect fails over). With a
 * panic threshold, once fewer than that share of the primaries is up, every primary is chosen
 * from again rather than piling the whole load onto the few left. A failover or retry never
 * picks a target it already tried; when only tried ones are left, the request has run out.
 */
import { clock } from '../core/clock.js'
import type { BalanceModel } from '../model/model.js'
import type { TargetHealthEvent } from './handler.js'
import { HashRing } from './balance/hash.js'
import { LeastActive } from './balance/least.js'
import { PowerOfTwo } from './balance/p2c.js'
import type { PickView, Policy } from './balance/policy.js'
import { RoundRobin } from './balance/round-robin.js'

export type { BalanceModel }

export interface BalancedTarget {
  readonly authority: string
  readonly weight: number
  readonly backup: boolean
}

export interface BalancerOptions {
  policy: BalanceModel
  /** A target that failed to connect is skipped this long, ms. */
  failedTarget: number
  /** A target that comes back ramps up its share over this long, ms; 0: at once. */
  slowStart: number
  /** Percent of primaries up below which every primary is chosen from; 0: never. */
  panicThreshold: number
  /** P2C's random pairs (fixed in specs). */
  seed?: number
  /** The time, ms (specs drive slow start with their own). */
  now?: () => number
}

/** Why a target stopped or started being chosen. */
export type TransitionReason = TargetHealthEvent['reason']

/** Share of the first weight a target gets at the start of its slow start. */
const SLOW_START_FLOOR = 0.1
/** Weight of a new latency sample in the moving average. */
const EWMA_ALPHA = 0.3
/**
 * How fast a latency estimate fades with no new sample, ms (its time constant: e^-1 after this
 * long). Without it a target measured slow once, even by one response that was slow for a reason
 * of the moment, could lose every pair from then on and never be measured again: the latency
 * policy would starve it for good. Fading, its estimate falls until it wins a pair and gets a
 * fresh sample (Finagle's peak EWMA decays the same way, with the same 10 s): a target that is
 * still slow goes back up and is tried again later, one that recovered takes its share again.
 */
const LATENCY_FADE_MS = 10_000

export class Balancer implements PickView {
  targets: readonly BalancedTarget[]
  readonly #options: BalancerOptions
  #policy: Policy
  /** Requests without a hash key, and the hash policy's fallback. */
  #roundRobin: RoundRobin
  readonly #now: () => number
  /** A fresh reading, for deadlines set now. */
  readonly #fresh: () => number
  #downUntil: Float64Array
  #ejectedUntil: Float64Array
  /** Skipped after failed tries in a row (gateway-style failures the group retries on). */
  #skippedUntil: Float64Array
  #failedTries: Int32Array
  #failing: Uint8Array
  #recoveredAt: Float64Array
  #active: Int32Array
  #latency: Float64Array
  /** When each latency estimate got its last sample (`#now`). */
  #latencyAt: Float64Array
  /** Gone from the group (service discovery): never chosen, its index kept should it come back. */
  #removed: Uint8Array
  #primaries: number
  /** Scratch list of the current pick's candidates (picks are synchronous: one is enough). */
  candidates: Int32Array
  count = 0
  /** Told when a target stops or starts being chosen (not when a skip time merely runs out). */
  onTransition: ((index: number, up: boolean, reason: TransitionReason, detail?: string) => void) | null = null

  constructor (targets: readonly BalancedTarget[], options: BalancerOptions) {
    const n = targets.length
    this.targets = targets
    this.#options = options
    this.#now = options.now ?? clockNow
    this.#fresh = options.now ?? clockFresh
    this.#downUntil = new Float64Array(n)
    this.#ejectedUntil = new Float64Array(n)
    this.#skippedUntil = new Float64Array(n)
    this.#failedTries = new Int32Array(n)
    this.#failing = new Uint8Array(n)
    this.#recoveredAt = new Float64Array(n)
    this.#active = new Int32Array(n)
    this.#latency = new Float64Array(n)
    this.#latencyAt = new Float64Array(n)
    this.#removed = new Uint8Array(n)
    this.candidates = new Int32Array(n)
    this.#primaries = targets.filter(t => !t.backup).length
    this.#roundRobin = new RoundRobin(n)
    const policy = options.policy
    switch (policy.kind) {
      case 'round-robin': this.#policy = this.#roundRobin; break
      case 'least-conn': this.#policy = new LeastActive(); break
      case 'p2c': this.#policy = new PowerOfTwo(options.seed ?? 0x5eed, policy.latency); break
      case 'hash': this.#policy = new HashRing(targets, policy.loadFactor, () => true); break
    }
  }

  /**
   * The group's targets changed (service discovery, a reload): `targets` is the same list grown
   * by the new ones at the end (indices never move: requests in flight hold them), `removed`
   * says which are gone. What a staying target has (load, health, latency) stays; a new one
   * starts its slow start now.
   */
  update (targets: readonly BalancedTarget[], removed: readonly boolean[]): void {
    const old = this.#active.length
    const n = targets.length
    this.targets = targets
    if (n > old) {
      const grow = <T extends Float64Array | Int32Array | Uint8Array>(from: T, make: (n: number) => T): T => {
        const to = make(n)
        to.set(from)
        return to
      }
      this.#downUntil = grow(this.#downUntil, k => new Float64Array(k))
      this.#ejectedUntil = grow(this.#ejectedUntil, k => new Float64Array(k))
      this.#skippedUntil = grow(this.#skippedUntil, k => new Float64Array(k))
      this.#failedTries = grow(this.#failedTries, k => new Int32Array(k))
      this.#failing = grow(this.#failing, k => new Uint8Array(k))
      this.#recoveredAt = grow(this.#recoveredAt, k => new Float64Array(k))
      this.#active = grow(this.#active, k => new Int32Array(k))
      this.#latency = grow(this.#latency, k => new Float64Array(k))
      this.#latencyAt = grow(this.#latencyAt, k => new Float64Array(k))
      this.#removed = grow(this.#removed, k => new Uint8Array(k))
      this.candidates = new Int32Array(n)
      const now = this.#now()
      for (let i = old; i < n; i++) this.#recoveredAt[i] = now
    }
    let primaries = 0
    for (let i = 0; i < n; i++) {
      const gone = removed[i] ? 1 : 0
      // back after being gone: its share ramps up again
      if (this.#removed[i] === 1 && gone === 0) this.#recoveredAt[i] = this.#now()
      this.#removed[i] = gone
      if (gone === 0 && !targets[i].backup) primaries++
    }
    this.#primaries = primaries
    this.#roundRobin = new RoundRobin(n)
    const policy = this.#options.policy
    if (policy.kind === 'round-robin') this.#policy = this.#roundRobin
    // the ring is rebuilt over who is present; points depend only on each target's name, so a
    // key moves only when its own target came or went
    else if (policy.kind === 'hash') this.#policy = new HashRing(targets, policy.loadFactor, i => this.#removed[i] === 0)
  }

  /** Gone from the group. */
  isRemoved (index: number): boolean { return this.#removed[index] === 1 }

  get policy (): BalanceModel { return this.#options.policy }
  /** The request's hash key is wanted (hash policy). */
  get wantsKey (): boolean { return this.#options.policy.kind === 'hash' }

  /**
   * A target index for a new try; -1 when every target was tried. `tried` lists the targets this
   * request already tried (null on its first try); `key` its hash key, null when it has none
   * (then round robin, as HAProxy does, rather than every keyless request on one target).
   */
  pick (key: string | null, tried: readonly number[] | null): number {
    const now = this.#now()
    const targets = this.targets
    const candidates = this.candidates
    let up = 0
    let count = 0
    for (let i = 0; i < targets.length; i++) {
      if (targets[i].backup || !this.#isUp(i, now)) continue
      up++
      if (tried === null || !tried.includes(i)) candidates[count++] = i
    }
    const panicking = this.#options.panicThreshold > 0 && up * 100 < this.#options.panicThreshold * this.#primaries
    if (up === 0 || panicking) {
      count = 0
      if (up === 0) {
        for (let i = 0; i < targets.length; i++) {
          if (targets[i].backup && this.#isUp(i, now) && (tried === null || !tried.includes(i))) candidates[count++] = i
        }
      }
      if (count === 0) count = this.#untried(tried, false)
    }
    // what is up was all tried: the rest, each once, before giving up
    if (count === 0) count = this.#untried(tried, false)
    if (count === 0) count = this.#untried(tried, true)
    if (count === 0) return -1
    this.count = count
    if (count === 1) return candidates[0]
    return key === null && this.#policy !== this.#roundRobin && this.wantsKey ? this.#roundRobin.pick(this) : this.#policy.pick(this, key)
  }

  /** Primaries (or backups) not tried yet, whatever their state, into the candidates. */
  #untried (tried: readonly number[] | null, backup: boolean): number {
    let count = 0
    for (let i = 0; i < this.targets.length; i++) {
      if (this.targets[i].backup === backup && this.#removed[i] === 0 && (tried === null || !tried.includes(i))) this.candidates[count++] = i
    }
    return count
  }

  #isUp (index: number, now: number): boolean {
    return this.#failing[index] === 0 && this.#downUntil[index] <= now && this.#ejectedUntil[index] <= now && this.#skippedUntil[index] <= now && this.#removed[index] === 0
  }

  /** May be chosen now (not down, failing its checks or ejected). */
  isUp (index: number): boolean { return this.#isUp(index, this.#now()) }

  // ---- PickView ----

  weight (index: number): number {
    const weight = this.targets[index].weight
    const window = this.#options.slowStart
    if (window === 0) return weight
    const now = this.#now()
    const ejected = this.#ejectedUntil[index]
    const since = Math.max(this.#recoveredAt[index], ejected <= now ? ejected : 0)
    if (since === 0 || now - since >= window) return weight
    return weight * Math.max(SLOW_START_FLOOR, (now - since) / window)
  }

  active (index: number): number { return this.#active[index] }
  /** The smoothed latency, faded by the time since its last sample (LATENCY_FADE_MS). */
  latency (index: number): number {
    const latency = this.#latency[index]
    if (latency === 0) return 0
    const age = this.#now() - this.#latencyAt[index]
    return age <= 0 ? latency : latency * Math.exp(-age / LATENCY_FADE_MS)
  }

  // ---- what the group reports ----

  /** A request or relayed connection went to the target / left it. */
  acquire (index: number): void { this.#active[index]++ }
  release (index: number): void { this.#active[index]-- }

  /** A response head came `ms` after the request was sent. */
  observeLatency (index: number, ms: number): void {
    const old = this.latency(index)
    // never 0 again once measured: 0 means "no measurement yet"
    this.#latency[index] = Math.max(Number.MIN_VALUE, old === 0 ? ms : old + EWMA_ALPHA * (ms - old))
    this.#latencyAt[index] = this.#now()
  }

  /** Connecting failed: skipped for the failed-target time (passive health). */
  markDown (index: number): void {
    const wasUp = this.isUp(index)
    this.#downUntil[index] = this.#fresh() + this.#options.failedTarget
    if (wasUp) this.onTransition?.(index, false, 'connect_failed')
  }

  /** A connection was made. */
  markUp (index: number): void {
    if (this.#downUntil[index] === 0) return
    const wasUp = this.isUp(index)
    this.#downUntil[index] = 0
    this.#recoveredAt[index] = this.#now()
    if (!wasUp && this.isUp(index)) this.onTransition?.(index, true, 'connected')
  }

  /**
   * A try failed in a way the group retries on (a gateway-style status, a reset, a timeout before
   * the response). After `limit` in a row the target is skipped for the failed-target time, as
   * after a refused connect (nginx's max_fails): a backend answering 503 to everything stops
   * taking a share of the requests, and least-conn stops preferring it for answering fastest.
   * A new connection to it does not end this (it connects fine: that is not the trouble). Never
   * when it would leave more than `maxPercent` of the group out.
   */
  failedTry (index: number, limit: number, maxPercent: number): void {
    const n = ++this.#failedTries[index]
    if (n < limit) return
    const now = this.#fresh()
    if (!this.#isUp(index, now)) return
    let present = 0
    let out = 0
    for (let i = 0; i < this.targets.length; i++) {
      if (this.#removed[i] === 1) continue
      present++
      if (!this.#isUp(i, now)) out++
    }
    // still counting: once another target is back, the next failure skips this one
    if ((out + 1) * 100 > maxPercent * present) return
    this.#failedTries[index] = 0
    this.#skippedUntil[index] = now + this.#options.failedTarget
    this.onTransition?.(index, false, 'failed_tries', `${n} failed tries in a row; skipped for ${this.#options.failedTarget} ms`)
  }

  /** A try got an answer the group does not retry on: the failures in a row start again. */
  triedOk (index: number): void { this.#failedTries[index] = 0 }

  /** The active checks' verdict changed. */
  setChecked (index: number, passing: boolean, detail?: string): void {
    const failing = passing ? 0 : 1
    if (this.#failing[index] === failing) return
    const wasUp = this.isUp(index)
    this.#failing[index] = failing
    if (passing) {
      this.#recoveredAt[index] = this.#now()
      // a passing check is better news than an old refused connect
      this.#downUntil[index] = 0
    }
    const isUp = this.isUp(index)
    if (wasUp !== isUp) this.onTransition?.(index, isUp, passing ? 'check_passed' : 'check_failed', detail)
  }

  /** Ejected by outlier detection until `until` (ms on the balancer's clock). */
  eject (index: number, until: number, detail?: string): void {
    const wasUp = this.isUp(index)
    this.#ejectedUntil[index] = until
    if (wasUp) this.onTransition?.(index, false, 'ejected', detail)
  }

  /** An ejection's time ran out. */
  ejectionEnded (index: number): void {
    if (this.#isUp(index, this.#fresh())) this.onTransition?.(index, true, 'ejection_ended')
  }

  ejectedUntil (index: number): number { return this.#ejectedUntil[index] }

  /** How many of the targets are ejected now. */
  get ejectedCount (): number {
    const now = this.#now()
    let n = 0
    for (let i = 0; i < this.targets.length; i++) if (this.#ejectedUntil[i] > now) n++
    return n
  }

  /** A reload replaced the group: the targets that stay keep their health (passive, checks, ejections). */
  takeHealth (old: Balancer): void {
    this.targets.forEach((target, i) => {
      const j = old.targets.findIndex(t => t.authority === target.authority)
      if (j === -1 || old.#removed[j] === 1) return
      this.#downUntil[i] = old.#downUntil[j]
      this.#failing[i] = old.#failing[j]
      this.#ejectedUntil[i] = old.#ejectedUntil[j]
      this.#skippedUntil[i] = old.#skippedUntil[j]
      this.#failedTries[i] = old.#failedTries[j]
      this.#recoveredAt[i] = old.#recoveredAt[j]
    })
  }

  /** Not to be chosen now (down, failing its checks or ejected). */
  isDown (index: number): boolean { return !this.isUp(index) }
}

function clockNow (): number { return clock.now }
function clockFresh (): number { return clock.refresh() }
