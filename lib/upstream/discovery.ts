/**
 * Service discovery: the targets of a group written as DNS names are re-resolved in the
 * background, and the group's targets follow the answers. Every A/AAAA address of a `HOST:PORT`
 * name becomes a target on that port; an `srv://NAME` target becomes the targets its SRV records
 * give (host, port, weight; records of a higher priority number are backups). An answer is kept
 * for its TTL within [minTtl, maxTtl] (SRV answers carry none through Node's resolver: their
 * hosts' A/AAAA TTLs count). A name that stops resolving keeps its last answer for `keepStale`
 * and says so. Targets that stay from one answer to the next keep their pools and health (the
 * group matches them by address).
 *
 * One timer per name, not per target or request: a group has a handful of names at most.
 */
import { isIP } from 'node:net'
import type { DiscoveryModel } from '../model/model.js'
import type { DiscoveryEvent } from '../core/events.js'
import type { GroupSettings } from './handler.js'

export type TargetConfig = GroupSettings['targets'][number]

/** What discovery asks of DNS (a `dns.promises.Resolver`, or the spec's). */
export interface DnsResolver {
  resolve4 (name: string, options: { ttl: true }): Promise<Array<{ address: string, ttl: number }>>
  resolve6 (name: string, options: { ttl: true }): Promise<Array<{ address: string, ttl: number }>>
  resolveSrv (name: string): Promise<Array<{ name: string, port: number, priority: number, weight: number }>>
}

/** What discovery needs from its group. */
export interface DiscoveredGroup {
  readonly settings: GroupSettings
  /** The complete list of targets now, in a stable order. */
  updateTargets (targets: readonly TargetConfig[]): void
  discovered (event: DiscoveryEvent): void
}

interface Name {
  readonly config: TargetConfig
  /** The last answer; null until the first. */
  answer: TargetConfig[] | null
  lastOk: number
  timer: NodeJS.Timeout | null
}

export class Discovery {
  readonly #group: DiscoveredGroup
  readonly #model: DiscoveryModel
  readonly #resolver: DnsResolver
  /** The configured targets, in order: a fixed address stays as it is, a name is looked up. */
  readonly #entries: Array<TargetConfig | Name>
  #closed = false

  constructor (group: DiscoveredGroup, model: DiscoveryModel, resolver: DnsResolver) {
    this.#group = group
    this.#model = model
    this.#resolver = resolver
    this.#entries = group.settings.targets.map(config => config.srv || isIP(config.host) === 0
      ? { config, answer: null, lastOk: 0, timer: null }
      : config)
  }

  /** Whether a configured target is looked up (until its first answer, a name target is connected to by name; an SRV one not at all). */
  static isDynamic (config: TargetConfig): boolean { return config.srv || isIP(config.host) === 0 }

  start (): void {
    for (const entry of this.#entries) if (isName(entry)) void this.#resolve(entry)
  }

  /**
   * A reload replaced the group that `old` served: each name both configure starts from the old
   * answer (under the new settings: weight, backup, TLS) instead of nothing, so the group's
   * targets are there at once and keep their pools and health; the lookups under way correct it.
   */
  seed (old: Discovery): void {
    let seeded = false
    for (const entry of this.#entries) {
      if (!isName(entry) || entry.answer !== null) continue
      const was = old.#entries.find(e => isName(e) && e.answer !== null && nameOf(e.config) === nameOf(entry.config)) as Name | undefined
      if (was === undefined) continue
      const like = entry.config
      entry.answer = was.answer!.map(t => Object.freeze({ ...t, tls: like.tls, weight: like.srv ? t.weight : like.weight, backup: like.srv ? t.backup : like.backup }))
      entry.lastOk = was.lastOk
      seeded = true
    }
    if (seeded) this.#publish()
  }

  close (): void {
    this.#closed = true
    for (const entry of this.#entries) {
      if (isName(entry) && entry.timer !== null) clearTimeout(entry.timer)
    }
  }

  async #resolve (entry: Name): Promise<void> {
    entry.timer = null
    const { config } = entry
    let next: number
    try {
      const { targets, ttl } = config.srv ? await this.#srv(config) : await this.#addresses(config.host, config.port, config, false, 1)
      if (this.#closed) return
      next = Math.min(Math.max(ttl * 1000, this.#model.minTtl), this.#model.maxTtl)
      const changed = entry.answer === null || !sameTargets(entry.answer, targets)
      entry.answer = targets
      entry.lastOk = Date.now()
      if (changed) {
        this.#publish()
        this.#group.discovered({ group: this.#group.settings.name, name: nameOf(config), targets: targets.map(t => t.authority) })
      }
    } catch (err) {
      if (this.#closed) return
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
      next = this.#model.minTtl
      const kept = entry.answer !== null && Date.now() - entry.lastOk < this.#model.keepStale
      if (!kept && entry.answer !== null && entry.answer.length > 0) {
        entry.answer = []
        this.#publish()
      }
      this.#group.discovered({
        group: this.#group.settings.name,
        name: nameOf(config),
        targets: kept ? entry.answer!.map(t => t.authority) : [],
        error: code,
        stale: kept,
      })
    }
    entry.timer = setTimeout(() => { void this.#resolve(entry) }, next)
    entry.timer.unref()
  }

  /** Every A and AAAA address of `host` as a target on `port`; the lowest TTL. */
  async #addresses (host: string, port: number, like: TargetConfig, backup: boolean, weight: number): Promise<{ targets: TargetConfig[], ttl: number }> {
    if (isIP(host) !== 0) return { targets: [target(like, host, port, backup, weight)], ttl: Infinity }
    const [v4, v6] = await Promise.allSettled([this.#resolver.resolve4(host, { ttl: true }), this.#resolver.resolve6(host, { ttl: true })])
    if (v4.status === 'rejected' && v6.status === 'rejected') throw v4.reason
    const records = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])]
    if (records.length === 0) throw Object.assign(new Error(`${host}: no address`), { code: 'ENODATA' })
    return {
      targets: records.map(r => target(like, r.address, port, backup, weight)),
      ttl: Math.min(...records.map(r => r.ttl)),
    }
  }

  async #srv (config: TargetConfig): Promise<{ targets: TargetConfig[], ttl: number }> {
    const records = await this.#resolver.resolveSrv(config.host)
    if (records.length === 0) throw Object.assign(new Error(`${config.host}: no SRV record`), { code: 'ENODATA' })
    const best = Math.min(...records.map(r => r.priority))
    const targets: TargetConfig[] = []
    let ttl = Infinity
    for (const r of records) {
      // SRV weight 0 means "rarely": the least share rp4 has
      const found = await this.#addresses(r.name, r.port, config, r.priority > best, Math.min(1000, Math.max(1, r.weight)))
      targets.push(...found.targets)
      ttl = Math.min(ttl, found.ttl)
    }
    return { targets, ttl: ttl === Infinity ? 0 : ttl }
  }

  /** The group's targets: fixed ones as configured, names as their answers (a name never answered yet: itself, resolved per connection). */
  #publish (): void {
    const list: TargetConfig[] = []
    const seen = new Set<string>()
    for (const entry of this.#entries) {
      const targets = !isName(entry) ? [entry] : entry.answer ?? (entry.config.srv ? [] : [entry.config])
      for (const t of targets) {
        if (seen.has(t.authority)) continue
        seen.add(t.authority)
        list.push(t)
      }
    }
    this.#group.updateTargets(list)
  }
}

function isName (entry: TargetConfig | Name): entry is Name { return 'answer' in entry }

function nameOf (config: TargetConfig): string { return config.srv ? `srv://${config.host}` : config.authority }

function target (like: TargetConfig, address: string, port: number, backup: boolean, weight: number): TargetConfig {
  const authority = (address.includes(':') ? `[${address}]` : address) + ':' + port
  // the configured TLS settings keep the name as the server name checked, not the address
  return Object.freeze({ host: address, port, authority, weight: like.srv ? weight : like.weight, backup: like.backup || backup, srv: false, tls: like.tls })
}

function sameTargets (a: readonly TargetConfig[], b: readonly TargetConfig[]): boolean {
  if (a.length !== b.length) return false
  const key = (t: TargetConfig): string => `${t.authority}/${t.weight}/${t.backup ? 1 : 0}`
  const left = a.map(key).sort()
  const right = b.map(key).sort()
  return left.every((k, i) => k === right[i])
}
