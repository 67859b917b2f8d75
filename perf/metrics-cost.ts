/**
 * Metrics cost mode (`--metrics-cost N`): what the per-request metrics cost under full load.
 * Scenario 1 through this rp4 without an admin endpoint (no metrics: one null check per request)
 * and with `--admin 127.0.0.1:0` (metrics kept for every request), both processes running at once
 * on the proxy core and the load alternating between them in 2 s bursts (interleave.ts): N
 * segments of 6 rounds, each segment with both started afresh, in the other order each time.
 * Reported: the median CPU µs per request of each side, the median of the per-round ratios as a
 * difference in percent (the figure the issue bounds at 2%), and each segment's. Scrapes are not
 * part of it (Prometheus asks every 15 s or so; a scrape's cost does not grow with traffic).
 */
import { fileURLToPath } from 'node:url'
import { interleave } from './interleave.js'
import type { MeasureSettings } from './measure.js'
import { ProcessGroup } from './processes.js'
import { SCENARIOS } from './scenarios.js'

const RP4_PATH = fileURLToPath(new URL('../bin/rp4.js', import.meta.url))
const ROUNDS_PER_SEGMENT = 6
const BURST_S = 2

export interface MetricsCostResult {
  segments: number
  rounds: number
  /** Medians of CPU µs per request over the rounds. */
  medianWithout: number
  medianWith: number
  /** (median of the per-round ratios with / without) - 1, in percent. */
  overheadPercent: number
  /** The same per segment. */
  segmentPercents: number[]
}

export async function runMetricsCost (segments: number, settings: MeasureSettings): Promise<MetricsCostResult> {
  const group = new ProcessGroup()
  try {
    const r = await interleave(group, SCENARIOS[0],
      { name: 'rp4-metrics', rp4: RP4_PATH, args: [...settings.rp4Args, '--admin', '127.0.0.1:0'] },
      { name: 'rp4', rp4: RP4_PATH, args: settings.rp4Args },
      {
        rounds: segments * ROUNDS_PER_SEGMENT,
        segments,
        durationS: BURST_S,
        originPort: settings.originPort,
        progress: text => settings.progress(`metrics cost: ${text}`),
      })
    return {
      segments,
      rounds: r.rounds,
      medianWithout: r.cpuB,
      medianWith: r.cpuA,
      overheadPercent: 100 * (r.cpuRatio - 1),
      segmentPercents: r.segmentRatios.map(x => 100 * (x - 1)),
    }
  } finally {
    await group.stopAll()
  }
}

export function describeMetricsCost (r: MetricsCostResult): string {
  const pct = (v: number): string => `${v >= 0 ? '+' : ''}${v.toFixed(1)}%`
  return `metrics cost (scenario 1 through rp4, ${r.rounds} alternating rounds of ${BURST_S} s in ${r.segments} segments): ` +
    `without metrics ${r.medianWithout.toFixed(2)} CPU µs/req, with --admin ${r.medianWith.toFixed(2)}: ${pct(r.overheadPercent)} ` +
    `(per segment: ${r.segmentPercents.map(pct).join(', ')}; the issue's bound: 2%)`
}
