/**
 * Every process the harness starts goes through here, so that every one of them is stopped by
 * its PID: at the end of a row, when a scenario overruns its deadline, on SIGINT/SIGTERM, and
 * on an uncaught error. Output of each child is always drained (a proxy that logs to a full
 * pipe would stall and the figures would be wrong) and the tail is kept for error messages.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import { processTree } from './proc-stats.js'

/** Cores for pinning: the proxy under test alone on one, origin and load generator on the other. */
export const PROXY_CORE = 0
export const CLIENT_CORE = 1

export const hasTaskset: boolean = (() => {
  const probe = spawnSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' })
  return probe.status === 0
})()

export interface Child {
  name: string
  pid: number
  process: ChildProcess
  stdout: string
  /** The last lines of stderr, for error messages. */
  stderrTail: string[]
  /** Resolves with the exit code (or the signal name) once the process is gone. */
  exited: Promise<number | string>
  alive: boolean
}

export interface SpawnOptions {
  /** Pin to this core when taskset exists. */
  core?: number
  /** Keep the whole stdout (load generator results); otherwise only stderr's tail is kept. */
  captureStdout?: boolean
  /** Raise the soft open-files limit first (idle-connection tests). */
  nofile?: number
  /** The environment (default: this process's). */
  env?: NodeJS.ProcessEnv
}

const TAIL_LINES = 40

/** Every group ever made, so that an exit or a signal can reach every child of the run. */
const groups = new Set<ProcessGroup>()

export function stopEverything (): Promise<void[]> {
  return Promise.all([...groups].map(async group => await group.stopAll()))
}

export function killEverythingSync (): void {
  for (const group of groups) group.killAllSync()
}

/** The children of one unit of work (a row of a scenario), stopped together when it ends. */
export class ProcessGroup {
  private readonly children = new Set<Child>()

  constructor () {
    groups.add(this)
  }

  spawn (name: string, command: string, args: string[], options: SpawnOptions = {}): Child {
    let argv = [command, ...args]
    if (options.core !== undefined && hasTaskset) argv = ['taskset', '-c', String(options.core), ...argv]
    // `exec` keeps the PID: the one we hold is the program's, not a wrapper's
    if (options.nofile !== undefined) argv = ['sh', '-c', `ulimit -n ${options.nofile} 2>/dev/null; exec "$@"`, 'sh', ...argv]
    const proc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env })
    if (proc.pid === undefined) throw new Error(`cannot start ${name} (${command})`)
    let resolveExit: (value: number | string) => void = () => {}
    const child: Child = {
      name,
      pid: proc.pid,
      process: proc,
      stdout: '',
      stderrTail: [],
      exited: new Promise(resolve => { resolveExit = resolve }),
      alive: true,
    }
    proc.stdout?.setEncoding('utf8').on('data', (text: string) => {
      if (options.captureStdout === true) child.stdout += text
    })
    proc.stderr?.setEncoding('utf8').on('data', (text: string) => {
      child.stderrTail.push(...text.split('\n').filter(line => line !== ''))
      if (child.stderrTail.length > TAIL_LINES) child.stderrTail.splice(0, child.stderrTail.length - TAIL_LINES)
    })
    proc.on('error', err => child.stderrTail.push(`spawn error: ${err.message}`))
    // 'close' comes after stdout is fully read; a grandchild holding the pipes must not stall it
    const finish = (code: number | null, signal: string | null): void => {
      child.alive = false
      this.children.delete(child)
      resolveExit(code ?? signal ?? 'unknown')
    }
    proc.on('exit', (code, signal) => { setTimeout(() => finish(code, signal), 1000).unref() })
    proc.on('close', finish)
    this.children.add(child)
    return child
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async stop (child: Child, graceMs = 2000): Promise<void> {
    if (!child.alive) return
    // nginx's workers are children of the PID we hold: a forced stop must reach them too
    const tree = processTree(child.pid)
    signal(child.pid, 'SIGTERM')
    const timer = setTimeout(() => { for (const pid of tree) signal(pid, 'SIGKILL') }, graceMs)
    await child.exited
    clearTimeout(timer)
  }

  async stopAll (): Promise<void> {
    await Promise.all([...this.children].map(async child => await this.stop(child)))
  }

  /** For process 'exit': no waiting is possible there, so straight to SIGKILL. */
  killAllSync (): void {
    for (const child of this.children) {
      for (const pid of processTree(child.pid)) signal(pid, 'SIGKILL')
    }
  }
}

function signal (pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name)
  } catch {
    // already gone
  }
}

/** Waits for a stderr line matching `pattern`; fails early if the process exits first. */
export async function waitForStderr (child: Child, pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  return await waitForOutput(child, 'stderr', pattern, timeoutMs)
}

/** Waits for output matching `pattern` on one of the child's streams. */
export async function waitForOutput (child: Child, stream: 'stdout' | 'stderr', pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  return await new Promise((resolve, reject) => {
    let buffered = ''
    const onData = (text: string): void => {
      buffered += text
      const match = pattern.exec(buffered)
      if (match !== null) done(null, match)
    }
    const onExit = (): void => done(new Error(`${child.name} exited before it was ready: ${child.stderrTail.slice(-5).join(' | ')}`))
    const timer = setTimeout(() => done(new Error(`${child.name} not ready after ${timeoutMs} ms: ${child.stderrTail.slice(-5).join(' | ')}`)), timeoutMs)
    const done = (err: Error | null, match?: RegExpMatchArray): void => {
      clearTimeout(timer)
      child.process[stream]?.off('data', onData)
      child.process.off('exit', onExit)
      if (err !== null) reject(err)
      else if (match !== undefined) resolve(match)
    }
    child.process[stream]?.on('data', onData)
    child.process.once('exit', onExit)
  })
}

/** Polls until something accepts connections on the port (nginx and HAProxy print nothing). */
export async function waitForPort (port: number, child: Child, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!child.alive) throw new Error(`${child.name} exited: ${child.stderrTail.slice(-5).join(' | ')}`)
    if (await canConnect(port)) return
    await sleep(50)
  }
  throw new Error(`${child.name} does not accept connections on ${port} after ${timeoutMs} ms`)
}

async function canConnect (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

/** A port that was free a moment ago, for programs that cannot report the one they picked. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** Runs a child to its end, killing it past `timeoutMs`; resolves with its stdout. */
export async function runToEnd (group: ProcessGroup, child: Child, timeoutMs: number): Promise<string> {
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    void group.stop(child, 500)
  }, timeoutMs)
  const code = await child.exited
  clearTimeout(timer)
  if (timedOut) throw new Error(`${child.name} killed after ${timeoutMs} ms`)
  if (code !== 0) throw new Error(`${child.name} exited with ${code}: ${child.stderrTail.slice(-5).join(' | ')}`)
  return child.stdout
}

export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}
