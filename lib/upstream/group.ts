/**
 * An upstream group: targets, the balancer that picks among them, and the decisions that follow
 * a failure: another target after a failed connect (each tried once), one retry on a fresh
 * connection when a reused one closed before anything of the response came and the request may
 * be replayed, otherwise a failure handed back to the request. HTTP sessions and raw TCP relays
 * (listeners, SNI passthrough) all pick through here, so every policy serves all three.
 */
import { clock } from '../core/clock.js'
import { ProxyError } from '../core/errors.js'
import { Balancer, type TransitionReason } from './balancer.js'
import type { DispatchOwner, GroupSettings, UpstreamEvents, UpstreamRequest } from './handler.js'
import { Target, type TargetGroup } from './target.js'

export type { GroupSettings } from './handler.js'
export type { TransitionReason } from './balancer.js'

export class Group implements TargetGroup, DispatchOwner {
  readonly settings: GroupSettings
  readonly targets: readonly Target[]
  readonly balancer: Balancer
  readonly events: UpstreamEvents
  /** The proxy is closing: connections that become idle close instead of waiting in the pool. */
  closing = false

  constructor (settings: GroupSettings, events: UpstreamEvents, options: { seed?: number, now?: () => number } = {}) {
    this.settings = settings
    this.events = events
    this.targets = settings.targets.map((config, i) => new Target(this, config, i))
    this.balancer = new Balancer(settings.targets, {
      policy: settings.balance,
      failedTarget: settings.timeouts.failedTarget,
      slowStart: settings.slowStart,
      panicThreshold: settings.panicThreshold,
      seed: options.seed,
      now: options.now,
    })
    this.balancer.onTransition = this.#transition
  }

  readonly #transition = (index: number, up: boolean, reason: TransitionReason): void => {
    this.events.targetHealth?.({ group: this.settings.name, target: this.targets[index].authority, up, reason })
  }

  /**
   * The target index for a new try of a request or relayed connection; -1 when every target was
   * tried. `key`: its hash key (only asked for under the hash policy).
   */
  pick (key: string | null, tried: readonly number[] | null): number {
    return this.balancer.pick(key, tried)
  }

  /** Choose a target for `request` (one it has not tried, after a failure) and ask its pool for a connection. */
  dispatch (request: UpstreamRequest, fresh = false): void {
    const state = request.dispatchState
    const balancer = this.balancer
    const policy = balancer.policy
    const key = policy.kind === 'hash' ? request.hashKey(policy.by, policy.name) : null
    const index = balancer.pick(key, state.tried)
    if (index === -1) {
      request.fail(new ProxyError('no_target', 'every target failed', 'upstream', 502))
      return
    }
    if (state.counted !== -1) balancer.release(state.counted)
    balancer.acquire(index)
    state.counted = index
    state.owner = this
    state.sentAt = clock.now
    const target = this.targets[index]
    state.target = target
    target.pool.acquire(request, fresh)
  }

  /** A connection opened for `request` could not be made: that target is skipped for a while, the next one is tried. */
  connectFailed (request: UpstreamRequest, target: Target, error: ProxyError): void {
    this.events.upstreamError(error, target.authority)
    target.markDown()
    // answered or abandoned meanwhile: nothing to fail over
    if (request.settled) return
    const state = request.dispatchState
    ;(state.tried ??= []).push(target.index)
    this.dispatch(request)
  }

  /**
   * The connection carrying `request` closed before its response completed. `mayRetry`: it was a
   * reused connection (the backend may have closed it while idle), or the request was pipelined
   * behind the one that failed.
   */
  connectionLost (request: UpstreamRequest, error: ProxyError, mayRetry: boolean): void {
    if (!request.detachUpstream()) return
    const state = request.dispatchState
    if (mayRetry && !state.retried && !request.responseStarted && request.replayable) {
      state.retried = true
      this.dispatch(request, true)
      return
    }
    if (error.code !== 'pipeline_aborted' || request.responseStarted) {
      this.events.upstreamError(error, state.target?.authority ?? '')
    }
    request.fail(error)
  }

  // ---- DispatchOwner ----

  release (index: number): void { this.balancer.release(index) }

  observe (index: number, _status: number, ms: number): void {
    this.balancer.observeLatency(index, ms)
  }

  /** Stop pooling: idle connections close now, busy ones when their requests are done. */
  close (): void {
    this.closing = true
    for (const target of this.targets) if (target.hasPool) target.pool.closeIdle()
  }

  stats (): Array<{ target: string, open: number, idle: number, active: number, up: boolean }> {
    const balancer = this.balancer
    return this.targets.map(t => ({
      target: t.authority,
      open: t.hasPool ? t.pool.openCount : 0,
      idle: t.hasPool ? t.pool.idleCount : 0,
      active: balancer.active(t.index),
      up: balancer.isUp(t.index),
    }))
  }
}
