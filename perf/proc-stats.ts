/**
 * What the harness measures about a proxy process from outside it, through /proc: CPU time
 * (utime + stime) and memory (VmHWM, VmRSS). Figures are summed over the process and its
 * descendants, because nginx does its work in a worker that is a child of the PID started.
 */
import { readFileSync, readdirSync } from 'node:fs'
import { spawnSync } from 'node:child_process'

/** Clock ticks per second of the utime/stime fields (almost always 100). */
export const CLOCK_TICKS: number = (() => {
  const probe = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })
  const value = Number(probe.stdout?.trim())
  return Number.isFinite(value) && value > 0 ? value : 100
})()

function readProc (path: string): string | null {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return null
  }
}

/** The PID and all its descendants that exist right now. */
export function processTree (pid: number): number[] {
  const result = [pid]
  for (let i = 0; i < result.length; i++) {
    for (const child of childrenOf(result[i])) result.push(child)
  }
  return result
}

function childrenOf (pid: number): number[] {
  // /proc/PID/task/TID/children is exact and cheap where the kernel has it
  let tasks: string[]
  try {
    tasks = readdirSync(`/proc/${pid}/task`)
  } catch {
    return []
  }
  const found: number[] = []
  let supported = false
  for (const tid of tasks) {
    const text = readProc(`/proc/${pid}/task/${tid}/children`)
    if (text === null) continue
    supported = true
    for (const word of text.trim().split(/\s+/)) if (word !== '') found.push(Number(word))
  }
  return supported ? found : childrenByScan(pid)
}

function childrenByScan (parent: number): number[] {
  const found: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = statFields(Number(entry))
    if (stat !== null && Number(stat[1]) === parent) found.push(Number(entry))
  }
  return found
}

/** Fields of /proc/PID/stat after the command name; index 0 is the state (field 3). */
function statFields (pid: number): string[] | null {
  const text = readProc(`/proc/${pid}/stat`)
  if (text === null) return null
  // the command name may contain spaces and parentheses: cut after the last ')'
  return text.slice(text.lastIndexOf(')') + 2).split(' ')
}

/** utime + stime of one process, in seconds; null once it has gone. */
export function processCpuSeconds (pid: number): number | null {
  const fields = statFields(pid)
  if (fields === null) return null
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}

/** CPU seconds used so far by the process tree. */
export function treeCpuSeconds (pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + (processCpuSeconds(p) ?? 0), 0)
}

/** A "VmXXX:  1234 kB" line of /proc/PID/status, in bytes. */
function statusBytes (pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const text = readProc(`/proc/${pid}/status`)
  if (text === null) return 0
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)
  return match === null ? 0 : Number(match[1]) * 1024
}

/** Peak resident memory of the tree: the sum of each process's own peak (an upper bound). */
export function treePeakRss (pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + statusBytes(p, 'VmHWM'), 0)
}

/** Resident memory of the tree right now. */
export function treeRss (pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + statusBytes(p, 'VmRSS'), 0)
}

/** The facts a results table needs to be read against. */
export function machineFacts (): { nproc: number, cpuModel: string, kernel: string } {
  const cpuinfo = readProc('/proc/cpuinfo') ?? ''
  const models: string[] = cpuinfo.match(/^model name\s*:\s*(.+)$/gm) ?? []
  const kernel = (readProc('/proc/sys/kernel/osrelease') ?? 'unknown').trim()
  const nproc = Number(spawnSync('nproc', { encoding: 'utf8' }).stdout?.trim())
  return {
    nproc: Number.isFinite(nproc) && nproc > 0 ? nproc : Math.max(models.length, 1),
    cpuModel: models.length > 0 ? models[0].replace(/^model name\s*:\s*/, '') : 'unknown',
    kernel,
  }
}

/**
 * CPU seconds the whole machine has spent running processes, plus time stolen by the
 * hypervisor (all cores): with what the harness's own processes used subtracted, what is left
 * is other load on a shared machine, the usual reason two runs disagree. Interrupt time is
 * left out: loopback traffic is processed in softirq context and charged to no process, so
 * it would count the harness's own packets as someone else's load.
 */
export function machineBusySeconds (): number {
  const text = readProc('/proc/stat') ?? ''
  const fields = (text.split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number)
  const [user = 0, nice = 0, system = 0, , , , , steal = 0] = fields
  return (user + nice + system + steal) / CLOCK_TICKS
}
