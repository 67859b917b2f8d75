/**
 * One backend address of a group: its address and TLS settings, its health as the group's
 * balancer keeps it, and its pool of HTTP connections (opened on first use: a target of a raw TCP
 * listener never needs one). What its pool and connections ask of the group goes through here.
 */
import type { ProxyError } from '../core/errors.js'
import type { Balancer } from './balancer.js'
import type { HealthCheckModel } from '../model/model.js'
import type { GroupSettings, UpstreamEvents, UpstreamRequest, UpstreamTarget } from './handler.js'
import type { CheckedTarget } from './health/active.js'
import { Pool } from './pool.js'

/** What a target needs from its group. */
export interface TargetGroup {
  readonly settings: GroupSettings
  readonly balancer: Balancer
  readonly events: UpstreamEvents
  readonly closing: boolean
  connectFailed (request: UpstreamRequest, target: Target, error: ProxyError): void
  connectionLost (request: UpstreamRequest, error: ProxyError, mayRetry: boolean): void
}

export class Target implements UpstreamTarget, CheckedTarget {
  /** Replaced when discovery finds the same address with other settings (a weight from SRV). */
  config: GroupSettings['targets'][number]
  readonly group: TargetGroup
  /** Position in the group: what the balancer counts in. */
  readonly index: number
  #pool: Pool | null = null

  constructor (group: TargetGroup, config: GroupSettings['targets'][number], index: number) {
    this.group = group
    this.config = config
    this.index = index
  }

  get authority (): string { return this.config.authority }
  get settings (): GroupSettings { return this.group.settings }
  get events (): UpstreamEvents { return this.group.events }
  get closing (): boolean { return this.group.closing }
  get pool (): Pool { return (this.#pool ??= new Pool(this)) }
  get hasPool (): boolean { return this.#pool !== null }
  /** Its pool is its own: not handed to the target of a newer generation (a reload). */
  get ownsPool (): boolean { return this.#pool !== null && this.#pool.target === this }

  /**
   * A reload kept this target with the same connection settings: its pool (idle connections, those
   * busy, requests waiting) goes on under this generation's target. The old target still sends
   * through it the requests its clients have left, and no longer closes it.
   */
  takePool (old: Target): void {
    const pool = old.#pool
    if (pool === null || this.#pool !== null) return
    pool.target = this
    this.#pool = pool
  }

  /** The active check of this target (CheckedTarget): only asked when the group has one. */
  get check (): HealthCheckModel { return this.group.settings.healthCheck! }
  /** Gone from the group (discovery): its checks pause. */
  get removed (): boolean { return this.group.balancer.isRemoved(this.index) }
  checked (passing: boolean, detail: string): void { this.group.balancer.setChecked(this.index, passing, detail) }

  /** Connecting failed: skipped by the balancer for a while (passive health). */
  markDown (): void { this.group.balancer.markDown(this.index) }
  markUp (): void { this.group.balancer.markUp(this.index) }

  connectFailed (request: UpstreamRequest, error: ProxyError): void { this.group.connectFailed(request, this, error) }
  connectionLost (request: UpstreamRequest, error: ProxyError, mayRetry: boolean): void { this.group.connectionLost(request, error, mayRetry) }
}
