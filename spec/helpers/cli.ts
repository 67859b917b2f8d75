/**
 * The rp4 command run from the build as a child process, its output collected and its exit
 * awaited: what the CLI specs drive.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import type { Test } from 'tap'
import { ROOT } from './proxy.js'
import { Observable } from './wait.js'

export const CLI = path.join(ROOT, 'dist/bin/rp4.js')
export const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version

/** The environment of the specs' rp4: workers: auto means one process (as on a one-core machine). */
export const ONE_PROCESS: NodeJS.ProcessEnv = { ...process.env, RP4_WORKERS: process.env.RP4_WORKERS ?? '1' }

export class Run extends Observable {
  readonly child: ChildProcess
  stdout = ''
  stderr = ''
  exit: number | null = null
  signal: NodeJS.Signals | null = null
  done = false

  /**
   * @param openFiles run under this open-file limit (`ulimit -n`, soft and hard)
   * @param env one process unless it says otherwise (RP4_WORKERS, the default of `workers`):
   *   the specs of workers (e2e/workers.ts) ask for them
   */
  constructor (args: string[], openFiles?: number, env: NodeJS.ProcessEnv = ONE_PROCESS) {
    super()
    this.child = openFiles === undefined
      ? spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env })
      : spawn('/bin/sh', ['-c', `ulimit -n ${openFiles} && exec "$0" "$@"`, process.execPath, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env })
    this.child.stdout!.on('data', (d: Buffer) => { this.stdout += d.toString(); this.changed() })
    this.child.stderr!.on('data', (d: Buffer) => { this.stderr += d.toString(); this.changed() })
    this.child.on('close', (code, signal) => {
      this.exit = code
      this.signal = signal
      this.done = true
      this.changed()
    })
  }

  async finished (ms = 10_000): Promise<this> {
    await this.until(() => this.done, ms, `rp4 ${this.child.spawnargs.slice(2).join(' ')} to exit`)
    return this
  }

  /** The address from the startup line. */
  async listening (ms = 10_000): Promise<{ host: string, port: number }> {
    await this.until(() => /listening on (\S+):(\d+)/.test(this.stderr) || this.done, ms, 'the startup line')
    const m = /listening on (\S+):(\d+)/.exec(this.stderr)
    if (m === null) throw new Error(`no startup line; exit ${this.exit}, stderr: ${this.stderr}`)
    return { host: m[1], port: Number(m[2]) }
  }
}

export function run (t: Test, args: string[], openFiles?: number, env?: NodeJS.ProcessEnv): Run {
  const r = new Run(args, openFiles, env)
  t.teardown(() => { if (!r.done) r.child.kill('SIGKILL') })
  return r
}
