/**
 * The web acceleration flags on the command line, run from the build: `--static DIR` alone (404
 * for what is missing) and with `--to` (missing files go to the backend), `--compress`, and
 * `--cache SIZE` with `--cache-dir DIR`, as the README's one-liners write them.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { gunzipSync } from 'node:zlib'
import t, { type Test } from 'tap'
import { exchange } from '../helpers/client.js'
import { ONE_PROCESS } from '../helpers/cli.js'
import { header } from '../helpers/framing.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { ROOT, checkBuilt } from '../helpers/proxy.js'
import { poll } from '../helpers/wait.js'

const CLI = path.join(ROOT, 'dist/bin/rp4.js')

/** The startup line's text after "listening on ADDRESS, ", of the last `listen` run. */
let said = ''

async function listen (t: Test, args: string[]): Promise<number> {
  const child: ChildProcess = spawn(process.execPath, [CLI, 'listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: ONE_PROCESS })
  let stderr = ''
  let exited = false
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  child.on('close', () => { exited = true })
  t.teardown(() => { if (!exited) child.kill('SIGKILL') })
  await poll(() => /listening on \S+:\d+/.test(stderr) || exited, 'the startup line', 15_000)
  const m = /listening on \S+:(\d+)(?:, ([^\n]*))?/.exec(stderr)
  if (m === null) throw new Error(`no startup line: ${stderr}`)
  said = m[2] ?? ''
  return Number(m[1])
}

function get (target: string, ...extra: string[]): string {
  return [`GET ${target} HTTP/1.1`, 'Host: h', ...extra].map(x => x + '\r\n').join('') + '\r\n'
}

t.test('--static DIR alone, and with --to: missing files go to the backend', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-cli-static-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'index.html'), '<p>home</p>')
  const alone = await listen(t, ['--static', dir])
  const home = (await exchange(alone, get('/'), { responses: 1 })).responses[0]
  t.equal(home.body.toString(), '<p>home</p>')
  t.equal(header(home, 'content-type'), 'text/html; charset=utf-8')
  t.equal((await exchange(alone, get('/api/x'), { responses: 1 })).responses[0].head.line[1], '404', 'no backend: 404')
  const origin = await startOrigin(t, req => ok(`backend ${req.url}`))
  const both = await listen(t, ['--static', dir, '--to', origin.target])
  t.equal((await exchange(both, get('/'), { responses: 1 })).responses[0].body.toString(), '<p>home</p>')
  t.equal((await exchange(both, get('/api/x'), { responses: 1 })).responses[0].body.toString(), 'backend /api/x')
})

t.test('the startup line says where files come from and where the rest goes; a --static directory that is not there is refused', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-cli-said-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const origin = await startOrigin(t, () => ok())
  await listen(t, ['--static', dir])
  t.equal(said, `serving files from ${dir}`)
  await listen(t, ['--static', dir, '--to', origin.target])
  t.equal(said, `serving files from ${dir}, forwarding to ${origin.target}`)
  await listen(t, ['--to', origin.target])
  t.equal(said, `forwarding to ${origin.target}`)
  const child = spawn(process.execPath, [CLI, 'listen', '127.0.0.1:0', '--static', './not-there', '--to', origin.target], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], env: ONE_PROCESS })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const [code] = await new Promise<[number | null]>(resolve => child.on('close', c => resolve([c])))
  t.equal(code, 2)
  t.equal(stderr, `rp4: --static: cannot read the directory "./not-there" (${path.join(dir, 'not-there')}): ENOENT\n`)
})

t.test('--compress and --cache SIZE --cache-dir DIR', async t => {
  if (!checkBuilt(t, 'dist/bin/rp4.js')) return
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-cli-cache-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const text = 'cached text '.repeat(200)
  const origin = await startOrigin(t, () => ok(text, ['Content-Type: text/plain', 'Cache-Control: max-age=60']))
  const port = await listen(t, ['--to', origin.target, '--compress', '--cache', '256MB', '--cache-dir', dir])
  const first = (await exchange(port, get('/t', 'Accept-Encoding: gzip'), { responses: 1 })).responses[0]
  t.equal(header(first, 'content-encoding'), 'gzip')
  t.equal(gunzipSync(first.body).toString(), text)
  const second = (await exchange(port, get('/t'), { responses: 1 })).responses[0]
  t.match(header(second, 'cache-status'), /^rp4; hit/)
  t.equal(second.body.toString(), text)
  t.equal(origin.requests.length, 1)
})
