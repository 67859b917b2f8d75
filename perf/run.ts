/**
 * The performance runner: starts the origin, then for each scenario and row starts the row,
 * measures it, stops it, and finally prints the table and the ratios and writes the JSON.
 * `npm run perf` builds and runs this; `node dist/perf/run.js --help` lists the flags.
 *
 * Every row runs under a hard deadline; every process is stopped by its PID at the end of
 * its row, on SIGINT/SIGTERM and on errors.
 */
import { fileURLToPath } from 'node:url'
import { resolve } from 'node:path'
import { crossCheck, type CrossCheck } from './crosscheck.js'
import { runIdle, type IdleResult } from './idle.js'
import { emptyRow, measureRow, type MeasureSettings, type RowResult } from './measure.js'
import { OptionsError, USAGE, parseOptions, type RunOptions } from './options.js'
import { CLIENT_CORE, PROXY_CORE, ProcessGroup, hasTaskset, killEverythingSync, stopEverything, waitForStderr } from './processes.js'
import { machineFacts } from './proc-stats.js'
import { formatBytes, ratios, renderText, writeJson, type ScenarioResult } from './report.js'
import { rowUnavailable, detectTools, type RowName, type Tools } from './rows.js'
import { SCENARIOS, describeLoad, type Scenario } from './scenarios.js'
import { runSoak, type SoakResult } from './soak.js'
import { runReload, type ReloadResult } from './reload.js'
import { describeWorkers, runWorkers, type WorkersResult } from './workers.js'
import { describeMetricsCost, runMetricsCost, type MetricsCostResult } from './metrics-cost.js'
import { describeTorture, runTortureMode, type TortureRow } from './torture-mode.js'

const ORIGIN_PATH = fileURLToPath(new URL('./origin.js', import.meta.url))
const LATEST_JSON = fileURLToPath(new URL('../../perf/results/latest.json', import.meta.url))
const startedAt = Date.now()

function progress (text: string): void {
  const line = `[perf ${((Date.now() - startedAt) / 1000).toFixed(0).padStart(4)}s] ${text}`
  // one line rewritten in place on a terminal, plain lines in CI logs
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${line.slice(0, (process.stderr.columns ?? 120) - 1)}`)
  else process.stderr.write(line + '\n')
}

function clearProgress (): void {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K')
}

function installStopHandlers (): void {
  let stopping = false
  const stopOn = (signal: NodeJS.Signals, code: number): void => {
    process.on(signal, () => {
      if (stopping) process.exit(code)
      stopping = true
      clearProgress()
      process.stderr.write(`perf: ${signal}: stopping every process started\n`)
      void stopEverything().finally(() => process.exit(code))
    })
  }
  stopOn('SIGINT', 130)
  stopOn('SIGTERM', 143)
  process.on('exit', () => killEverythingSync())
}

/** Hard bound for one row: warm-up, repetitions, plus generous room for starts and stops. */
function rowDeadlineMs (options: RunOptions): number {
  return (options.warmupS + options.reps * options.durationS) * 1000 + (options.reps + 1) * 20_000 + 30_000
}

async function measureWithDeadline (scenario: Scenario, row: RowName, options: RunOptions, settings: MeasureSettings): Promise<RowResult> {
  const group = new ProcessGroup()
  const limit = rowDeadlineMs(options)
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`deadline of ${Math.round(limit / 1000)} s passed`)), limit)
  })
  try {
    return await Promise.race([measureRow(scenario, row, group, settings), deadline])
  } catch (err) {
    return emptyRow(row, 'failed', (err as Error).message)
  } finally {
    clearTimeout(timer)
    await group.stopAll()
  }
}

async function runScenarios (options: RunOptions, tools: Tools, originPort: number, originPid: number): Promise<ScenarioResult[]> {
  const chosen = SCENARIOS.filter(s => options.only.length === 0 || options.only.includes(s.id))
  const results: ScenarioResult[] = []
  for (const [index, scenario] of chosen.entries()) {
    const result: ScenarioResult = { id: scenario.id, title: scenario.title, load: describeLoad(scenario.load), main: scenario.main, rows: [] }
    results.push(result)
    if (scenario.mode === 'tcp' && !tools.rp4.tcp) {
      result.skipped = 'rp4 has no --tcp flag yet (rp4 --help does not list it); HAProxy mode tcp is ready for when it does'
      continue
    }
    for (const row of ['direct', ...options.proxies] as RowName[]) {
      const unavailable = rowUnavailable(row, scenario.mode, tools)
      if (unavailable !== null) {
        result.rows.push(emptyRow(row, 'skipped', unavailable))
        continue
      }
      const settings: MeasureSettings = {
        durationS: options.durationS,
        warmupS: options.warmupS,
        reps: options.reps,
        originPort,
        originPid,
        tools,
        rp4Args: options.rp4Args,
        progress: text => progress(`[${index + 1}/${chosen.length}] ${scenario.title} | ${text}`),
      }
      result.rows.push(await measureWithDeadline(scenario, row, options, settings))
    }
  }
  return results
}

function header (options: RunOptions, tools: Tools): string[] {
  const machine = machineFacts()
  const mode = options.quick ? 'quick mode' : 'full mode'
  return [
    `rp4 perf — ${new Date().toISOString()} — ${mode}: ${options.reps} × ${options.durationS}s per row (median), ${options.warmupS}s warm-up`,
    `machine: ${machine.nproc} cores, ${machine.cpuModel}, Linux ${machine.kernel}`,
    `versions: node ${process.version}; rp4 ${tools.rp4.version || 'absent'}; nginx ${tools.nginx.version || 'absent'}; ` +
      `${tools.haproxy.version || 'HAProxy absent'}; ${tools.wrk.version || 'wrk absent'}`,
    hasTaskset
      ? `pinning: proxy under test on core ${PROXY_CORE}, origin and load generator on core ${CLIENT_CORE} (taskset)`
      : 'pinning: none (taskset not found; apt-get install util-linux): figures are noisier',
  ]
}

function installHints (tools: Tools, options: RunOptions): string[] {
  const hints: string[] = []
  if (options.proxies.includes('nginx') && tools.nginx.missing !== undefined) hints.push(`nginx rows skipped: ${tools.nginx.missing}`)
  if (options.proxies.includes('haproxy') && tools.haproxy.missing !== undefined) hints.push(`HAProxy rows skipped: ${tools.haproxy.missing}`)
  if (options.wrk && tools.wrk.missing !== undefined) hints.push(`wrk cross-check skipped: ${tools.wrk.missing}`)
  if (options.proxies.includes('rp4') && tools.rp4.missing !== undefined) hints.push(`rp4 rows skipped: ${tools.rp4.missing}`)
  if (hints.some(hint => hint.includes('apt-get'))) hints.push('install the comparison tools with: apt-get install nginx haproxy wrk')
  return hints
}

function describeCrossCheck (check: CrossCheck): string {
  const list = (values: number[]): string => values.map(v => v.toFixed(0)).join('/')
  return `wrk cross-check (scenario 1 direct, ${check.pairs} alternating pairs of ${check.durationS}s): loadgen ${list(check.loadgenRps)} req/s, ` +
    `wrk ${list(check.wrkRps)} req/s, ratio of medians ${check.ratio.toFixed(2)} — ${check.within10pct ? 'WITHIN' : 'NOT within'} 10%: ${check.explanation}`
}

function describeSoak (soak: SoakResult): string {
  const series = soak.samples.map(s => `${s.atS.toFixed(0)}s:${(s.rssBytes / 1048576).toFixed(1)}`).join(' ')
  return `soak (${soak.seconds}s through rp4, ${soak.load.rps.toFixed(0)} req/s, ${soak.load.errors.total} errors): ${soak.verdict}\n` +
    `  RSS samples (s:MiB, every ${soak.intervalS}s): ${series}`
}

function describeIdle (idle: IdleResult): string {
  const lines = [
    `idle connections: ${idle.opened}/${idle.requested} open (${idle.failed} failed), past rp4's park timeout; rp4 RSS ${formatBytes(idle.rssBeforeBytes)} → ` +
      `${formatBytes(idle.rssWithOpenBytes)}: ${idle.bytesPerConnection} bytes per idle connection as it stands`,
    idle.collected === null
      ? '  after a full garbage collection: not measured'
      : `  after a full garbage collection: ${formatBytes(idle.collected.rssBeforeBytes)} → ${formatBytes(idle.collected.rssWithOpenBytes)}: ` +
        `${idle.collected.bytesPerConnection} bytes per idle connection`,
    `  target ≤ ${idle.targetBytes} bytes (after the collection): ${idle.meetsTarget ? 'met' : 'NOT met'}`,
  ]
  for (const note of idle.notes) lines.push(`  note: ${note}`)
  return lines.join('\n')
}

async function main (): Promise<number> {
  let options: RunOptions | 'help'
  try {
    options = parseOptions(process.argv.slice(2))
  } catch (err) {
    if (!(err instanceof OptionsError)) throw err
    process.stderr.write(`perf: ${err.message}\n${USAGE}`)
    return 2
  }
  if (options === 'help') {
    process.stdout.write(USAGE)
    return 0
  }
  installStopHandlers()
  const tools = detectTools()
  const intro = header(options, tools)
  const hints = installHints(tools, options)
  process.stdout.write([...intro, ...hints.map(hint => `note: ${hint}`)].join('\n') + '\n')

  const originGroup = new ProcessGroup()
  const origin = originGroup.spawn('origin', process.execPath, [ORIGIN_PATH], { core: CLIENT_CORE })
  const originPort = Number((await waitForStderr(origin, /listening on (\S+):(\d+)/, 10_000))[2])

  const modesOnly = (options.soakS !== null || options.reloadS !== null || options.idleCount !== null || options.tortureRequests !== null || options.workers !== null || options.metricsCostSegments !== null) && options.only.length === 0
  const scenarios = modesOnly ? [] : await runScenarios(options, tools, originPort, origin.pid)

  let check: CrossCheck | null = null
  let checkError: string | null = null
  const scenarioOneRan = scenarios.some(s => s.id === 1)
  if (scenarioOneRan && options.wrk && tools.wrk.command !== null) {
    progress('wrk cross-check')
    try {
      // alternating pairs: on a noisy machine one back-to-back pair can land on either side of a disturbance
      check = await crossCheck(tools.wrk.command, originPort, origin.pid, options.durationS, Math.max(2, options.reps))
    } catch (err) {
      checkError = (err as Error).message
    }
  }

  let soak: SoakResult | null = null
  let idle: IdleResult | null = null
  const modeErrors: string[] = []
  if (options.soakS !== null) {
    if (tools.rp4.missing !== undefined) modeErrors.push(`soak skipped: ${tools.rp4.missing}`)
    else soak = await runSoak(options.soakS, originPort, tools, options.rp4Args, progress).catch(err => { modeErrors.push(`soak failed: ${(err as Error).message}`); return null })
  }
  let reload: ReloadResult | null = null
  if (options.reloadS !== null) {
    if (tools.rp4.missing !== undefined) modeErrors.push(`reload skipped: ${tools.rp4.missing}`)
    else reload = await runReload(options.reloadS, originPort, options.rp4Args, progress).catch(err => { modeErrors.push(`reload mode failed: ${(err as Error).message}`); return null })
  }
  let workers: WorkersResult | null = null
  if (options.workers !== null) {
    if (tools.rp4.missing !== undefined) modeErrors.push(`workers mode skipped: ${tools.rp4.missing}`)
    else workers = await runWorkers(options.workers, options.durationS, originPort, options.rp4Args, progress).catch(err => { modeErrors.push(`workers mode failed: ${(err as Error).message}`); return null })
  }
  let metricsCost: MetricsCostResult | null = null
  if (options.metricsCostSegments !== null) {
    if (tools.rp4.missing !== undefined) modeErrors.push(`metrics cost mode skipped: ${tools.rp4.missing}`)
    else {
      const settings = { durationS: options.durationS, warmupS: options.warmupS, reps: options.reps, originPort, originPid: origin.pid, tools, rp4Args: options.rp4Args, progress }
      metricsCost = await runMetricsCost(options.metricsCostSegments, settings).catch(err => { modeErrors.push(`metrics cost mode failed: ${(err as Error).message}`); return null })
    }
  }
  if (options.idleCount !== null) {
    if (tools.rp4.missing !== undefined) modeErrors.push(`idle test skipped: ${tools.rp4.missing}`)
    else idle = await runIdle(options.idleCount, originPort, tools, options.rp4Args, progress).catch(err => { modeErrors.push(`idle test failed: ${(err as Error).message}`); return null })
  }
  await originGroup.stopAll()
  let torture: TortureRow[] | null = null
  if (options.tortureRequests !== null) {
    torture = await runTortureMode(options.tortureRequests, options.proxies, tools, options.rp4Args, progress)
    if (torture.some(r => r.row === 'direct' && r.status === 'failed')) modeErrors.push('torture failed on the direct row: the harness is broken')
  }
  clearProgress()

  const ratioList = ratios(scenarios)
  const lines: string[] = []
  if (scenarios.length > 0) {
    lines.push(renderText(scenarios, ratioList))
    lines.push('columns: medians over repetitions, errors summed. CPU µs/req, proxy CPU (share of its core) and peak RSS are the proxy\'s ' +
      '(nginx: master + worker). gen CPU: the load generator\'s share of its core. other load: CPU used by processes outside the harness ' +
      'during the window, in % of one core (the highest repetition): above ~20% the row was disturbed')
  }
  if (check !== null) lines.push(describeCrossCheck(check))
  if (checkError !== null) lines.push(`wrk cross-check failed: ${checkError}`)
  if (soak !== null) lines.push(describeSoak(soak))
  if (reload !== null) {
    lines.push(`reload (${reload.seconds}s through rp4 run FILE, ${reload.load.rps.toFixed(0)} req/s, SIGHUP every second): ${reload.verdict}; ` +
      `errors: ${JSON.stringify(reload.load.errors)}, ${reload.signals} SIGHUPs, ${reload.reloads} reloads done`)
  }
  if (workers !== null) lines.push(describeWorkers(workers))
  if (metricsCost !== null) lines.push(describeMetricsCost(metricsCost))
  if (idle !== null) lines.push(describeIdle(idle))
  if (torture !== null) lines.push(describeTorture(torture))
  lines.push(...modeErrors)
  process.stdout.write(lines.join('\n') + '\n')

  const data = {
    date: new Date(startedAt).toISOString(),
    header: intro,
    notes: hints,
    settings: options,
    machine: machineFacts(),
    versions: { node: process.version, rp4: tools.rp4.version, nginx: tools.nginx.version, haproxy: tools.haproxy.version, wrk: tools.wrk.version },
    pinning: hasTaskset ? { proxyCore: PROXY_CORE, clientCore: CLIENT_CORE } : null,
    scenarios,
    ratios: ratioList,
    crossCheck: check,
    soak,
    reload,
    workers,
    metricsCost,
    idle,
    torture,
    errors: modeErrors,
  }
  for (const file of [LATEST_JSON, ...(options.jsonFile === null ? [] : [resolve(options.jsonFile)])]) writeJson(file, data)
  process.stdout.write(`results written to ${LATEST_JSON}${options.jsonFile === null ? '' : ` and ${resolve(options.jsonFile)}`}\n`)

  // the direct row failing means the harness itself is broken, not a proxy
  const harnessBroken = scenarios.some(s => s.rows.some(r => r.row === 'direct' && r.status === 'failed')) || modeErrors.some(e => e.includes('failed'))
  return harnessBroken ? 1 : 0
}

main().then(code => process.exit(code), async (err: unknown) => {
  clearProgress()
  process.stderr.write(`perf: ${(err as Error).stack ?? String(err)}\n`)
  await stopEverything()
  process.exit(1)
})
