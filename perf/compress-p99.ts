/**
 * Small requests while large ones are compressed (issue: web acceleration): does compressing
 * 100 KiB JSON responses on some connections delay the small requests on the others? Each row
 * runs two closed loops at once against one proxy: `--small` connections of `GET /small` (95
 * bytes, under the compression minimum: never compressed) and `--large` connections of
 * `GET /json100k` with `Accept-Encoding: gzip` (or `br`), compressed by the proxy. The small
 * loop's p50/p99/p99.9 are the figures; the same small loop alone on the same proxy, just before,
 * is the baseline, so the table shows what the compression next to it costs. rp4 compresses on
 * libuv's thread pool (Node's asynchronous zlib), nginx on its one worker.
 *
 *   node dist/perf/compress-p99.js [--duration S] [--small N] [--large N] [--proxies rp4,nginx]
 *
 * Results go to stdout as a table and to perf/results/compress-p99.json. No figure is asserted.
 */
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type { LoadResult } from './loadgen.js'
import { runLoad } from './measure.js'
import { treeCpuSeconds } from './proc-stats.js'
import { CLIENT_CORE, ProcessGroup, killEverythingSync, stopEverything, waitForStderr } from './processes.js'
import { formatLatency, writeJson } from './report.js'
import { detectTools, rowUnavailable, startRow, type RowName } from './rows.js'
import type { LoadSpec } from './scenarios.js'

const ORIGIN_PATH = fileURLToPath(new URL('./origin.js', import.meta.url))
const RESULT_JSON = fileURLToPath(new URL('../../perf/results/compress-p99.json', import.meta.url))

interface Row { name: string, proxy: RowName, coding: 'gzip' | 'br' }

const ROWS: readonly Row[] = [
  { name: 'rp4 gzip', proxy: 'rp4', coding: 'gzip' },
  { name: 'rp4 brotli', proxy: 'rp4', coding: 'br' },
  { name: 'nginx gzip', proxy: 'nginx', coding: 'gzip' },
]

interface Measured {
  row: string
  alone: { rps: number, p50Us: number, p99Us: number, p999Us: number } | null
  mixed: { rps: number, p50Us: number, p99Us: number, p999Us: number, largeRps: number, largeMBps: number, proxyCpuShare: number } | null
  errors: number
  note?: string
}

function figures (r: LoadResult): { rps: number, p50Us: number, p99Us: number, p999Us: number } {
  return { rps: r.rps, p50Us: r.latencyUs.p50, p99Us: r.latencyUs.p99, p999Us: r.latencyUs.p999 }
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '10' },
      small: { type: 'string', default: '8' },
      large: { type: 'string', default: '8' },
      proxies: { type: 'string', default: 'rp4,nginx' },
    },
  })
  const durationS = Number(values.duration)
  if (!(durationS > 0)) throw new Error(`--duration ${values.duration}: expected a number of seconds above 0`)
  const wanted = new Set(values.proxies.split(',').map(s => s.trim()))
  const small: LoadSpec = { connections: Number(values.small), pipeline: 1, path: '/small', bodySize: 0, newConn: false }
  const tools = detectTools()
  const originGroup = new ProcessGroup()
  const origin = originGroup.spawn('origin', process.execPath, [ORIGIN_PATH], { core: CLIENT_CORE })
  const originPort = Number((await waitForStderr(origin, /listening on (\S+):(\d+)/, 10_000))[2])
  const results: Measured[] = []
  for (const row of ROWS) {
    if (!wanted.has(row.proxy)) continue
    const unavailable = rowUnavailable(row.proxy, 'compress', tools)
    if (unavailable !== null) {
      results.push({ row: row.name, alone: null, mixed: null, errors: 0, note: unavailable })
      continue
    }
    const large: LoadSpec = { connections: Number(values.large), pipeline: 1, path: '/json100k', bodySize: 0, newConn: false, acceptEncoding: row.coding }
    const group = new ProcessGroup()
    try {
      const running = await startRow(row.proxy, { mode: 'compress', originPort, group, tools, rp4Args: [] })
      const warm = Math.min(1, durationS)
      await Promise.all([runLoad(group, small, running.port, warm), runLoad(group, large, running.port, warm)]) // pools, JIT
      const alone = await runLoad(group, small, running.port, durationS)
      const before = treeCpuSeconds(running.pid!)
      const started = performance.now()
      const [mixedSmall, mixedLarge] = await Promise.all([runLoad(group, small, running.port, durationS), runLoad(group, large, running.port, durationS)])
      const cpu = treeCpuSeconds(running.pid!) - before
      const wall = (performance.now() - started) / 1000
      results.push({
        row: row.name,
        alone: figures(alone),
        mixed: { ...figures(mixedSmall), largeRps: mixedLarge.rps, largeMBps: mixedLarge.mbps, proxyCpuShare: cpu / wall },
        errors: alone.errors.total + mixedSmall.errors.total + mixedLarge.errors.total,
      })
    } catch (err) {
      results.push({ row: row.name, alone: null, mixed: null, errors: 0, note: (err as Error).message })
    } finally {
      await group.stopAll()
    }
    process.stderr.write(`compress-p99: ${row.name} done\n`)
  }
  await originGroup.stopAll()
  const lines = [
    '| row | small alone: p50 / p99 / p99.9 | small beside compression: p50 / p99 / p99.9 | small req/s | compressed responses/s (MB/s out) | proxy CPU | errors |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for (const r of results) {
    if (r.alone === null || r.mixed === null) {
      lines.push(`| ${r.row} | — | — | — | — | — | skipped: ${r.note ?? ''} |`)
      continue
    }
    const a = r.alone
    const m = r.mixed
    lines.push(`| ${r.row} | ${formatLatency(a.p50Us)} / ${formatLatency(a.p99Us)} / ${formatLatency(a.p999Us)} | ${formatLatency(m.p50Us)} / ${formatLatency(m.p99Us)} / ${formatLatency(m.p999Us)} | ${m.rps.toFixed(0)} | ${m.largeRps.toFixed(0)} (${m.largeMBps.toFixed(1)}) | ${(m.proxyCpuShare * 100).toFixed(0)}% | ${r.errors} |`)
  }
  process.stdout.write(`${small.connections} connections of small GETs beside ${values.large} connections of 100 KiB JSON compressed; ${durationS}s per measure\n${lines.join('\n')}\n`)
  writeJson(RESULT_JSON, { durationS, small: small.connections, large: Number(values.large), results })
}

process.on('SIGINT', () => { void stopEverything().finally(() => process.exit(130)) })
process.on('SIGTERM', () => { void stopEverything().finally(() => process.exit(143)) })
process.on('exit', () => killEverythingSync())
main().catch(err => {
  process.stderr.write(`compress-p99: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
