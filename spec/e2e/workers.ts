/**
 * Workers (bin/primary.ts, bin/worker.ts), run from the build as real processes: two workers
 * behind one port, each reached; a worker killed is started again while traffic goes on; a
 * worker that cannot start stops rp4 with its reason; a crash loop stops rp4 instead of
 * spinning; SIGHUP with a bad file keeps serving, a good one reaches every worker with no failed
 * request under load; SIGTERM drains every worker; the admin endpoint is the primary's, its
 * /metrics the sum of the workers'.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { exchange } from '../helpers/client.js'
import { run, type Run } from '../helpers/cli.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { checkBuilt } from '../helpers/proxy.js'
import { makeCertificates } from '../helpers/tls-certs.js'
import { resumesWith, sessionTicket } from '../helpers/tls-tickets.js'
import { poll, within } from '../helpers/wait.js'

/** The primary is the process the spec starts (no launcher child): its children are the workers. */
const ENV = { ...process.env, RP4_NO_HEAP_FLAG: '1' }
const linux = process.platform === 'linux'

function workerPids (primary: number): number[] {
  const pids: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      // pid (comm) state ppid ...: comm may hold spaces, so the fields after its last ')'
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === primary) pids.push(Number(name))
    } catch {}
  }
  return pids.sort((a, b) => a - b)
}

function adminPort (r: Run): number {
  const m = /admin endpoint on 127\.0\.0\.1:(\d+)/.exec(r.stderr)
  if (m === null) throw new Error(`no admin endpoint in: ${r.stderr}`)
  return Number(m[1])
}

async function get (port: number, request = 'GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'): Promise<string> {
  return (await exchange(port, request, { responses: 1 })).responses[0]?.raw.toString('latin1') ?? ''
}

function metric (text: string, line: string): number | null {
  const m = new RegExp(`^${line.replace(/[{}"=]/g, c => `\\${c}`)} (\\S+)$`, 'm').exec(text)
  return m === null ? null : Number(m[1])
}

t.test('the default scheduling: the workers accept on the shared socket and the kernel spreads connections', { skip: !linux && 'reads /proc' }, async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok('served'))
  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--workers', '2'], undefined, ENV)
  const { port } = await r.listening(20_000)
  t.match(r.stderr, /; 2 workers \(the kernel spreading connections\)/)
  t.equal(workerPids(r.child.pid!).length, 2, 'two worker processes')
  for (let i = 0; i < 10; i++) t.match(await get(port), /\r\n\r\nserved$/)
  t.equal(origin.requests.length, 10)
})

t.test('--workers 2: one port, both workers reached, /metrics summed over them with per-worker counts; no worker shows to clients', { skip: !linux && 'reads /proc' }, async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok('served'))
  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--workers', '2', '--worker-scheduling', 'round-robin', '--admin', '0'], undefined, ENV)
  const { port } = await r.listening(20_000)
  t.match(r.stderr, /; 2 workers \(round-robin\); admin endpoint on 127\.0\.0\.1:\d+\n/)
  t.equal(workerPids(r.child.pid!).length, 2, 'two worker processes')
  const admin = adminPort(r)
  const first = await get(port)
  t.match(first, /^HTTP\/1\.1 200 OK\r\n/)
  t.notMatch(first, /worker/i, 'nothing in the response names a worker')
  // a connection per request: round-robin hands them to the workers in turn
  for (let i = 1; i < 10; i++) t.match(await get(port), /\r\n\r\nserved$/)
  const text = await get(admin, 'GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')
  t.equal(metric(text, 'rp4_requests_total{route="default",method="GET",status="2xx"}'), 10, 'the requests of both workers, summed')
  const one = metric(text, 'rp4_worker_requests_total{worker="1"}') ?? 0
  const two = metric(text, 'rp4_worker_requests_total{worker="2"}') ?? 0
  t.equal(one + two, 10)
  t.ok(one > 0 && two > 0, `both workers served (${one} and ${two})`)
  t.equal(metric(text, 'rp4_workers{state="serving"}'), 2)
  t.match(text, /\nrp4_process_resident_memory_bytes\{worker="1"\} \d+\nrp4_process_resident_memory_bytes\{worker="2"\} \d+\n/, 'process metrics per worker')
  t.equal((text.match(/^# TYPE rp4_requests_total /gm) ?? []).length, 1, 'one family per name')
  t.match(await get(admin, 'GET /upstreams HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'), new RegExp(`"target": "${origin.target}"`))
  t.match(await get(admin, 'GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 200 /)
  // the admin's drain is the primary's: every worker drains, then rp4 exits
  t.match(await get(admin, 'POST /drain HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 202 /)
  await r.finished(20_000)
  t.equal(r.exit, 0)
  t.same(workerPids(r.child.pid!), [], 'no worker left behind')
})

t.test('a worker killed with SIGKILL is started again, and traffic goes on meanwhile', { skip: !linux && 'reads /proc' }, async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok('served'))
  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--workers', '2', '--worker-scheduling', 'round-robin', '--admin', '0'], undefined, ENV)
  const { port } = await r.listening(20_000)
  const admin = adminPort(r)
  const before = workerPids(r.child.pid!)
  t.equal(before.length, 2)
  process.kill(before[0], 'SIGKILL')
  await r.until(() => /rp4: worker \d ended with signal SIGKILL; starting it again in 100 ms\n/.test(r.stderr), 10_000, 'the restart line')
  t.match(await get(admin, 'GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 200 /, 'ready while the other worker serves')
  // the other worker serves meanwhile (round-robin skips a worker that is gone)
  for (let i = 0; i < 4; i++) t.match(await get(port), /\r\n\r\nserved$/)
  const serving = async (): Promise<string> => await get(admin, 'GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')
  let text = ''
  for (let i = 0; i < 100; i++) {
    text = await serving()
    if (metric(text, 'rp4_workers{state="serving"}') === 2) break
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  t.equal(metric(text, 'rp4_workers{state="serving"}'), 2, 'two workers serve again')
  t.equal(metric(text, 'rp4_worker_restarts_total'), 1)
  const after = workerPids(r.child.pid!)
  t.equal(after.length, 2)
  t.notOk(after.includes(before[0]), 'the killed one was replaced')
  for (let i = 0; i < 4; i++) t.match(await get(port), /\r\n\r\nserved$/)
  r.child.kill('SIGTERM')
  await r.finished(20_000)
  t.equal(r.exit, 0)
})

t.test('a worker that cannot start stops rp4 with its reason: an address in use (exit 1), a crash at every start', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const taken = net.createServer()
  await new Promise<void>(resolve => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => taken.close())
  const busy = (taken.address() as net.AddressInfo).port
  const inUse = await run(t, ['listen', `127.0.0.1:${busy}`, '--to', '127.0.0.1:1', '--workers', '2', '--worker-scheduling', 'round-robin'], undefined, ENV).finished(20_000)
  t.equal(inUse.exit, 1)
  t.match(inUse.stderr, new RegExp(`rp4: worker \\d could not start:\\nrp4: cannot listen on 127\\.0\\.0\\.1:${busy}: address already in use`))
  t.notMatch(inUse.stderr, /starting it again/, 'not restarted')

  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-workers-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // every worker process fails before rp4's code runs (the primary, without RP4_WORKER, does not)
  const crash = path.join(dir, 'crash.cjs')
  writeFileSync(crash, 'if (process.env.RP4_WORKER !== undefined) { process.stderr.write("boom: worker cannot start\\n"); process.exit(3) }\n')
  const started = Date.now()
  const crashing = await run(t, ['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--workers', '2', '--worker-scheduling', 'round-robin'], undefined, { ...ENV, NODE_OPTIONS: `--require ${crash}` }).finished(20_000)
  t.equal(crashing.exit, 1)
  t.match(crashing.stderr, /boom: worker cannot start\n/)
  t.match(crashing.stderr, /rp4: worker \d died before it was serving \(exit code 3\)\n/)
  t.ok(Date.now() - started < 20_000, 'within bounded time')
})

t.test('workers dying 5 times within 30s: a crash loop stops rp4 (exit 1) naming the last death, rather than restarting forever', { skip: !linux && 'reads /proc' }, async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok('served'))
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-workers-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const marker = path.join(dir, 'crash-now')
  const crash = path.join(dir, 'crash.cjs')
  // workers start fine until the marker exists; from then on each new one dies at once
  writeFileSync(crash, `if (process.env.RP4_WORKER !== undefined && require('node:fs').existsSync(${JSON.stringify(marker)})) { process.stderr.write("boom\\n"); process.exit(3) }\n`)
  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--workers', '2', '--worker-scheduling', 'round-robin'], undefined, { ...ENV, NODE_OPTIONS: `--require ${crash}` })
  const { port } = await r.listening(20_000)
  t.match(await get(port), /\r\n\r\nserved$/)
  writeFileSync(marker, '')
  const started = Date.now()
  process.kill(workerPids(r.child.pid!)[0], 'SIGKILL')
  await r.finished(20_000)
  t.equal(r.exit, 1)
  t.match(r.stderr, /starting it again in 100 ms\n[^]*starting it again in 200 ms\n[^]*starting it again in 400 ms\n[^]*starting it again in 800 ms\n/, 'backoff doubling')
  t.match(r.stderr, /rp4: workers died 5 times within 30s, stopping rather than restarting them in a loop; the last, worker \d, ended with exit code 3\n/)
  t.ok(Date.now() - started < 15_000, 'within bounded time')
})

t.test('rp4 run FILE with workers: 2: SIGHUP with a bad file keeps serving; good reloads (SIGHUP, rp4 reload) reach every worker with no failed request under load; SIGTERM drains every worker', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, request => request.url === '/slow' ? { bytes: ok('slow'), delay: 1500 } : ok('origin'))
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-workers-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'rp4.yaml')
  const config = (body: string): string => `workers: 2\nlisteners:\n  - listen: 127.0.0.1:0\nroutes:\n  - match: { pathExact: /v }\n    respond: { body: ${body} }\n  - proxy: web\nupstreams:\n  web: { targets: ["${origin.target}"] }\nadmin:\n  listen: 0\ndrainTimeout: 5s\n`
  writeFileSync(file, config('one'))
  const r = run(t, ['run', file], undefined, ENV)
  const { port } = await r.listening(20_000)
  const admin = adminPort(r)
  const version = async (): Promise<string> => (await get(port, 'GET /v HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n')).split('\r\n\r\n')[1] ?? ''
  for (let i = 0; i < 4; i++) t.equal(await version(), 'one')

  writeFileSync(file, config('two').replace('proxy: web', 'proxy: nowhere'))
  r.child.kill('SIGHUP')
  await r.until(() => /not reloaded[^]*proxy/.test(r.stderr), 10_000, 'the refusal and its problem')
  t.match(r.stderr, new RegExp(`rp4: ${file} not reloaded, the running configuration stays:\\nrp4: {3}${file}:7:12: routes\\[1\\]\\.proxy`))
  for (let i = 0; i < 4; i++) t.equal(await version(), 'one', 'both workers keep the running configuration')

  // load from four clients, a connection per request, while the file changes and SIGHUP comes, three times
  let failures = 0
  let answered = 0
  let loading = true
  const load = Promise.all([0, 1, 2, 3].map(async () => {
    for (let n = 0; loading && n < 5000; n++) {
      const got = await exchange(port, 'GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n', { responses: 1 }).catch(() => null)
      if (got?.responses[0]?.raw.toString('latin1').startsWith('HTTP/1.1 200 OK\r\n') === true) answered++
      else failures++
    }
  }))
  for (let i = 3; i <= 5; i++) {
    // each reload with requests under way before it
    const mark = answered
    await poll(() => answered >= mark + 20 || failures > 0, 'requests answered before the reload', 15_000)
    writeFileSync(file, config(`v${i}`))
    r.child.kill('SIGHUP')
    await r.until(() => r.stderr.includes(`rp4: ${file} reloaded`) && (r.stderr.match(/ reloaded\n/g) ?? []).length >= i - 2, 15_000, `reload ${i}`)
  }
  loading = false
  await load
  t.equal(failures, 0, `no failed request across three reloads (${answered} answered)`)
  t.ok(answered > 0)
  for (let i = 0; i < 4; i++) t.equal(await version(), 'v5', 'every worker serves the new file')

  writeFileSync(file, config('six'))
  const reload = await run(t, ['reload', String(admin)]).finished()
  t.same([reload.exit, reload.stdout], [0, 'reloaded\n'], 'rp4 reload PORT: through the primary\'s admin endpoint')
  for (let i = 0; i < 4; i++) t.equal(await version(), 'six')

  // a slow request in flight at one worker: SIGTERM lets it finish
  const slow = exchange(port, 'GET /slow HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  await origin.until(() => origin.requests.some(q => q.url === '/slow'), 5000, 'the slow request at the origin')
  r.child.kill('SIGTERM')
  const answer = await slow
  t.match(answer.responses[0]?.raw.toString('latin1'), /^HTTP\/1\.1 200 OK\r\n[^]*\r\nConnection: close\r\n/, 'answered, with Connection: close')
  t.equal(answer.responses[0]?.body.toString(), 'slow', 'the request in flight finished')
  await r.finished(20_000)
  t.equal(r.exit, 0)
  t.match(r.stderr, /rp4: SIGTERM: draining 2 workers: not accepting, waiting up to 5s for requests in flight/)
})

t.test('TLS with workers: a session ticket from one worker resumes at the other (the primary\'s keys)', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, () => ok('served'))
  const certs = await makeCertificates(t)
  const pair = await certs.issue('site', ['a.test'])
  const ca = readFileSync(certs.ca.cert)
  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--workers', '2', '--worker-scheduling', 'round-robin', '--cert', pair.cert, '--key', pair.key], undefined, ENV)
  const { port } = await r.listening(20_000)
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    const ticket = await sessionTicket(port, ca, maxVersion)
    // round-robin: of four connections in a row, two reach the worker that did not issue the ticket
    const reused: boolean[] = []
    for (let i = 0; i < 4; i++) reused.push(await resumesWith(port, ca, ticket, maxVersion))
    t.same(reused, [true, true, true, true], `${maxVersion}: resumed whichever worker accepted`)
  }
  r.child.kill('SIGTERM')
  await r.finished(20_000)
  t.equal(r.exit, 0)
})

t.test('workers share one access log file (whole lines from both), reopened on SIGUSR1; a second SIGTERM exits at once (130)', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const origin = await startOrigin(t, request => request.url === '/hang' ? { bytes: ok('late'), delay: 30_000 } : ok('served'))
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-workers-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'access.log')
  const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target, '--workers', '2', '--worker-scheduling', 'round-robin', '--admin', '0', '--access-log', file, '--log-format', 'json'], undefined, ENV)
  const { port } = await r.listening(20_000)
  const admin = adminPort(r)
  const read = (name: string): string => { try { return readFileSync(name, 'utf8') } catch { return '' } }
  for (let i = 0; i < 10; i++) await get(port, `GET /before-${i} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`)
  await poll(() => read(file).split('\n').filter(l => l.includes('/before-')).length === 10, 'ten lines in the file', 10_000)
  for (const line of read(file).trim().split("\n")) t.doesNotThrow(() => JSON.parse(line), "each line whole")
  const text = await get(admin, 'GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')
  t.ok((metric(text, 'rp4_worker_requests_total{worker="1"}') ?? 0) > 0 && (metric(text, 'rp4_worker_requests_total{worker="2"}') ?? 0) > 0, 'both workers wrote to it')
  renameSync(file, file + '.1')
  r.child.kill('SIGUSR1')
  await poll(() => existsSync(file), 'SIGUSR1 to make the workers open the file again', 10_000)
  // every worker opened it again: requests on fresh connections reach both
  for (let i = 0; i < 10; i++) await get(port, `GET /after-${i} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`)
  await poll(() => read(file).split('\n').filter(l => l.includes('/after-')).length === 10, 'ten lines in the new file', 10_000)
  t.notMatch(read(file + '.1'), /\/after-/, 'none in the moved file')

  const hung = exchange(port, 'GET /hang HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 }).catch(() => null)
  await origin.until(() => origin.requests.some(q => q.url === '/hang'), 5000, 'the hanging request at the origin')
  r.child.kill('SIGTERM')
  await r.until(() => r.stderr.includes('draining 2 workers'), 5000, 'the drain to begin')
  r.child.kill('SIGTERM')
  await r.finished(5000)
  t.equal(r.exit, 130, 'the second signal: exit 130 without waiting the 10s drain')
  await hung
})
