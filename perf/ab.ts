/**
 * Before and after: this checkout's rp4 against another build of it (a baseline), both running
 * at once on the proxy core, the same load sent to each in turn, in short bursts that alternate
 * (ABBA), so that a disturbance of the machine falls on both alike. Per burst: CPU µs per request
 * of the proxy process and the scenario's main figure; the report gives the medians and the
 * median of the per-round ratios (this build / baseline).
 *
 * The baseline is another checkout, built: `git worktree add ../rp4-base <commit> && cd ../rp4-base
 * && npm ci`, then `node dist/perf/ab.js --baseline ../rp4-base --only 1,3`.
 *
 * The same build with two sets of flags is an A/B too: `--baseline .` with `--rp4-args` for this
 * side and `--baseline-args` for the other (what metrics cost: `--rp4-args "--admin 127.0.0.1:0"
 * --baseline-args ""`).
 *
 * The rounds are split into `--segments` (2), each with both processes started afresh, in the other
 * order each time: with the same build on both sides, the one started first measured up to ~3%
 * cheaper, so one start order would bias the ratio. The report gives each order's ratio too.
 *
 * Usage: node ab.js --baseline DIR [--only 1,3] [--rounds 8] [--segments 2] [--duration 2] [--rp4-args "..."] [--baseline-args "..."]
 */
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { HEAP_ARG, rp4Env } from '../bin/serving.js'
import type { LoadResult } from './loadgen.js'
import { median, runLoad } from './measure.js'
import { CLIENT_CORE, PROXY_CORE, ProcessGroup, waitForStderr, type Child } from './processes.js'
import { processCpuSeconds } from './proc-stats.js'
import { SCENARIOS, type Scenario } from './scenarios.js'

const ORIGIN_PATH = fileURLToPath(new URL('./origin.js', import.meta.url))
const THIS_RP4 = fileURLToPath(new URL('../bin/rp4.js', import.meta.url))

interface Burst { cpuUs: number, main: number }

function mainFigure (scenario: Scenario, load: LoadResult): number {
  switch (scenario.main) {
    case 'rps': return load.rps
    case 'mbps': return load.mbps
    case 'p50': return load.latencyUs.p50
  }
}

async function startRp4 (group: ProcessGroup, name: string, path: string, originPort: number, args: string[]): Promise<{ child: Child, port: number }> {
  const child = group.spawn(name, process.execPath, [HEAP_ARG, path, 'listen', '127.0.0.1:0', '--to', `127.0.0.1:${originPort}`, ...args], {
    core: PROXY_CORE,
    env: rp4Env(),
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

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      baseline: { type: 'string' },
      only: { type: 'string', default: '1' },
      rounds: { type: 'string', default: '8' },
      duration: { type: 'string', default: '2' },
      segments: { type: 'string', default: '2' },
      'rp4-args': { type: 'string', default: '' },
      'baseline-args': { type: 'string' },
    },
    strict: true,
  })
  if (values.baseline === undefined) throw new Error('--baseline DIR is required (another checkout of rp4, built)')
  const basePath = existsSync(join(values.baseline, 'dist/bin/rp4.js')) ? resolve(values.baseline, 'dist/bin/rp4.js') : resolve(values.baseline)
  if (!existsSync(basePath)) throw new Error(`--baseline: no ${basePath} (build that checkout: npm ci)`)
  const rounds = Number(values.rounds)
  const durationS = Number(values.duration)
  if (!Number.isInteger(rounds) || rounds < 2) throw new Error(`--rounds ${values.rounds}: expected a whole number of at least 2`)
  const segments = Number(values.segments)
  if (!Number.isInteger(segments) || segments < 1 || segments > rounds) throw new Error(`--segments ${values.segments}: expected a whole number from 1 to --rounds`)
  const perSegment = Math.ceil(rounds / segments)
  if (!(durationS > 0)) throw new Error(`--duration ${values.duration}: expected seconds above 0`)
  const ids = values.only.split(',').map(Number)
  const chosen = SCENARIOS.filter(s => ids.includes(s.id) && s.mode === 'http')
  if (chosen.length === 0) throw new Error(`--only ${values.only}: no HTTP scenario by those numbers`)
  const words = (text: string): string[] => text.split(/\s+/).filter(arg => arg !== '')
  const args = words(values['rp4-args'])
  const baseArgs = words(values['baseline-args'] ?? values['rp4-args'])

  const group = new ProcessGroup()
  try {
    const origin = group.spawn('origin', process.execPath, [ORIGIN_PATH], { core: CLIENT_CORE })
    const originPort = Number((await waitForStderr(origin, /listening on (\S+):(\d+)/, 10_000))[2])
    process.stdout.write(`rp4 before/after: this build ${THIS_RP4} [${args.join(' ')}] against ${basePath} [${baseArgs.join(' ')}]; ${rounds} rounds of ${durationS} s bursts, alternating\n`)
    for (const scenario of chosen) {
      const pairs: Array<{ a: Burst, b: Burst }> = []
      const segmentRatios: number[] = []
      for (let segment = 0; segment < segments; segment++) {
        // fresh processes per segment, started in the other order each time: the process started
        // first was measured up to ~3% cheaper on this machine with the same build on both sides
        const thisFirst = segment % 2 === 0
        const first = thisFirst ? await startRp4(group, 'rp4', THIS_RP4, originPort, args) : await startRp4(group, 'baseline', basePath, originPort, baseArgs)
        const second = thisFirst ? await startRp4(group, 'baseline', basePath, originPort, baseArgs) : await startRp4(group, 'rp4', THIS_RP4, originPort, args)
        const current = thisFirst ? first : second
        const base = thisFirst ? second : first
        // warm both (JIT, pools) before anything counts
        await burst(group, scenario, base.child.pid, base.port, 1)
        await burst(group, scenario, current.child.pid, current.port, 1)
        const from = pairs.length
        for (let i = 0; i < perSegment; i++) {
          // ABBA: neither build always goes first
          let a: Burst, b: Burst
          if (i % 2 === 0) {
            b = await burst(group, scenario, base.child.pid, base.port, durationS)
            a = await burst(group, scenario, current.child.pid, current.port, durationS)
          } else {
            a = await burst(group, scenario, current.child.pid, current.port, durationS)
            b = await burst(group, scenario, base.child.pid, base.port, durationS)
          }
          pairs.push({ a, b })
        }
        segmentRatios.push(median(pairs.slice(from).map(p => p.a.cpuUs / p.b.cpuUs)))
        await group.stop(current.child)
        await group.stop(base.child)
      }
      const unit = scenario.main === 'p50' ? 'p50 µs' : scenario.main === 'mbps' ? 'MB/s' : 'req/s'
      const fmt = (v: number): string => v.toFixed(v >= 100 ? 0 : 2)
      process.stdout.write(`[${scenario.id}] ${scenario.title}\n` +
        `  CPU µs/req: this ${fmt(median(pairs.map(p => p.a.cpuUs)))}, baseline ${fmt(median(pairs.map(p => p.b.cpuUs)))}, ` +
        `ratio ${median(pairs.map(p => p.a.cpuUs / p.b.cpuUs)).toFixed(3)} (per start order: ${segmentRatios.map(r => r.toFixed(3)).join(', ')})\n` +
        `  ${unit}: this ${fmt(median(pairs.map(p => p.a.main)))}, baseline ${fmt(median(pairs.map(p => p.b.main)))}, ` +
        `ratio ${median(pairs.map(p => p.a.main / p.b.main)).toFixed(3)}\n`)
    }
  } finally {
    await group.stopAll()
  }
}

main().catch(err => {
  process.stderr.write(`ab: ${(err as Error).message}\n`)
  process.exit(1)
})
