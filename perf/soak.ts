/**
 * Soak: scenario 1's load through rp4 for a long time while its RSS is sampled, to catch
 * leaks that a few seconds per scenario cannot show. The first quarter of the samples is the
 * warm-up (heap growing to its working size); growth is judged by comparing the second
 * quarter with the last one, so one GC cycle's sawtooth is not taken for a leak.
 */
import { runLoad, median } from './measure.js'
import { ProcessGroup, sleep } from './processes.js'
import { treeRss } from './proc-stats.js'
import { startRow, type Tools } from './rows.js'
import { SCENARIOS } from './scenarios.js'
import type { LoadResult } from './loadgen.js'

export interface SoakResult {
  seconds: number
  intervalS: number
  samples: Array<{ atS: number, rssBytes: number }>
  load: LoadResult
  /** Median RSS of the second quarter of the samples and of the last quarter. */
  settledRssBytes: number
  finalRssBytes: number
  growthPct: number
  grew: boolean
  verdict: string
}

/** Growth beyond both of these counts as growing. */
const GROWTH_PCT = 10
const GROWTH_BYTES = 4 * 1024 * 1024

export async function runSoak (seconds: number, originPort: number, tools: Tools, rp4Args: string[], progress: (text: string) => void): Promise<SoakResult> {
  const group = new ProcessGroup()
  // about 40 samples, but no more often than every 2 s: /proc reads are cheap, noise is not
  const intervalS = Math.max(2, Math.round(seconds / 40))
  try {
    const rp4 = await startRow('rp4', { mode: 'http', originPort, group, tools, rp4Args })
    const pid = rp4.pid ?? 0
    const samples: SoakResult['samples'] = []
    const startedAt = Date.now()
    const loading = runLoad(group, SCENARIOS[0].load, rp4.port, seconds)
    let done = false
    void loading.finally(() => { done = true }).catch(() => {})
    while (!done && Date.now() - startedAt < seconds * 1000) {
      const atS = Math.round((Date.now() - startedAt) / 100) / 10
      const rssBytes = treeRss(pid)
      samples.push({ atS, rssBytes })
      progress(`soak: ${atS.toFixed(0)}/${seconds}s, rp4 RSS ${(rssBytes / 1048576).toFixed(1)} MiB`)
      await sleep(intervalS * 1000)
    }
    const load = await loading
    samples.push({ atS: Math.round((Date.now() - startedAt) / 100) / 10, rssBytes: treeRss(pid) })
    await rp4.stop()
    return judge(seconds, intervalS, samples, load)
  } finally {
    await group.stopAll()
  }
}

function judge (seconds: number, intervalS: number, samples: SoakResult['samples'], load: LoadResult): SoakResult {
  const quarter = Math.max(1, Math.floor(samples.length / 4))
  const values = samples.map(sample => sample.rssBytes)
  const settled = median(values.slice(quarter, Math.max(quarter + 1, 2 * quarter)))
  const final = median(values.slice(-quarter))
  const growth = settled > 0 ? (final - settled) / settled * 100 : 0
  const enough = samples.length >= 8
  const grew = enough && growth > GROWTH_PCT && final - settled > GROWTH_BYTES
  const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MiB`
  const change = `${mib(settled)} settled, ${mib(final)} at the end (${growth >= 0 ? '+' : ''}${growth.toFixed(1)}%)`
  const verdict = !enough
    ? `inconclusive with ${samples.length} samples (use --soak 60 or more): ${change}`
    : grew ? `RSS GREW: ${change}, ${stillRising(values, quarter) ? 'still rising at the end: possible leak' : 'then held flat over the last quarter (a heap resize step is likely; a longer soak tells)'}`
      : `RSS stable: ${change}`
  return {
    seconds,
    intervalS,
    samples,
    load,
    settledRssBytes: settled,
    finalRssBytes: final,
    growthPct: Math.round(growth * 10) / 10,
    grew,
    verdict,
  }
}

/** Whether the last quarter is clearly above the third: growth that has not levelled off. */
function stillRising (values: number[], quarter: number): boolean {
  const third = median(values.slice(-2 * quarter, -quarter))
  const last = median(values.slice(-quarter))
  return last > third * 1.02
}
