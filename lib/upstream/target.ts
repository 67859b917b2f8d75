/**
 * One backend address of a group: its address and TLS settings, and its pool of HTTP connections
 * (opened on first use: a target of a raw TCP listener never needs one).
 */
import type { TargetConfig } from '../config/resolve.js'
import type { Group } from './group.js'
import { Pool } from './pool.js'

export class Target {
  readonly config: TargetConfig
  readonly group: Group
  /** Position in the group: what the balancer counts in. */
  readonly index: number
  #pool: Pool | null = null

  constructor (group: Group, config: TargetConfig, index: number) {
    this.group = group
    this.config = config
    this.index = index
  }

  get authority (): string { return this.config.authority }
  get pool (): Pool { return (this.#pool ??= new Pool(this)) }
  get hasPool (): boolean { return this.#pool !== null }

  /** Connecting failed: skipped by the balancer for a while (passive health). */
  markDown (): void { this.group.balancer.markDown(this.index) }
  markUp (): void { this.group.balancer.markUp(this.index) }
}
