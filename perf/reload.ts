/**
 * Reload under load: scenario 1's load through `rp4 run FILE` while FILE is rewritten and rp4
 * is sent SIGHUP every second, each time with a configuration that differs (the Via name), so
 * that every reload builds and switches a new generation. The load generator counts errors:
 * the figure that matters is that there are none. The reloads rp4 confirmed ("reloaded" on
 * stderr) are counted too, so that a run where nothing reloaded cannot pass for a good one.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HEAP_ARGS, rp4Env } from '../bin/serving.js'
import { runLoad } from './measure.js'
import { PROXY_CORE, ProcessGroup, sleep, waitForStderr } from './processes.js'
import { RP4_PATH } from './rows.js'
import { SCENARIOS } from './scenarios.js'
import type { LoadResult } from './loadgen.js'

export interface ReloadResult {
  seconds: number
  /** SIGHUPs sent, and reloads rp4 reported done. */
  signals: number
  reloads: number
  load: LoadResult
  verdict: string
}

export async function runReload (seconds: number, originPort: number, rp4Args: string[], progress: (text: string) => void): Promise<ReloadResult> {
  const group = new ProcessGroup()
  const dir = mkdtempSync(join(tmpdir(), 'rp4-perf-reload-'))
  const file = join(dir, 'rp4.yaml')
  // --rp4-args are flags; a file takes none: only what this file says is used
  if (rp4Args.length > 0) progress(`reload: --rp4-args ignored (rp4 run FILE takes its options from the file): ${rp4Args.join(' ')}`)
  const write = (n: number): void => writeFileSync(file, `listen: 127.0.0.1:0\ntargets: ["127.0.0.1:${originPort}"]\nvia: rp4-${n % 2}\n`)
  try {
    write(0)
    const child = group.spawn('rp4', process.execPath, [...HEAP_ARGS, RP4_PATH, 'run', file], { core: PROXY_CORE, env: rp4Env() })
    let reloads = 0
    child.process.stderr?.on('data', (text: string) => { reloads += text.split(' reloaded').length - 1 })
    const match = await waitForStderr(child, /listening on (\S+):(\d+)/, 10_000)
    const port = Number(match[2])
    const loading = runLoad(group, SCENARIOS[0].load, port, seconds)
    let done = false
    void loading.finally(() => { done = true }).catch(() => {})
    let signals = 0
    const startedAt = Date.now()
    // the first and last second without a reload: the load generator's ramp and its end
    await sleep(1000)
    while (!done && Date.now() - startedAt < (seconds - 1) * 1000) {
      write(++signals)
      child.process.kill('SIGHUP')
      progress(`reload: ${signals} reloads sent, ${reloads} done`)
      await sleep(1000)
    }
    const load = await loading
    await group.stop(child)
    const verdict = load.errors.total === 0 && reloads > 0
      ? `no failed request over ${reloads} reloads (${load.requests} requests)`
      : reloads === 0 ? 'NO RELOAD was confirmed: the run proves nothing' : `${load.errors.total} FAILED requests over ${reloads} reloads`
    return { seconds, signals, reloads, load, verdict }
  } finally {
    await group.stopAll()
    rmSync(dir, { recursive: true, force: true })
  }
}
