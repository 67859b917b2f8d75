/**
 * Metrics cost mode (`--metrics-cost PAIRS`): what prom-client's per-request metrics cost under
 * full load. Scenario 1 through rp4 without an admin endpoint (no metrics: one null check per
 * request) and with `--admin 127.0.0.1:0` (metrics kept per request), alternating in pairs in
 * one run (the order flips each pair, so that a drift of the machine falls on both sides), each
 * a full row: warm-up, `--reps` repetitions, CPU µs per request read around each. Reported: the
 * median CPU µs per request of each side over the pairs, and the difference in percent, the
 * figure the issue bounds at 2% before another client than prom-client would be justified.
 * Scrapes are not part of it (Prometheus asks every 15 s or so; a scrape's cost does not grow
 * with traffic).
 */
import { measureRow, type MeasureSettings } from './measure.js'
import { ProcessGroup } from './processes.js'
import { SCENARIOS } from './scenarios.js'

export interface MetricsCostResult {
  pairs: number
  /** CPU µs per request of each row, in run order. */
  without: number[]
  with: number[]
  medianWithout: number
  medianWith: number
  /** (with - without) / without, in percent. */
  overheadPercent: number
  errors: number
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length === 0 ? 0 : sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

export async function runMetricsCost (pairs: number, settings: MeasureSettings): Promise<MetricsCostResult> {
  const without: number[] = []
  const withMetrics: number[] = []
  let errors = 0
  for (let pair = 1; pair <= pairs; pair++) {
    const order = pair % 2 === 1 ? [false, true] : [true, false]
    for (const metrics of order) {
      const group = new ProcessGroup()
      try {
        const row = await measureRow(SCENARIOS[0], 'rp4', group, {
          ...settings,
          rp4Args: metrics ? [...settings.rp4Args, '--admin', '127.0.0.1:0'] : settings.rp4Args,
          progress: text => settings.progress(`metrics cost, pair ${pair}/${pairs}, ${metrics ? 'with' : 'without'} metrics | ${text}`),
        })
        if (row.status !== 'ok' || row.cpuUsPerRequest === null) throw new Error(`the rp4 row ${metrics ? 'with' : 'without'} metrics failed: ${row.note ?? row.status}`)
        ;(metrics ? withMetrics : without).push(row.cpuUsPerRequest)
        errors += row.errors
      } finally {
        await group.stopAll()
      }
    }
  }
  const medianWithout = median(without)
  const medianWith = median(withMetrics)
  return { pairs, without, with: withMetrics, medianWithout, medianWith, overheadPercent: medianWithout > 0 ? 100 * (medianWith - medianWithout) / medianWithout : 0, errors }
}

export function describeMetricsCost (r: MetricsCostResult): string {
  return `metrics cost (scenario 1 through rp4, ${r.pairs} alternating pairs): without metrics ${r.medianWithout.toFixed(2)} CPU µs/req ` +
    `(${r.without.map(v => v.toFixed(2)).join(', ')}), with --admin ${r.medianWith.toFixed(2)} (${r.with.map(v => v.toFixed(2)).join(', ')}): ` +
    `${r.overheadPercent >= 0 ? '+' : ''}${r.overheadPercent.toFixed(1)}% (the issue's bound: 2%); errors: ${r.errors}`
}
