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
 * --baseline-args ""`), and so is one with two sets of Node flags: `--node-args` and
 * `--baseline-node-args` (a GC setting: `--node-args "--max-semi-space-size=64"
 * --baseline-node-args ""`; an initial heap size given there replaces the harness's own, and
 * `--initial-heap-size=0` is V8's default), and so is one with two environments: `--env` and
 * `--baseline-env` ("NAME=VALUE …", over the harness's: `--env GLIBC_TUNABLES=glibc.malloc.arena_max=1`).
 *
 * The rounds are split into `--segments` (2), each with both processes started afresh, in the other
 * order each time (interleave.ts says why); the report gives each segment's ratio too.
 *
 * Usage: node ab.js --baseline DIR [--only 1,3] [--rounds 8] [--segments 2] [--duration 2] [--rp4-args "..."] [--baseline-args "..."] [--node-args "..."] [--baseline-node-args "..."] [--env "N=V ..."] [--baseline-env "N=V ..."]
 */
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { interleave } from './interleave.js'
import { CLIENT_CORE, ProcessGroup, waitForStderr } from './processes.js'
import { SCENARIOS } from './scenarios.js'

const ORIGIN_PATH = fileURLToPath(new URL('./origin.js', import.meta.url))
const THIS_RP4 = fileURLToPath(new URL('../bin/rp4.js', import.meta.url))

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
      'node-args': { type: 'string', default: '' },
      'baseline-node-args': { type: 'string' },
      env: { type: 'string', default: '' },
      'baseline-env': { type: 'string' },
    },
    strict: true,
  })
  if (values.baseline === undefined) throw new Error('--baseline DIR is required (another checkout of rp4, built)')
  const basePath = existsSync(join(values.baseline, 'dist/bin/rp4.js')) ? resolve(values.baseline, 'dist/bin/rp4.js') : resolve(values.baseline)
  if (!existsSync(basePath)) throw new Error(`--baseline: no ${basePath} (build that checkout: npm ci)`)
  const rounds = Number(values.rounds)
  const durationS = Number(values.duration)
  const segments = Number(values.segments)
  if (!Number.isInteger(rounds) || rounds < 2) throw new Error(`--rounds ${values.rounds}: expected a whole number of at least 2`)
  if (!Number.isInteger(segments) || segments < 1 || segments > rounds) throw new Error(`--segments ${values.segments}: expected a whole number from 1 to --rounds`)
  if (!(durationS > 0)) throw new Error(`--duration ${values.duration}: expected seconds above 0`)
  const ids = values.only.split(',').map(Number)
  const chosen = SCENARIOS.filter(s => ids.includes(s.id))
  if (chosen.length === 0) throw new Error(`--only ${values.only}: no scenario by those numbers`)
  const words = (text: string): string[] => text.split(/\s+/).filter(arg => arg !== '')
  const args = words(values['rp4-args'])
  const baseArgs = words(values['baseline-args'] ?? values['rp4-args'])
  const nodeArgs = words(values['node-args'])
  const baseNodeArgs = words(values['baseline-node-args'] ?? values['node-args'])
  const envOf = (text: string, option: string): Record<string, string> => Object.fromEntries(words(text).map(pair => {
    const eq = pair.indexOf('=')
    if (eq <= 0) throw new Error(`${option} ${pair}: expected NAME=VALUE`)
    return [pair.slice(0, eq), pair.slice(eq + 1)]
  }))
  const env = envOf(values.env, '--env')
  const baseEnv = envOf(values['baseline-env'] ?? values.env, '--baseline-env')

  const group = new ProcessGroup()
  try {
    const origin = group.spawn('origin', process.execPath, [ORIGIN_PATH], { core: CLIENT_CORE })
    const originPort = Number((await waitForStderr(origin, /listening on (\S+):(\d+)/, 10_000))[2])
    process.stdout.write(`rp4 before/after: this build ${THIS_RP4} [${[...words(values.env), ...nodeArgs, ...args].join(' ')}] against ${basePath} [${[...words(values['baseline-env'] ?? values.env), ...baseNodeArgs, ...baseArgs].join(' ')}]; ${rounds} rounds of ${durationS} s bursts, alternating, in ${segments} segments\n`)
    for (const scenario of chosen) {
      const r = await interleave(group, scenario, { name: 'rp4', rp4: THIS_RP4, args, nodeArgs, env }, { name: 'baseline', rp4: basePath, args: baseArgs, nodeArgs: baseNodeArgs, env: baseEnv }, { rounds, segments, durationS, originPort })
      const unit = scenario.main === 'p50' ? 'p50 µs' : scenario.main === 'mbps' ? 'MB/s' : 'req/s'
      const fmt = (v: number): string => v.toFixed(v >= 100 ? 0 : 2)
      process.stdout.write(`[${scenario.id}] ${scenario.title}\n` +
        `  CPU µs/req: this ${fmt(r.cpuA)}, baseline ${fmt(r.cpuB)}, ratio ${r.cpuRatio.toFixed(3)} (per segment: ${r.segmentRatios.map(x => x.toFixed(3)).join(', ')})\n` +
        `  ${unit}: this ${fmt(r.mainA)}, baseline ${fmt(r.mainB)}, ratio ${r.mainRatio.toFixed(3)}\n` +
        `  peak RSS: this ${(r.peakRssA / 1048576).toFixed(1)} MiB, baseline ${(r.peakRssB / 1048576).toFixed(1)} MiB\n`)
    }
  } finally {
    await group.stopAll()
  }
}

main().catch(err => {
  process.stderr.write(`ab: ${(err as Error).message}\n`)
  process.exit(1)
})
