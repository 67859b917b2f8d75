/**
 * Counters and histograms for the per-request metrics, kept as plain numbers in cells the caller
 * holds on to, and handed to prom-client's registry only when it is scraped (they implement the
 * registry's metric shape: name, help, type, aggregator, get, reset). prom-client's own Counter
 * and Histogram hash their label objects on every `inc` and `observe`, even through `labels()`
 * children: at full load that cost rp4 about 10 µs per request (+39% CPU, `node dist/perf/run.js
 * --metrics-cost 3`). Exposition, the registry, default metrics and the workers' aggregation
 * stay prom-client's.
 */
import type client from 'prom-client'

/** More series than this in one family (labels a client can vary): it starts again empty. */
export const MAX_SERIES = 10_000

interface Value { labels: Record<string, string | number>, value: number, metricName?: string }

export interface CounterCell { value: number }

export interface HistogramCell {
  /** Observations per bucket (not cumulative), the last one above every bound. */
  readonly counts: Float64Array
  sum: number
  count: number
}

abstract class Family<C> {
  readonly aggregator = 'sum'
  readonly #cells = new Map<string, { labels: Record<string, string>, cell: C }>()
  /** Counts the times the family started again empty: cells a caller kept from before are stale. */
  generation = 0

  constructor (readonly name: string, readonly help: string, registry: client.Registry) {
    registry.registerMetric(this as unknown as client.Metric)
  }

  /** The cell of the series `key` (labels joined by the caller), made with `labels` the first time. */
  cell (key: string, labels: Record<string, string>): C {
    let entry = this.#cells.get(key)
    if (entry === undefined) {
      if (this.#cells.size >= MAX_SERIES) {
        this.#cells.clear()
        this.generation++
      }
      entry = { labels, cell: this.make() }
      this.#cells.set(key, entry)
    }
    return entry.cell
  }

  protected abstract make (): C
  protected abstract values (labels: Record<string, string>, cell: C, out: Value[]): void

  async get (): Promise<{ name: string, help: string, type: string, aggregator: string, values: Value[] }> {
    const values: Value[] = []
    for (const { labels, cell } of this.#cells.values()) this.values(labels, cell, values)
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  abstract readonly type: string

  reset (): void {
    this.#cells.clear()
    this.generation++
  }
}

export class CounterFamily extends Family<CounterCell> {
  readonly type = 'counter'
  protected make (): CounterCell { return { value: 0 } }
  protected values (labels: Record<string, string>, cell: CounterCell, out: Value[]): void {
    out.push({ labels: { ...labels }, value: cell.value })
  }
}

export class HistogramFamily extends Family<HistogramCell> {
  readonly type = 'histogram'
  readonly #bounds: readonly number[]

  constructor (name: string, help: string, registry: client.Registry, bounds: readonly number[]) {
    super(name, help, registry)
    this.#bounds = bounds
  }

  protected make (): HistogramCell { return { counts: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0 } }

  observe (cell: HistogramCell, value: number): void {
    const bounds = this.#bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]) i++
    cell.counts[i]++
    cell.sum += value
    cell.count++
  }

  protected values (labels: Record<string, string>, cell: HistogramCell, out: Value[]): void {
    const bucket = `${this.name}_bucket`
    let cumulative = 0
    for (let i = 0; i < this.#bounds.length; i++) {
      cumulative += cell.counts[i]
      out.push({ metricName: bucket, labels: { le: this.#bounds[i], ...labels }, value: cumulative })
    }
    out.push({ metricName: bucket, labels: { le: '+Inf', ...labels }, value: cell.count })
    out.push({ metricName: `${this.name}_sum`, labels: { ...labels }, value: cell.sum })
    out.push({ metricName: `${this.name}_count`, labels: { ...labels }, value: cell.count })
  }
}
