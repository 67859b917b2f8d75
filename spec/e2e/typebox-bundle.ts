/**
 * TypeBox comes bundled (bin/bundle.mjs writes dist/lib/config/typebox.js with TypeBox inside): a
 * serving process and its workers load that one file, none of TypeBox's own modules. A build that
 * skipped the bundling step, or an import of TypeBox that goes around lib/config/typebox.ts, fails
 * here.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { exchange } from '../helpers/client.js'
import { ONE_PROCESS, run } from '../helpers/cli.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { ROOT, checkBuilt } from '../helpers/proxy.js'

const HOOK = path.join(ROOT, 'spec/helpers/log-modules.mjs')

function modulesLoaded (t: Test): { file: string, read: () => string[] } {
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-bundle-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'modules')
  return { file, read: () => readFileSync(file, 'utf8').split('\n').filter(line => line !== '') }
}

for (const workers of ['1', '2']) {
  t.test(`rp4 listen with ${workers === '1' ? 'one process' : 'two workers'}: TypeBox loaded as one file, none of its modules`, async t => {
    if (!checkBuilt(t, 'dist/bin/rp4.js')) return
    const origin = await startOrigin(t, () => ok('bundled'))
    const log = modulesLoaded(t)
    const env = { ...ONE_PROCESS, RP4_WORKERS: workers, NODE_OPTIONS: `--import ${HOOK}`, RP4_MODULE_LOG: log.file }
    const r = run(t, ['listen', '127.0.0.1:0', '--to', origin.target], undefined, env)
    const { port } = await r.listening(20_000)
    const { responses } = await exchange(port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')
    t.equal(responses[0]?.head.line[1], '200')
    t.equal(responses[0]?.body.toString(), 'bundled')
    r.child.kill('SIGTERM')
    await r.finished(20_000)

    const urls = log.read()
    const bin = new URL('dist/bin/', `file://${ROOT}/`).href
    // the log saw the processes: the command's entry, and the worker entry when there are workers
    t.ok(urls.includes(`${bin}rp4.js`), 'the entry is in the log')
    if (workers === '2') t.ok(urls.includes(`${bin}worker.js`), 'the worker entry is in the log')
    t.ok(urls.includes(new URL('dist/lib/config/typebox.js', `file://${ROOT}/`).href), 'the bundle is loaded')
    t.same(urls.filter(url => url.includes('/node_modules/@sinclair/typebox/')), [], 'none of TypeBox\'s own modules')
  })
}
