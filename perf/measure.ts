/**
 * One row of one scenario: start the row, warm it up, run the repetitions, and read the
 * proxy's CPU time around each repetition so that CPU per request covers the same window as
 * the request count. Each column of the result is the median of that column over the
 * repetitions (taken independently, so one noisy repetition cannot skew every column).
 */
import { fileURLToPath } from 'node:url'
import type { LoadResult } from './loadgen.js'
import { CLIENT_CORE, ProcessGroup, runToEnd } from './processes.js'
import { machineBusySeconds, processCpuSeconds, treeCpuSeconds, treePeakRss } from './proc-stats.js'
import { startRow, type RowName, type Tools } from './rows.js'
import { loadgenArgs, type LoadSpec, type Scenario } from './scenarios.js'

const LOADGEN_PATH = fileURLToPath(new URL('./loadgen.js', import.meta.url))

export interface RepResult {
  load: LoadResult
  /** Proxy CPU µs per completed request in this repetition; null for the direct row. */
  cpuUsPerRequest: number | null
  /** Proxy CPU time over the window as a share of one core (1.0 = its core was saturated). */
  proxyCoreShare: number | null
  /** CPU used on the machine by processes other than the harness's, in cores. */
  otherLoad: number
}

export interface RowResult {
  row: RowName
  status: 'ok' | 'skipped' | 'failed'
  note?: string
  rps: number
  mbps: number
  p50Us: number
  p99Us: number
  p999Us: number
  errors: number
  cpuUsPerRequest: number | null
  proxyCoreShare: number | null
  peakRssBytes: number | null
  /** The generator's share of one core: near 1.0 would mean it, not the row, was the limit. */
  loadgenCoreShare: number
  /** Other processes' CPU during the window, in cores (the largest over the repetitions). */
  otherLoad: number
  reps: RepResult[]
}

export interface MeasureSettings {
  durationS: number
  warmupS: number
  reps: number
  originPort: number
  originPid: number
  tools: Tools
  rp4Args: string[]
  progress: (text: string) => void
}

export function emptyRow (row: RowName, status: 'skipped' | 'failed', note: string): RowResult {
  return {
    row, status, note, rps: 0, mbps: 0, p50Us: 0, p99Us: 0, p999Us: 0, errors: 0,
    cpuUsPerRequest: null, proxyCoreShare: null, peakRssBytes: null, loadgenCoreShare: 0, otherLoad: 0, reps: [],
  }
}

/** Runs the load generator once against a port and returns its JSON result. */
export async function runLoad (group: ProcessGroup, load: LoadSpec, port: number, durationS: number): Promise<LoadResult> {
  const child = group.spawn('loadgen', process.execPath, [LOADGEN_PATH, ...loadgenArgs(load, port, durationS)], {
    core: CLIENT_CORE,
    captureStdout: true,
  })
  const stdout = await runToEnd(group, child, durationS * 1000 + 15_000)
  const line = stdout.trim().split('\n').pop() ?? ''
  try {
    return JSON.parse(line) as LoadResult
  } catch {
    throw new Error(`loadgen printed no result: "${line.slice(0, 200)}"`)
  }
}

/** Measures one row; the caller owns the deadline and stops `group` when it passes. */
export async function measureRow (scenario: Scenario, row: RowName, group: ProcessGroup, settings: MeasureSettings): Promise<RowResult> {
  settings.progress(`${row}: starting`)
  const running = await startRow(row, {
    mode: scenario.mode,
    originPort: settings.originPort,
    group,
    tools: settings.tools,
    rp4Args: settings.rp4Args,
  })
  try {
    if (settings.warmupS > 0) {
      settings.progress(`${row}: warm-up ${settings.warmupS}s`)
      await runLoad(group, scenario.load, running.port, settings.warmupS)
    }
    const reps: RepResult[] = []
    for (let i = 1; i <= settings.reps; i++) {
      settings.progress(`${row}: repetition ${i}/${settings.reps}`)
      reps.push(await measuredRep(group, scenario.load, running.port, running.pid, settings))
    }
    const peakRssBytes = running.pid === null ? null : treePeakRss(running.pid)
    return summarize(row, reps, peakRssBytes)
  } finally {
    await running.stop()
  }
}

/** One repetition, with the CPU of every process involved read around it. */
async function measuredRep (group: ProcessGroup, load: LoadSpec, port: number, proxyPid: number | null, settings: MeasureSettings): Promise<RepResult> {
  const before = {
    busy: machineBusySeconds(),
    proxy: proxyPid === null ? 0 : treeCpuSeconds(proxyPid),
    origin: processCpuSeconds(settings.originPid) ?? 0,
    runner: process.cpuUsage(),
    wall: Date.now(),
  }
  const result = await runLoad(group, load, port, settings.durationS)
  const proxy = proxyPid === null ? 0 : treeCpuSeconds(proxyPid) - before.proxy
  const origin = (processCpuSeconds(settings.originPid) ?? 0) - before.origin
  const runner = process.cpuUsage(before.runner)
  const ours = proxy + origin + result.cpu.totalMs / 1000 + (runner.user + runner.system) / 1e6
  const other = Math.max(0, machineBusySeconds() - before.busy - ours)
  // the generator's start-up and exit lie outside its own window: divide by the whole span
  const wallSeconds = (Date.now() - before.wall) / 1000
  return {
    load: result,
    cpuUsPerRequest: proxyPid === null || result.requests === 0 ? null : proxy * 1e6 / result.requests,
    proxyCoreShare: proxyPid === null ? null : proxy / result.durationS,
    otherLoad: other / wallSeconds,
  }
}

function summarize (row: RowName, reps: RepResult[], peakRssBytes: number | null): RowResult {
  const of = (pick: (rep: RepResult) => number): number => median(reps.map(pick))
  const present = (values: Array<number | null>): number[] => values.filter((value): value is number => value !== null)
  const cpu = present(reps.map(rep => rep.cpuUsPerRequest))
  const share = present(reps.map(rep => rep.proxyCoreShare))
  return {
    row,
    status: 'ok',
    rps: of(rep => rep.load.rps),
    mbps: of(rep => rep.load.mbps),
    p50Us: of(rep => rep.load.latencyUs.p50),
    p99Us: of(rep => rep.load.latencyUs.p99),
    p999Us: of(rep => rep.load.latencyUs.p999),
    errors: reps.reduce((sum, rep) => sum + rep.load.errors.total, 0),
    cpuUsPerRequest: cpu.length === 0 ? null : median(cpu),
    proxyCoreShare: share.length === 0 ? null : median(share),
    peakRssBytes,
    loadgenCoreShare: of(rep => rep.load.cpu.coreShare),
    otherLoad: Math.max(...reps.map(rep => rep.otherLoad)),
    reps,
  }
}

export function median (values: number[]): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
