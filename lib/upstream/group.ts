/**
 * An upstream group: targets, the balancer that picks among them, their health (active checks,
 * outlier detection), and the decisions that follow a failure: another target after a failed
 * connect (each tried once), a retry on another target when the group allows one (which
 * failures, how many, within the retry budget), one retry on a fresh connection when a reused one
 * closed before anything of the response came, otherwise a failure handed back to the request.
 * HTTP sessions and raw TCP relays (listeners, SNI passthrough) all pick through here, so every
 * policy and health signal serves all three.
 */
import { isDeepStrictEqual } from 'node:util'
import { clock } from '../core/clock.js'
import { ProxyError } from '../core/errors.js'
import { Balancer, type TransitionReason } from './balancer.js'
import { hashKey } from './balance/hash.js'
import type { DispatchOwner, GroupSettings, UpstreamEvents, UpstreamRequest } from './handler.js'
import type { HealthScheduler } from './health/active.js'
import { OutlierDetector } from './health/outlier.js'
import { Discovery, type DiscoveredGroup, type DnsResolver } from './discovery.js'
import type { DiscoveryEvent } from '../core/events.js'
import { Target, type TargetGroup } from './target.js'

export type { GroupSettings } from './handler.js'
export type { TransitionReason } from './balancer.js'

/** Failures of a sent request that another target may not share. */
const RETRYABLE = new Set(['upstream_reset', 'upstream_closed', 'response_timeout', 'bad_response', 'truncated_response'])

/** Never more of a group skipped after failed tries than this, without outlier detection's own share. */
const DEFAULT_MAX_OUT_PERCENT = 50

export interface GroupOptions {
  /** Runs the active checks of every group of a proxy. */
  scheduler?: HealthScheduler
  /** Service discovery's DNS (needed when the group has `discovery`). */
  resolver?: DnsResolver
  /** P2C's seed (fixed in specs). */
  seed?: number
}

export class Group implements TargetGroup, DispatchOwner, DiscoveredGroup {
  readonly settings: GroupSettings
  /** Every target the group ever had, by index (indices never move: requests hold them); gone ones are marked in the balancer. */
  readonly targets: Target[]
  readonly #configs: Array<GroupSettings['targets'][number]>
  readonly #scheduler: HealthScheduler | null
  readonly #discovery: Discovery | null
  readonly balancer: Balancer
  readonly events: UpstreamEvents
  readonly #outlier: OutlierDetector | null
  /** The proxy is closing: connections that become idle close instead of waiting in the pool. */
  closing = false
  /** Requests in flight over every target. */
  #active = 0
  /** Requests in flight that are retries (the budget counts them). */
  #retrying = 0
  /** Sticky sessions: target by cookie value, and each target's Set-Cookie value. */
  readonly #stickyIds: Map<string, number> | null = null
  readonly #stickyCookies: string[] | null = null
  /** Since start: retries sent, retries refused by the budget, requests refused by the circuit breaker. */
  readonly counts = { retries: 0, budgetExhausted: 0, circuitOpen: 0 }

  constructor (settings: GroupSettings, events: UpstreamEvents, options: GroupOptions = {}) {
    this.settings = settings
    this.events = events
    this.targets = settings.targets.map((config, i) => new Target(this, config, i))
    this.#configs = [...settings.targets]
    this.#scheduler = options.scheduler ?? null
    this.balancer = new Balancer(this.#configs, {
      policy: settings.balance,
      failedTarget: settings.timeouts.failedTarget,
      slowStart: settings.slowStart,
      panicThreshold: settings.panicThreshold,
      seed: options.seed,
    })
    this.balancer.onTransition = this.#transition
    const sticky = settings.sticky
    if (sticky !== null) {
      // an opaque id per target: the cookie must not tell clients the backends' addresses
      const ids = this.targets.map(t => hashKey(`${settings.name}/${t.authority}`).toString(36))
      this.#stickyIds = new Map(ids.map((id, i) => [id, i]))
      this.#stickyCookies = ids.map(id => `${sticky.cookie}=${id}; Path=/; HttpOnly; SameSite=Lax${sticky.maxAge > 0 ? `; Max-Age=${Math.floor(sticky.maxAge / 1000)}` : ''}`)
    }
    this.#outlier = settings.outlier === null ? null : new OutlierDetector(settings.outlier, this.balancer, clockFresh)
    if (settings.discovery !== null && options.resolver !== undefined) {
      this.#discovery = new Discovery(this, settings.discovery, options.resolver)
      // an SRV name is no address: nothing to send to until it is answered
      if (this.targets.some(t => t.config.srv)) this.balancer.update(this.#configs, this.#configs.map(c => c.srv))
      this.#discovery.start()
    } else {
      this.#discovery = null
    }
    if (settings.healthCheck !== null && this.#scheduler !== null) {
      for (const target of this.targets) if (!target.config.srv) this.#scheduler.add(target)
    }
  }

  /**
   * The targets are now `list` (discovery's answer). Those that stay keep their index, pool and
   * health; new ones are added at the end (checked, and slow-started); those gone are never
   * picked again, their idle connections close, busy ones finish.
   */
  updateTargets (list: ReadonlyArray<GroupSettings['targets'][number]>): void {
    const byAuthority = new Map(this.targets.map(t => [t.authority, t.index]))
    const present = new Set<number>()
    for (const config of list) {
      let index = byAuthority.get(config.authority)
      if (index === undefined) {
        index = this.targets.length
        const target = new Target(this, config, index)
        this.targets.push(target)
        this.#configs.push(config)
        byAuthority.set(config.authority, index)
        if (this.settings.healthCheck !== null) this.#scheduler?.add(target)
      } else {
        this.#configs[index] = config
        this.targets[index].config = config
      }
      present.add(index)
    }
    const removed = this.targets.map(t => !present.has(t.index))
    this.balancer.update(this.#configs, removed)
    this.#outlier?.resize(this.targets.length)
    for (const target of this.targets) if (removed[target.index] && target.ownsPool) target.pool.closeIdle()
  }

  /**
   * A reload replaced `old` with this group: each target that stays with the same connection
   * settings (address, TLS, and the group's pool, parser, connect-timeout and PROXY settings)
   * takes over its pool, so idle keep-alive connections survive; a target whose connection
   * settings changed starts a new pool, and the old one drains with the old generation.
   */
  takePools (old: Group): void {
    const same = (a: GroupSettings, b: GroupSettings): boolean => isDeepStrictEqual(a.pool, b.pool) && a.sendProxy === b.sendProxy &&
      a.maxHeaderSize === b.maxHeaderSize && a.maxHeaders === b.maxHeaders && a.timeouts.connect === b.timeouts.connect
    if (!same(this.settings, old.settings)) return
    for (const target of this.targets) {
      const was = old.targets.find(t => t.authority === target.authority && !old.balancer.isRemoved(t.index))
      if (was === undefined || !was.ownsPool || was.config.host !== target.config.host || was.config.port !== target.config.port ||
        !isDeepStrictEqual(was.config.tls, target.config.tls)) continue
      target.takePool(was)
    }
  }

  /** A reload replaced `old` with this group: its names start from the old answers (see Discovery.seed). */
  takeDiscovered (old: Group): void {
    if (this.#discovery !== null && old.#discovery !== null) this.#discovery.seed(old.#discovery)
  }

  discovered (event: DiscoveryEvent): void {
    this.events.discovery?.(event)
  }

  readonly #transition = (index: number, up: boolean, reason: TransitionReason, detail?: string): void => {
    this.events.targetHealth?.({ group: this.settings.name, target: this.targets[index].authority, up, reason, detail })
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
    if (state.counted === -1 && state.tried === null && this.#overLimits()) {
      this.counts.circuitOpen++
      request.fail(new ProxyError('circuit_open', `upstream group ${this.settings.name} is at its cap of requests`, 'upstream', 503))
      return
    }
    let index = -1
    let stuck = -1
    if (this.#stickyIds !== null) {
      const id = request.hashKey('cookie', this.settings.sticky!.cookie)
      stuck = id === null ? -1 : this.#stickyIds.get(id) ?? -1
      // the cookie's target while it is up and not tried yet; otherwise the policy decides
      if (stuck !== -1 && balancer.isUp(stuck) && (state.tried === null || !state.tried.includes(stuck))) index = stuck
    }
    if (index === -1) {
      const policy = balancer.policy
      const key = policy.kind === 'hash' ? request.hashKey(policy.by, policy.name) : null
      index = balancer.pick(key, state.tried)
      if (index === -1) {
        request.fail(new ProxyError('no_target', 'every target failed', 'upstream', 502))
        return
      }
    }
    if (this.#stickyCookies !== null) state.setCookie = index === stuck ? null : this.#stickyCookies[index]
    if (state.counted !== -1) balancer.release(state.counted)
    else this.#active++
    balancer.acquire(index)
    state.counted = index
    state.owner = this
    state.sentAt = clock.now
    state.perTryTimeout = this.settings.retries.perTryTimeout
    const target = this.targets[index]
    state.target = target
    target.pool.acquire(request, fresh)
  }

  #overLimits (): boolean {
    const { maxRequests, maxPending } = this.settings.limits
    if (maxRequests > 0 && this.#active >= maxRequests) return true
    if (maxPending > 0) {
      let pending = 0
      for (const target of this.targets) if (target.hasPool) pending += target.pool.waitingCount
      if (pending >= maxPending) return true
    }
    return false
  }

  /** A connection opened for `request` could not be made: that target is skipped for a while, the next one is tried. */
  connectFailed (request: UpstreamRequest, target: Target, error: ProxyError): void {
    this.events.upstreamError(error, target.authority)
    target.markDown()
    this.#outlier?.failure(target.index)
    // answered or abandoned meanwhile: nothing to fail over
    if (request.settled) return
    const state = request.dispatchState
    ;(state.tried ??= []).push(target.index)
    this.dispatch(request)
  }

  /** A relayed TCP connection could not be made to target `index`. */
  relayFailed (index: number): void {
    this.balancer.markDown(index)
    this.#outlier?.failure(index)
  }

  /**
   * The connection carrying `request` closed before its response completed. `mayRetry`: it was a
   * reused connection (the backend may have closed it while idle), or the request was pipelined
   * behind the one that failed.
   */
  connectionLost (request: UpstreamRequest, error: ProxyError, mayRetry: boolean): void {
    if (!request.detachUpstream()) return
    const state = request.dispatchState
    if (state.retryPending) {
      // the session gave up a retryable response on this connection: on to another target
      state.retryPending = false
      this.#retry(request)
      return
    }
    if (mayRetry && !state.retried && !request.responseStarted && request.replayable) {
      state.retried = true
      this.dispatch(request, true)
      return
    }
    if (state.counted !== -1 && error.code !== 'pipeline_aborted') this.#outlier?.failure(state.counted)
    const retryable = RETRYABLE.has(error.code) && !request.responseStarted
    if (retryable && state.counted !== -1) this.#failedTry(state.counted)
    if (retryable && this.#mayRetry(request)) {
      this.events.upstreamError(error, state.target?.authority ?? '')
      this.#retry(request)
      return
    }
    if (error.code !== 'pipeline_aborted' || request.responseStarted) {
      this.events.upstreamError(error, state.target?.authority ?? '')
    }
    request.fail(error)
  }

  /** Another try is allowed: retries left, the request may be sent again, and the budget has room. */
  #mayRetry (request: UpstreamRequest): boolean {
    const retries = this.settings.retries
    const state = request.dispatchState
    if (state.retries >= retries.count) return false
    if (!request.replayable && !(retries.nonIdempotent && request.resendable)) return false
    // another target must be left to try
    if ((state.tried?.length ?? 0) + 1 >= this.targets.length) return false
    if (state.retries === 0) {
      const budget = Math.max(retries.budgetMinConcurrency, Math.floor(this.#active * retries.budgetPercent / 100))
      if (this.#retrying >= budget) {
        this.counts.budgetExhausted++
        return false
      }
    }
    return true
  }

  #retry (request: UpstreamRequest): void {
    const state = request.dispatchState
    if (state.retries === 0) this.#retrying++
    state.retries++
    this.counts.retries++
    if (state.counted !== -1) (state.tried ??= []).push(state.counted)
    this.dispatch(request, true)
  }

  // ---- DispatchOwner ----

  release (index: number): void { this.balancer.release(index) }

  finished (retried: boolean): void {
    this.#active--
    if (retried) this.#retrying--
  }

  observe (index: number, status: number, ms: number): void {
    this.balancer.observeLatency(index, ms)
    this.#outlier?.response(index, status)
    const retries = this.settings.retries
    if (retries.count > 0 && retries.markDownAfter > 0) {
      if (retries.statuses.includes(status)) this.#failedTry(index)
      else this.balancer.triedOk(index)
    }
  }

  /**
   * A try of target `index` failed as the group retries on. Only when the user asked for retries:
   * then those statuses are failures by their own word (nginx counts `proxy_next_upstream`
   * conditions the same way); otherwise a backend's answers are its own business.
   */
  #failedTry (index: number): void {
    const retries = this.settings.retries
    if (retries.count === 0 || retries.markDownAfter === 0) return
    this.balancer.failedTry(index, retries.markDownAfter, this.settings.outlier?.maxEjectedPercent ?? DEFAULT_MAX_OUT_PERCENT)
  }

  retryOnStatus (request: UpstreamRequest, status: number): boolean {
    if (!this.settings.retries.statuses.includes(status) || !this.#mayRetry(request)) return false
    request.dispatchState.retryPending = true
    return true
  }

  /** Stop pooling: idle connections close now, busy ones when their requests are done. */
  close (): void {
    this.closing = true
    this.#outlier?.close()
    this.#discovery?.close()
    // a pool handed to a newer generation is its to close
    for (const target of this.targets) if (target.ownsPool) target.pool.closeIdle()
  }

  stats (): Array<{ target: string, open: number, idle: number, active: number, up: boolean }> {
    const balancer = this.balancer
    return this.targets.filter(t => !balancer.isRemoved(t.index)).map(t => ({
      target: t.authority,
      open: t.hasPool ? t.pool.openCount : 0,
      idle: t.hasPool ? t.pool.idleCount : 0,
      active: balancer.active(t.index),
      up: balancer.isUp(t.index),
    }))
  }

  /** Per target: `stats()`, requests waiting in its pool, and whether it is skipped after a failed connect. */
  health (): Array<{ target: string, weight: number, open: number, idle: number, waiting: number, waits: number, up: boolean }> {
    // targets discovery dropped (or a name standing for its answer) are no longer the group's
    return this.targets.filter(t => !this.balancer.isRemoved(t.index)).map(t => ({
      target: t.authority,
      weight: t.config.weight,
      open: t.hasPool ? t.pool.openCount : 0,
      idle: t.hasPool ? t.pool.idleCount : 0,
      waiting: t.hasPool ? t.pool.waitingCount : 0,
      waits: t.hasPool ? t.pool.waits : 0,
      up: !this.balancer.isDown(t.index),
    }))
  }
}

function clockFresh (): number { return clock.refresh() }
