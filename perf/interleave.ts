/**
 * Two rp4 processes compared under the same load, both running at once on the proxy core, the
 * load sent to each in turn in short bursts that alternate (ABBA), so that a disturbance of the
 * machine falls on both alike. The rounds are split into segments, each with both processes
 * started afresh and in the other order: with the same build and flags on both sides, the process
 * started first measured up to ~3% cheaper in some runs, so one start order would bias the ratio.
 * Used by ab.ts (this build against another) and metrics-cost.ts (with and without metrics).
 */
import { HEAP_ARGS, HEAP_FLAG, rp4Env } from '../bin/serving.js'
import type { LoadResult } from './loadgen.js'
import { median, runLoad } from './measure.js'
import { PROXY_CORE, type ProcessGroup, waitForStderr, type Child } from './processes.js'
import { rp4ModeArgs, type ProxyMode } from './configs.js'
import { processCpuSeconds, treePeakRss } from './proc-stats.js'
import type { Scenario } from './scenarios.js'

/** One side: an rp4 entry point (dist/bin/rp4.js of some build) and the flags it gets beyond `listen … --to …`. */
export interface Side {
  name: string
  rp4: string
  args: readonly string[]
  /** Node's own flags for this side, beside the initial heap size (a GC setting to compare). */
  nodeArgs?: readonly string[]
  /** Environment variables for this side beyond the harness's (malloc settings to compare: `GLIBC_TUNABLES=…`). */
  env?: Readonly<Record<string, string>>
}

export interface InterleaveSettings {
  rounds: number
  segments: number
  durationS: number
  originPort: number
  progress?: (text: string) => void
}

interface Burst { cpuUs: number, main: number }

export interface InterleaveResult {
  /** Medians over the rounds: CPU µs per request of each side, and the median of the per-round ratios (a / b). */
  cpuA: number
  cpuB: number
  cpuRatio: number
  /** The scenario's main figure (req/s, MB/s or p50 µs), the same way. */
  mainA: number
  mainB: number
  mainRatio: number
  /** The CPU ratio of each segment (each start order in turn, `a` first in the even ones). */
  segmentRatios: number[]
  /** The highest peak RSS (VmHWM, bytes) either side's process reached in any segment, startup included. */
  peakRssA: number
  peakRssB: number
  rounds: number
}

function mainFigure (scenario: Scenario, load: LoadResult): number {
  switch (scenario.main) {
    case 'rps': return load.rps
    case 'mbps': return load.mbps
    case 'p50': return load.latencyUs.p50
  }
}

async function start (group: ProcessGroup, side: Side, mode: ProxyMode, originPort: number): Promise<{ child: Child, port: number }> {
  // an initial heap size among the side's own flags replaces the harness's (`--initial-heap-size=0`: V8's default)
  const heap = (side.nodeArgs ?? []).some(arg => arg.startsWith(HEAP_FLAG)) ? [] : HEAP_ARGS
  const child = group.spawn(side.name, process.execPath, [...heap, ...(side.nodeArgs ?? []), side.rp4, 'listen', '127.0.0.1:0', '--to', `127.0.0.1:${originPort}`, ...side.args, ...rp4ModeArgs(mode)], {
    core: PROXY_CORE,
    env: { ...rp4Env(), ...side.env },
  })
  const match = await waitForStderr(child, /listening on (\S+):(\d+)/, 15_000)
  return { child, port: Number(match[2]) }
}

async function burst (group: ProcessGroup, scenario: Scenario, pid: number, port: number, durationS: number): Promise<Burst> {
  const before = processCpuSeconds(pid) ?? 0
  const load = await runLoad(group, scenario.load, port, durationS)
  const after = processCpuSeconds(pid) ?? 0
  if (load.requests === 0) throw new Error(`no request completed (errors: ${JSON.stringify(load.errors)})`)
  return { cpuUs: (after - before) * 1e6 / load.requests, main: mainFigure(scenario, load) }
}

export async function interleave (group: ProcessGroup, scenario: Scenario, a: Side, b: Side, settings: InterleaveSettings): Promise<InterleaveResult> {
  const { rounds, segments, durationS, originPort } = settings
  if (!Number.isInteger(segments) || segments < 1 || segments > rounds) throw new Error(`segments ${segments}: expected a whole number from 1 to the rounds (${rounds})`)
  const perSegment = Math.ceil(rounds / segments)
  const pairs: Array<{ a: Burst, b: Burst }> = []
  const segmentRatios: number[] = []
  let peakRssA = 0
  let peakRssB = 0
  for (let segment = 0; segment < segments; segment++) {
    const aFirst = segment % 2 === 0
    const first = await start(group, aFirst ? a : b, scenario.mode, originPort)
    const second = await start(group, aFirst ? b : a, scenario.mode, originPort)
    const sideA = aFirst ? first : second
    const sideB = aFirst ? second : first
    try {
      // warm both (JIT, pools) before anything counts
      await burst(group, scenario, sideB.child.pid, sideB.port, 1)
      await burst(group, scenario, sideA.child.pid, sideA.port, 1)
      const from = pairs.length
      for (let i = 0; i < perSegment; i++) {
        settings.progress?.(`segment ${segment + 1}/${segments}, round ${i + 1}/${perSegment}`)
        // ABBA: neither side always goes first
        let x: Burst, y: Burst
        if (i % 2 === 0) {
          y = await burst(group, scenario, sideB.child.pid, sideB.port, durationS)
          x = await burst(group, scenario, sideA.child.pid, sideA.port, durationS)
        } else {
          x = await burst(group, scenario, sideA.child.pid, sideA.port, durationS)
          y = await burst(group, scenario, sideB.child.pid, sideB.port, durationS)
        }
        pairs.push({ a: x, b: y })
      }
      segmentRatios.push(median(pairs.slice(from).map(p => p.a.cpuUs / p.b.cpuUs)))
      peakRssA = Math.max(peakRssA, treePeakRss(sideA.child.pid))
      peakRssB = Math.max(peakRssB, treePeakRss(sideB.child.pid))
    } finally {
      await group.stop(sideA.child)
      await group.stop(sideB.child)
    }
  }
  return {
    cpuA: median(pairs.map(p => p.a.cpuUs)),
    cpuB: median(pairs.map(p => p.b.cpuUs)),
    cpuRatio: median(pairs.map(p => p.a.cpuUs / p.b.cpuUs)),
    mainA: median(pairs.map(p => p.a.main)),
    mainB: median(pairs.map(p => p.b.main)),
    mainRatio: median(pairs.map(p => p.a.main / p.b.main)),
    segmentRatios,
    peakRssA,
    peakRssB,
    rounds: pairs.length,
  }
}
