/**
 * `--torture N`: the mixed-traffic run of torture.ts (pipelining clients, uploads and downloads
 * up to 4 MiB, late answers, slow readers) through every row, N requests each. What counts is
 * that a row completes every request with every byte intact; the time it takes, its MB/s and the
 * proxy's CPU are reported beside it.
 */
import { fileURLToPath } from 'node:url'
import { CLIENT_CORE, ProcessGroup, runToEnd, waitForStderr } from './processes.js'
import { treeCpuSeconds, treePeakRss } from './proc-stats.js'
import { rowUnavailable, startRow, type RowName, type Tools } from './rows.js'
import type { TortureResult } from './torture.js'

const TORTURE_PATH = fileURLToPath(new URL('./torture.js', import.meta.url))

export interface TortureRow {
  row: RowName
  status: 'ok' | 'failed' | 'skipped'
  note: string
  result: TortureResult | null
  /** Body bytes both ways per second, 10^6 bytes. */
  mbps: number | null
  proxyCpuS: number | null
  peakRssBytes: number | null
}

export async function runTortureMode (requests: number, rows: RowName[], tools: Tools, rp4Args: string[], progress: (text: string) => void): Promise<TortureRow[]> {
  const originGroup = new ProcessGroup()
  const out: TortureRow[] = []
  try {
    const origin = originGroup.spawn('torture-origin', process.execPath, [TORTURE_PATH, 'origin'], { core: CLIENT_CORE })
    const originPort = Number((await waitForStderr(origin, /torture origin on (\S+):(\d+)/, 10_000))[2])
    for (const row of ['direct', ...rows] as RowName[]) {
      const unavailable = rowUnavailable(row, 'http', tools)
      if (unavailable !== null) {
        out.push({ row, status: 'skipped', note: unavailable, result: null, mbps: null, proxyCpuS: null, peakRssBytes: null })
        continue
      }
      progress(`torture: ${row}, ${requests} requests`)
      out.push(await runRow(row, requests, originPort, tools, rp4Args))
    }
  } finally {
    await originGroup.stopAll()
  }
  return out
}

async function runRow (row: RowName, requests: number, originPort: number, tools: Tools, rp4Args: string[]): Promise<TortureRow> {
  const group = new ProcessGroup()
  try {
    const running = await startRow(row, { mode: 'http', originPort, group, tools, rp4Args })
    const cpuBefore = running.pid === null ? 0 : treeCpuSeconds(running.pid)
    const client = group.spawn('torture-client', process.execPath,
      [TORTURE_PATH, 'client', '--port', String(running.port), '--requests', String(requests)], { core: CLIENT_CORE, captureStdout: true })
    // the client bounds itself (a stall after 15 s, the run after 120 s); this is the backstop
    const stdout = await runToEnd(group, client, 150_000)
    const proxyCpuS = running.pid === null ? null : treeCpuSeconds(running.pid) - cpuBefore
    const peakRssBytes = running.pid === null ? null : treePeakRss(running.pid)
    await running.stop()
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '') as TortureResult
    const whole = result.completed === result.requests && result.failureCount === 0 && result.stalled === null
    return {
      row,
      status: whole ? 'ok' : 'failed',
      note: whole ? '' : result.stalled ?? result.failures.slice(0, 3).join('; '),
      result,
      mbps: (result.bytesUp + result.bytesDown) / result.durationMs / 1000,
      proxyCpuS,
      peakRssBytes,
    }
  } catch (err) {
    return { row, status: 'failed', note: (err as Error).message, result: null, mbps: null, proxyCpuS: null, peakRssBytes: null }
  } finally {
    await group.stopAll()
  }
}

export function describeTorture (rows: TortureRow[]): string {
  const lines = ['torture (mixed pipelined traffic, bodies 0-4 MiB both ways, every byte checked):']
  for (const r of rows) {
    if (r.result === null) {
      lines.push(`  ${r.row.padEnd(8)} ${r.status}: ${r.note}`)
      continue
    }
    const res = r.result
    const cpu = r.proxyCpuS === null ? '' : `, proxy CPU ${r.proxyCpuS.toFixed(2)} s`
    const rss = r.peakRssBytes === null ? '' : `, peak RSS ${(r.peakRssBytes / 1048576).toFixed(0)} MiB`
    lines.push(`  ${r.row.padEnd(8)} ${res.completed}/${res.requests} complete, ${res.failureCount} bad, in ${(res.durationMs / 1000).toFixed(2)} s, ` +
      `${(r.mbps ?? 0).toFixed(0)} MB/s${cpu}${rss}${r.status === 'ok' ? '' : ` — FAILED: ${r.note}`}`)
  }
  return lines.join('\n')
}
