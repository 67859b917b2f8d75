/**
 * The rows of every table: what the load generator talks to. "direct" is the origin itself
 * (the ceiling); the others are proxies in front of it, each started fresh per scenario so
 * that peak RSS belongs to that scenario, pinned to the proxy core.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { haproxyConfig, nginxConfig, nginxStreamModule, rp4ModeArgs, staticFiles, type ProxyMode } from './configs.js'
import { SCENARIOS } from './scenarios.js'
import { HEAP_ARGS, rp4Env } from '../bin/serving.js'
import { PROXY_CORE, freePort, waitForPort, waitForStderr, type Child, type ProcessGroup } from './processes.js'

export type RowName = 'direct' | 'rp4' | 'node' | 'nginx' | 'haproxy'
export const PROXY_ROWS: readonly RowName[] = ['rp4', 'node', 'nginx', 'haproxy']

export const RP4_PATH = fileURLToPath(new URL('../bin/rp4.js', import.meta.url))
const NODE_FLOOR_PATH = fileURLToPath(new URL('./node-floor.js', import.meta.url))

export interface Tool {
  /** Command to run, or null when absent. */
  command: string | null
  version: string
  /** Why the tool cannot be used, when it cannot. */
  missing?: string
}

export interface Tools {
  rp4: Tool & { tcp: boolean, flags: string }
  nginx: Tool & { stream: boolean }
  haproxy: Tool
  wrk: Tool
}

/** Runs `command args` and returns its combined output, or null when it cannot be run. */
function probe (command: string, args: string[]): string | null {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 })
  if (result.error !== undefined) return null
  return `${result.stdout ?? ''}${result.stderr ?? ''}`
}

function findCommand (name: string, versionArgs: string[]): Tool {
  for (const command of [name, `/usr/sbin/${name}`, `/usr/local/sbin/${name}`]) {
    const output = probe(command, versionArgs)
    if (output !== null) return { command, version: output.split('\n')[0].trim() }
  }
  return { command: null, version: '', missing: `${name} is not installed (apt-get install ${name})` }
}

export function detectTools (): Tools {
  let rp4: Tools['rp4'] = { command: null, version: '', tcp: false, flags: '', missing: `${RP4_PATH} does not exist (build it: npx tsc -p tsconfig.json)` }
  if (existsSync(RP4_PATH)) {
    const help = probe(process.execPath, [RP4_PATH, '--help']) ?? ''
    const version = (probe(process.execPath, [RP4_PATH, '--version']) ?? '').trim().split('\n')[0]
    rp4 = /listen/.test(help)
      ? { command: RP4_PATH, version, tcp: help.includes('--tcp'), flags: help }
      : { ...rp4, missing: `rp4 --help does not work: ${help.slice(0, 200)}` }
  }
  const nginx = findCommand('nginx', ['-v'])
  return {
    rp4,
    nginx: { ...nginx, version: nginx.version.replace(/^nginx version:\s*/, ''), stream: nginxStreamModule() !== null },
    haproxy: findCommand('haproxy', ['-v']),
    wrk: findCommand('wrk', ['-v']),
  }
}

/** Why a row cannot run in a mode, or null when it can. */
export function rowUnavailable (row: RowName, mode: ProxyMode, tools: Tools): string | null {
  switch (row) {
    case 'direct':
      return null
    case 'rp4':
      if (tools.rp4.missing !== undefined) return tools.rp4.missing
      return mode === 'tcp' && !tools.rp4.tcp ? 'rp4 --help lists no --tcp flag yet' : null
    case 'nginx':
      if (tools.nginx.missing !== undefined) return tools.nginx.missing
      if (mode === 'compress-br') return 'nginx has no brotli without a third-party module'
      return mode === 'tcp' && !tools.nginx.stream ? 'nginx stream module absent (apt-get install libnginx-mod-stream)' : null
    case 'node':
      return mode === 'compress' || mode === 'compress-br' ? 'no Node floor for compression: the zlib work is the same in any Node process' : null
    case 'haproxy':
      if (mode !== 'http' && mode !== 'tcp') return `HAProxy has no ${mode} to compare in this harness`
      return tools.haproxy.missing ?? null
  }
}

/** The node row's arguments for a mode (node-floor.ts). */
function nodeFloorArgs (mode: ProxyMode, originPort: number): string[] {
  switch (mode) {
    case 'static': return ['files', staticFiles()]
    case 'cache': return ['fetched', String(originPort), ...SCENARIOS.filter(s => s.mode === 'cache').map(s => s.load.path)]
    default: return ['relay', String(originPort)]
  }
}

export interface RunningRow {
  name: RowName
  port: number
  /** The proxy's PID (measured through /proc), or null for the direct row. */
  pid: number | null
  /** The proxy's process, where the harness started one (its output can be waited on). */
  child?: Child
  stop: () => Promise<void>
}

export interface RowStart {
  mode: ProxyMode
  originPort: number
  group: ProcessGroup
  tools: Tools
  /** Extra rp4 flags from --rp4-args. */
  rp4Args: string[]
  /** Open-files limit for the proxy (idle-connection test). */
  nofile?: number
  /** Node flags for rp4's process after the heap flags (idle-connection test: the inspector). */
  nodeArgs?: string[]
}

export async function startRow (name: RowName, start: RowStart): Promise<RunningRow> {
  const { group, originPort, mode } = start
  if (name === 'direct') return { name, port: originPort, pid: null, stop: async () => {} }
  const spawnOptions = { core: PROXY_CORE, nofile: start.nofile }

  if (name === 'rp4') {
    // the heap flag and environment rp4's launcher would give its child process (bin/serving.ts),
    // given here so that the process measured is the one serving
    const args = [...HEAP_ARGS, ...(start.nodeArgs ?? []), RP4_PATH, 'listen', '127.0.0.1:0', '--to', `127.0.0.1:${originPort}`, ...start.rp4Args, ...rp4ModeArgs(mode)]
    const child = group.spawn('rp4', process.execPath, args, { ...spawnOptions, env: rp4Env() })
    // rp4's own line: an inspector's ("Debugger listening on ws://...") may come first
    const match = await ready(group, child, waitForStderr(child, /^rp4 .*?listening on (\S+):(\d+)/m, 10_000))
    return { name, port: Number(match[2]), pid: child.pid, child, stop: async () => await group.stop(child) }
  }

  if (name === 'node') {
    const child = group.spawn('node', process.execPath, [NODE_FLOOR_PATH, ...nodeFloorArgs(mode, originPort)], spawnOptions)
    const match = await ready(group, child, waitForStderr(child, /listening on (\S+):(\d+)/, 10_000))
    return { name, port: Number(match[2]), pid: child.pid, stop: async () => await group.stop(child) }
  }

  const dir = mkdtempSync(join(tmpdir(), `rp4-perf-${name}-`))
  const port = await freePort()
  const input = { dir, port, originPort, mode }
  let child: Child
  if (name === 'nginx') {
    const file = join(dir, 'nginx.conf')
    writeFileSync(file, nginxConfig(input))
    child = group.spawn('nginx', start.tools.nginx.command ?? 'nginx', ['-c', file, '-p', dir, '-e', join(dir, 'error.log')], spawnOptions)
  } else {
    const file = join(dir, 'haproxy.cfg')
    writeFileSync(file, haproxyConfig(input))
    // -db: foreground, no master process; the PID we hold is the one doing the work
    child = group.spawn('haproxy', start.tools.haproxy.command ?? 'haproxy', ['-db', '-f', file], spawnOptions)
  }
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true })
  try {
    await ready(group, child, waitForPort(port, child, 10_000))
  } catch (err) {
    cleanup()
    throw err
  }
  return {
    name,
    port,
    pid: child.pid,
    stop: async () => {
      await group.stop(child)
      cleanup()
    },
  }
}

/** A proxy that fails to come up is stopped before the error goes on. */
async function ready<T> (group: ProcessGroup, child: Child, waiting: Promise<T>): Promise<T> {
  try {
    return await waiting
  } catch (err) {
    await group.stop(child)
    throw err
  }
}
