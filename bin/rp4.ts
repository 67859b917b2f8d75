#!/usr/bin/env node
/**
 * The rp4 command's entry: serving commands run in a child Node started with a larger initial
 * heap, a capped young generation and malloc tuned not to give memory back on every free
 * (serving.ts says why, with the measurements), everything else in this process (cli.ts has the commands). RP4_NO_HEAP_FLAG=1,
 * or starting node with an --initial-heap-size of your own, keeps everything in this process.
 */
import { spawn } from 'node:child_process'
import { constants } from 'node:os'
import { fileURLToPath } from 'node:url'
import { HEAP_ARGS, HEAP_FLAG, servingEnv } from './serving.js'

const SERVING = new Set(['listen', 'run', 'demo'])

const command = process.argv[2] ?? ''
if (SERVING.has(command) && process.env.RP4_NO_HEAP_FLAG === undefined && !process.execArgv.some(arg => arg.startsWith(HEAP_FLAG))) {
  const child = spawn(process.execPath, [...HEAP_ARGS, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    // the IPC channel closes when this process dies, however it dies: the child follows (below)
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: servingEnv(process.env),
    // its own process group: a terminal's Ctrl-C reaches this process only, which passes it on once
    detached: true,
  })
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const) {
    process.on(signal, () => { child.kill(signal) })
  }
  // this process going away without a signal to pass on (the terminal closed) takes the child along
  process.on('exit', () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM') })
  child.on('exit', (code, signal) => {
    process.exit(code ?? (signal === null ? 1 : 128 + (constants.signals[signal] ?? 0)))
  })
  child.on('error', err => {
    process.stderr.write(`rp4: cannot start: ${err.message}\n`)
    process.exit(1)
  })
} else {
  if (process.channel !== undefined) {
    // started by the launcher above: it is gone (even by SIGKILL) when the channel closes
    process.channel.unref()
    process.on('disconnect', () => process.exit(1))
  }
  // not awaited: the entry module finishes evaluating, and the proxy runs from the CLI module alone
  import('./cli.js').catch((err: unknown) => {
    process.stderr.write(`rp4: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  })
}
