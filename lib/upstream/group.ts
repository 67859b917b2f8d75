/**
 * An upstream group: targets, the balancing policy over them (round robin with passive health),
 * and the decisions that follow a failure: another target after a failed connect (each tried
 * once), one retry on a fresh connection when a reused one closed before anything of the response
 * came and the request may be replayed, otherwise a failure handed back to the request.
 */
import { ProxyError } from '../core/errors.js'
import { Balancer } from './balancer.js'
import type { GroupSettings, UpstreamEvents, UpstreamRequest } from './handler.js'
import { Target, type TargetGroup } from './target.js'

export type { GroupSettings } from './handler.js'

export class Group implements TargetGroup {
  readonly settings: GroupSettings
  readonly targets: readonly Target[]
  readonly balancer: Balancer
  readonly events: UpstreamEvents
  /** The proxy is closing: connections that become idle close instead of waiting in the pool. */
  closing = false

  constructor (settings: GroupSettings, events: UpstreamEvents) {
    this.settings = settings
    this.events = events
    this.targets = settings.targets.map((config, i) => new Target(this, config, i))
    this.balancer = new Balancer(settings.targets, settings.timeouts.failedTarget)
  }

  /** Choose a target for `request` (the next one in failover order after a failed connect) and ask its pool for a connection. */
  dispatch (request: UpstreamRequest, fresh = false): void {
    const state = request.dispatchState
    const index = this.balancer.pick(state.first, state.attempt)
    if (index === -1) {
      request.fail(new ProxyError('no_target', 'every target failed', 'upstream', 502))
      return
    }
    if (state.attempt === 0) state.first = index
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
    request.dispatchState.attempt++
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

  /** Stop pooling: idle connections close now, busy ones when their requests are done. */
  close (): void {
    this.closing = true
    for (const target of this.targets) if (target.hasPool) target.pool.closeIdle()
  }

  stats (): Array<{ target: string, open: number, idle: number }> {
    return this.targets.map(t => ({ target: t.authority, open: t.hasPool ? t.pool.openCount : 0, idle: t.hasPool ? t.pool.idleCount : 0 }))
  }

  /** Per target: `stats()`, requests waiting in its pool, and whether it is skipped after a failed connect. */
  health (): Array<{ target: string, open: number, idle: number, waiting: number, up: boolean }> {
    return this.targets.map((t, i) => ({
      target: t.authority,
      open: t.hasPool ? t.pool.openCount : 0,
      idle: t.hasPool ? t.pool.idleCount : 0,
      waiting: t.hasPool ? t.pool.waitingCount : 0,
      up: !this.balancer.isDown(i),
    }))
  }
}
