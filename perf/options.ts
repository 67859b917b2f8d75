/**
 * The runner's command line. Defaults aim at a full run of a few minutes on a 2-core machine;
 * --quick shrinks everything so that CI can run the whole harness in well under two minutes.
 */
import { parseArgs } from 'node:util'
import type { RowName } from './rows.js'
import { SCENARIOS } from './scenarios.js'

export interface RunOptions {
  quick: boolean
  durationS: number
  warmupS: number
  reps: number
  /** Scenario ids to run; empty means all. */
  only: number[]
  /** Rows besides "direct", which always runs as the ceiling. */
  proxies: RowName[]
  soakS: number | null
  /** Seconds of scenario 1 load through `rp4 run FILE` reloaded every second, or null. */
  reloadS: number | null
  idleCount: number | null
  /** Requests of the mixed-traffic integrity run through every row, or null. */
  tortureRequests: number | null
  /** Workers mode: rp4 with this many workers, each scheduling policy, scenarios 1 and 5; or null. */
  workers: number | null
  /** Metrics cost mode: segments of alternating scenario 1 rounds through rp4 without and with --admin; or null. */
  metricsCostSegments: number | null
  jsonFile: string | null
  rp4Args: string[]
  wrk: boolean
}

export const USAGE = `Usage: node dist/perf/run.js [options]

  --quick            every scenario ~1 s, 1 repetition, short warm-up (CI)
  --duration S       seconds per measured repetition (default 5; quick: 1)
  --warmup S         seconds of warm-up per row (default 2; quick: 0.5)
  --reps N           repetitions per row, the median is reported (default 3; quick: 1)
  --only 1,3         run only these scenarios
  --proxies LIST     rows besides "direct": any of rp4,node,nginx,haproxy (default: all four;
                     node is Node's floor, perf/node-floor.ts)
  --soak S           soak mode: scenario 1 load through rp4 for S seconds, RSS sampled
  --reload S         reload mode: scenario 1 load through rp4 run FILE for S seconds (at least 3),
                     FILE changed and SIGHUP sent every second; failed requests counted (must be 0)
  --idle N           open N idle keep-alive connections to rp4, report RSS per connection
  --torture N        mixed traffic through every row (64 connections, 16 pipelining, bodies up to
                     4 MiB both ways, late answers, slow readers): N requests, every byte checked
  --workers N        workers mode: rp4 with N workers under scenarios 1 and 5, --duration each, for
                     each --worker-scheduling (round-robin, kernel): req/s per core of rp4's
                     processes and each worker's share of the requests
  --metrics-cost N   metrics cost mode: scenario 1 through rp4 without and with --admin (metrics
                     kept per request), both running, the load alternating in 2 s bursts: N
                     segments of 6 rounds; CPU µs/req of each and the difference
  --json FILE        also write the JSON results there (always: perf/results/latest.json)
  --rp4-args "..."   extra flags for rp4 (e.g. "--pipelining 4")
  --no-wrk           skip the wrk cross-check
  -h, --help         this text

--soak, --reload, --idle, --torture, --workers and --metrics-cost run only that test unless --only names scenarios as well.
`

export class OptionsError extends Error {}

function positiveNumber (flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback
  const value = Number(text)
  if (!Number.isFinite(value) || value <= 0) throw new OptionsError(`${flag}: "${text}" is not a positive number`)
  return value
}

export function parseOptions (argv: string[]): RunOptions | 'help' {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        quick: { type: 'boolean', default: false },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        reps: { type: 'string' },
        only: { type: 'string' },
        proxies: { type: 'string' },
        soak: { type: 'string' },
        reload: { type: 'string' },
        idle: { type: 'string' },
        torture: { type: 'string' },
        workers: { type: 'string' },
        'metrics-cost': { type: 'string' },
        json: { type: 'string' },
        'rp4-args': { type: 'string' },
        'no-wrk': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    })
  } catch (err) {
    throw new OptionsError((err as Error).message)
  }
  const { values } = parsed
  if (values.help) return 'help'
  const quick = values.quick
  const only = values.only === undefined
    ? []
    : values.only.split(',').filter(part => part.trim() !== '').map(part => {
      const id = Number(part)
      if (!Number.isInteger(id) || id < 1 || id > SCENARIOS.length) throw new OptionsError(`--only: "${part}" is not a scenario number (1-${SCENARIOS.length})`)
      return id
    })
  const known: RowName[] = ['rp4', 'node', 'nginx', 'haproxy']
  const proxies = values.proxies === undefined
    ? known
    : values.proxies.split(',').map(name => name.trim()).filter(name => name !== '' && name !== 'direct').map(name => {
      if (!known.includes(name as RowName)) throw new OptionsError(`--proxies: unknown row "${name}" (rp4, node, nginx, haproxy)`)
      return name as RowName
    })
  const reps = Math.round(positiveNumber('--reps', values.reps, quick ? 1 : 3))
  return {
    quick,
    durationS: positiveNumber('--duration', values.duration, quick ? 1 : 5),
    warmupS: values.warmup === '0' ? 0 : positiveNumber('--warmup', values.warmup, quick ? 0.5 : 2),
    reps,
    only,
    proxies,
    soakS: values.soak === undefined ? null : positiveNumber('--soak', values.soak, 60),
    reloadS: values.reload === undefined ? null : Math.max(3, positiveNumber('--reload', values.reload, 30)),
    idleCount: values.idle === undefined ? null : Math.round(positiveNumber('--idle', values.idle, 10_000)),
    tortureRequests: values.torture === undefined ? null : Math.round(positiveNumber('--torture', values.torture, 2000)),
    workers: values.workers === undefined ? null : Math.max(2, Math.round(positiveNumber('--workers', values.workers, 2))),
    metricsCostSegments: values['metrics-cost'] === undefined ? null : Math.max(1, Math.round(positiveNumber('--metrics-cost', values['metrics-cost'], 2))),
    jsonFile: values.json ?? null,
    rp4Args: values['rp4-args'] === undefined ? [] : values['rp4-args'].split(/\s+/).filter(arg => arg !== ''),
    wrk: !values['no-wrk'],
  }
}
