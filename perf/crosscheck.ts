/**
 * Is the load generator itself trustworthy? Scenario 1 direct to the origin, alternately with
 * our generator and with wrk (a C tool), same connections, same duration, same pinning; the
 * medians are compared. Within 10% means the generator's figures are usable; otherwise the
 * report says which side used how much CPU, because with this pinning the generator shares
 * its core with the origin and every cycle it spends is one the origin does not get, and how
 * much other load the machine had meanwhile.
 */
import { median, runLoad } from './measure.js'
import { CLIENT_CORE, ProcessGroup, runToEnd, sleep } from './processes.js'
import { machineBusySeconds, processCpuSeconds } from './proc-stats.js'
import { SCENARIOS } from './scenarios.js'

export interface CrossCheck {
  durationS: number
  pairs: number
  loadgenRps: number[]
  wrkRps: number[]
  loadgenCoreShare: number
  /** wrk's share of one core, from samples taken while it ran. */
  wrkCoreShare: number | null
  /** CPU used by processes outside the check while it ran, in cores. */
  otherLoad: number
  /** median(loadgen) / median(wrk). */
  ratio: number
  within10pct: boolean
  explanation: string
}

interface WrkRun {
  rps: number
  coreShare: number | null
  cpuSeconds: number
}

async function runWrk (group: ProcessGroup, command: string, port: number, seconds: number): Promise<WrkRun> {
  const child = group.spawn('wrk', command, ['-t1', '-c50', `-d${seconds}s`, `http://127.0.0.1:${port}/small`], {
    core: CLIENT_CORE,
    captureStdout: true,
  })
  const startedAt = Date.now()
  // /proc/PID disappears with the process: keep the latest reading taken while it lives
  let cpuSeconds = 0
  let sampledAt = startedAt
  const sampler = setInterval(() => {
    const cpu = processCpuSeconds(child.pid)
    if (cpu !== null) {
      cpuSeconds = cpu
      sampledAt = Date.now()
    }
  }, 100)
  try {
    const stdout = await runToEnd(group, child, seconds * 1000 + 15_000)
    const match = /Requests\/sec:\s+([\d.]+)/.exec(stdout)
    if (match === null) throw new Error(`wrk printed no Requests/sec: ${stdout.slice(0, 300)}`)
    const elapsed = (sampledAt - startedAt) / 1000
    return { rps: Number(match[1]), coreShare: elapsed > 0 ? cpuSeconds / elapsed : null, cpuSeconds }
  } finally {
    clearInterval(sampler)
  }
}

export async function crossCheck (wrkCommand: string, originPort: number, originPid: number, durationS: number, pairs: number): Promise<CrossCheck> {
  const group = new ProcessGroup()
  const seconds = Math.max(1, Math.round(durationS))
  const ours: number[] = []
  const theirs: number[] = []
  const genShares: number[] = []
  const wrkShares: number[] = []
  let generatorsCpu = 0
  const busyBefore = machineBusySeconds()
  const originBefore = processCpuSeconds(originPid) ?? 0
  const runnerBefore = process.cpuUsage()
  const startedAt = Date.now()
  try {
    for (let i = 0; i < pairs; i++) {
      const load = await runLoad(group, SCENARIOS[0].load, originPort, seconds)
      ours.push(load.rps)
      genShares.push(load.cpu.coreShare)
      generatorsCpu += load.cpu.totalMs / 1000
      await sleep(200)
      const wrk = await runWrk(group, wrkCommand, originPort, seconds)
      theirs.push(wrk.rps)
      if (wrk.coreShare !== null) wrkShares.push(wrk.coreShare)
      generatorsCpu += wrk.cpuSeconds
    }
  } finally {
    await group.stopAll()
  }
  const runner = process.cpuUsage(runnerBefore)
  const harnessCpu = generatorsCpu + ((processCpuSeconds(originPid) ?? 0) - originBefore) + (runner.user + runner.system) / 1e6
  const otherLoad = Math.max(0, machineBusySeconds() - busyBefore - harnessCpu) / ((Date.now() - startedAt) / 1000)
  const ratio = median(theirs) > 0 ? median(ours) / median(theirs) : 0
  const within10pct = Math.abs(ratio - 1) <= 0.1
  const genShare = median(genShares)
  const wrkShare = wrkShares.length > 0 ? median(wrkShares) : null
  return {
    durationS: seconds,
    pairs,
    loadgenRps: ours,
    wrkRps: theirs,
    loadgenCoreShare: genShare,
    wrkCoreShare: wrkShare,
    otherLoad,
    ratio,
    within10pct,
    explanation: explain(within10pct, ratio, genShare, wrkShare, otherLoad),
  }
}

function explain (within: boolean, ratio: number, genShare: number, wrkShare: number | null, otherLoad: number): string {
  const facts = `generator used ${pct(genShare)} of its core, wrk ${wrkShare === null ? 'unknown' : pct(wrkShare)}; ` +
    `other load on the machine ${pct(otherLoad)} of a core`
  if (within) return `agree (${facts})`
  const lower = ratio < 1 ? 'our generator' : 'wrk'
  const reasons: string[] = []
  if (wrkShare !== null && (ratio < 1) === (genShare > wrkShare)) {
    reasons.push(`${lower} needs more CPU per request, and the core it uses is shared with the origin, so the origin gets less of it`)
  }
  if (otherLoad > 0.2) reasons.push('other processes took a noticeable share of the machine meanwhile (re-run on a quiet machine)')
  if (reasons.length === 0) reasons.push('no CPU difference explains it: run-to-run noise on a shared machine is the likely cause (re-run with --duration 5 or more)')
  return `differ by ${(Math.abs(ratio - 1) * 100).toFixed(0)}%, ${lower} lower: ${reasons.join('; ')} (${facts})`
}

function pct (share: number): string {
  return `${Math.round(share * 100)}%`
}
