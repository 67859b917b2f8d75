/**
 * The CLI's log of health transitions (a file of its own: spec/e2e/cli.ts is near its time
 * budget on a loaded machine).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { ok, startOrigin } from '../helpers/origin.js'
import { ROOT, checkBuilt } from '../helpers/proxy.js'
import { Observable } from '../helpers/wait.js'
import { ONE_PROCESS } from '../helpers/cli.js'

const CLI = path.join(ROOT, 'dist/bin/rp4.js')

class Run extends Observable {
  stderr = ''
  exited = false
  readonly child

  constructor (args: string[]) {
    super()
    this.child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: ONE_PROCESS })
    this.child.stderr.on('data', (d: Buffer) => { this.stderr += d.toString(); this.changed() })
    this.child.on('exit', () => { this.exited = true; this.changed() })
  }
}

function run (t: Test, args: string[]): Run {
  const r = new Run(args)
  t.teardown(() => { if (!r.exited) r.child.kill('SIGKILL') })
  return r
}

t.test('health transitions are logged: a backend failing its checks, and back', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  let healthy = false
  const a = await startOrigin(t, req => req.url === '/healthz' ? (healthy ? ok('ok') : 'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n') : ok('A'))
  const b = await startOrigin(t, () => ok('B'))
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'health.yaml')
  writeFileSync(file, `listeners: [{ listen: "127.0.0.1:0" }]\nroutes: [{ proxy: app }]\nupstreams:\n  app:\n    targets: ["${a.target}", "${b.target}"]\n    healthCheck: { path: /healthz, interval: 100ms, rise: 1, fall: 1 }\n`)
  const r = run(t, ['run', file])
  await r.until(() => /listening on/.test(r.stderr), 20_000, 'the startup line')
  await r.until(() => r.stderr.includes('down ('), 10_000, 'the down line')
  t.match(r.stderr, `rp4: upstream app ${a.target}: down (check_failed: status 503)\n`)
  healthy = true
  await r.until(() => r.stderr.includes('up ('), 10_000, 'the up line')
  t.match(r.stderr, `rp4: upstream app ${a.target}: up (check_passed: status 200)\n`)
  r.child.kill('SIGTERM')
  await r.until(() => r.exited, 10_000, 'rp4 to exit')
})
