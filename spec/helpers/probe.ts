/**
 * A module script run in a fresh Node process, for what only a new process can tell (which
 * modules loaded, how V8 compiled something): its stdout, one line of JSON, parsed.
 */
import { execFile } from 'node:child_process'
import { ROOT } from './proxy.js'

export function probe<T> (script: string, nodeFlags: readonly string[] = [], env: NodeJS.ProcessEnv = process.env): Promise<T> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [...nodeFlags, '--input-type=module', '-e', script], { cwd: ROOT, timeout: 30_000, env }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${err.message}\n${stderr}`))
      else resolve(JSON.parse(stdout) as T)
    })
  })
}
