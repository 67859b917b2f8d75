/**
 * Workers mode (`--workers N`): how new connections should reach rp4's workers. For each
 * `workerScheduling` (round-robin: the primary accepts and hands each connection over, cluster's
 * SCHED_RR; kernel: every worker accepts on the shared socket, SCHED_NONE) and two loads
 * (scenario 1, keep-alive: the handoff happens once per connection; scenario 5, a connection
 * per request: it happens every time), rp4 runs with N workers and an admin endpoint, unpinned
 * (its workers need cores of their own; the origin and the load generator stay on theirs).
 *
 * Reported per run: req/s; CPU seconds of rp4's whole process tree (primary and workers) per
 * second, i.e. the cores it kept busy; req/s per core (req/s divided by that); and the spread:
 * each worker's share of the requests, read from the primary's /metrics
 * (`rp4_worker_requests_total{worker}`) after the run, with max/min. The figure that decides the
 * default is req/s per core with an even spread.
 */
import { HEAP_ARGS, rp4Env } from '../bin/serving.js'
import { runLoad } from './measure.js'
import { treeCpuSeconds } from './proc-stats.js'
import { ProcessGroup, waitForStderr } from './processes.js'
import { RP4_PATH } from './rows.js'
import { SCENARIOS } from './scenarios.js'

export interface WorkersRow {
  policy: 'round-robin' | 'kernel'
  scenario: number
  rps: number
  errors: number
  /** CPU seconds of rp4's tree per second of load: cores busy. */
  cores: number
  rpsPerCore: number
  /** Requests per worker, in worker order. */
  perWorker: number[]
  /** The busiest worker's requests over the idlest's (1: even). */
  spread: number
}

export interface WorkersResult {
  workers: number
  seconds: number
  rows: WorkersRow[]
}

async function scrape (port: number): Promise<string> {
  return await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
}

function perWorker (text: string, workers: number): number[] {
  const counts: number[] = []
  for (let i = 1; i <= workers; i++) {
    const m = new RegExp(`^rp4_worker_requests_total\\{worker="${i}"\\} (\\S+)$`, 'm').exec(text)
    counts.push(m === null ? 0 : Number(m[1]))
  }
  return counts
}

export async function runWorkers (workers: number, seconds: number, originPort: number, rp4Args: string[], progress: (text: string) => void): Promise<WorkersResult> {
  const rows: WorkersRow[] = []
  for (const policy of ['round-robin', 'kernel'] as const) {
    for (const scenario of [SCENARIOS[0], SCENARIOS[4]]) {
      progress(`workers: ${workers} workers, ${policy}, scenario ${scenario.id}`)
      const group = new ProcessGroup()
      try {
        const args = [...HEAP_ARGS, RP4_PATH, 'listen', '127.0.0.1:0', '--to', `127.0.0.1:${originPort}`, '--workers', String(workers),
          '--worker-scheduling', policy, '--admin', '127.0.0.1:0', ...rp4Args]
        // not pinned: the workers are what is measured, each needs a core
        const child = group.spawn('rp4', process.execPath, args, { env: rp4Env() })
        const line = await waitForStderr(child, /listening on \S+:\d+.*admin endpoint on 127\.0\.0\.1:(\d+)/, 20_000)
        const admin = Number(line[1])
        const port = Number(/listening on \S+:(\d+)/.exec(line[0])![1])
        const before = treeCpuSeconds(child.pid)
        const load = await runLoad(group, scenario.load, port, seconds)
        const cpu = treeCpuSeconds(child.pid) - before
        const counts = perWorker(await scrape(admin), workers)
        const cores = cpu / load.durationS
        rows.push({
          policy,
          scenario: scenario.id,
          rps: load.rps,
          errors: load.errors.total,
          cores,
          rpsPerCore: cores > 0 ? load.rps / cores : 0,
          perWorker: counts,
          spread: Math.min(...counts) > 0 ? Math.max(...counts) / Math.min(...counts) : Infinity,
        })
        await group.stop(child)
      } finally {
        await group.stopAll()
      }
    }
  }
  return { workers, seconds, rows }
}

export function describeWorkers (result: WorkersResult): string {
  const lines = [`workers (${result.workers} workers, ${result.seconds}s per run, rp4 unpinned; cores: CPU seconds of rp4's processes per second):`,
    '  policy       scenario  req/s     cores  req/s/core  errors  requests per worker (max/min)']
  for (const r of result.rows) {
    const total = r.perWorker.reduce((a, b) => a + b, 0)
    const shares = r.perWorker.map(n => total > 0 ? `${(100 * n / total).toFixed(0)}%` : '-').join(' ')
    lines.push(`  ${r.policy.padEnd(12)} ${String(r.scenario).padEnd(9)} ${r.rps.toFixed(0).padStart(8)}  ${r.cores.toFixed(2).padStart(5)}  ${r.rpsPerCore.toFixed(0).padStart(10)}  ${String(r.errors).padStart(6)}  ${shares} (${Number.isFinite(r.spread) ? r.spread.toFixed(2) : 'a worker got none'})`)
  }
  return lines.join('\n')
}
