/**
 * The configuration examples of the README's Operations section load, and mean what the text
 * around them says.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { loadConfig } from '../../lib/config/load.js'
import type { Model } from '../../lib/model/model.js'
import { ROOT } from '../helpers/proxy.js'

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
const from = readme.indexOf('\n## Operations\n')
const to = readme.indexOf('\n## ', from + 1)
const section = readme.slice(from, to)
const blocks = [...section.matchAll(/```yaml\n([^]*?)```\n/g)].map(m => m[1])

/** What each example must resolve to, by the comment on its first line. */
const expected: Record<string, (model: Model, dir: string) => Array<[unknown, unknown]>> = {
  '# accessLog belongs to both forms': (model, dir) => [
    [model.accessLog, { file: path.join(dir, 'access.log'), format: 'combined', buffer: 4 * 1024 * 1024 }],
  ],
  '# admin: health, readiness, metrics, config, upstreams, drain': model => [[model.admin, { listen: { host: '127.0.0.1', port: 9901 }, token: 'a-token-from-the-file-0123' }]],
  '# acceptProxy and sendProxy': model => [
    [model.listeners[0].acceptProxy?.timeout, 5000],
    [model.listeners[0].acceptProxy?.from.length, 1],
    [model.upstreams.get('app')?.sendProxy, 'v2'],
  ],
  '# workers: processes serving one configuration': model => [[model.workers, 4], [model.workerScheduling, 'kernel']],
  '# drainTimeout: how long SIGTERM waits': model => [[model.drainTimeout, 30_000], [model.drainDelay, 2000], [model.accessLog, null]],
}

t.test('the Operations section has its examples', async t => {
  t.ok(from !== -1, 'README.md has ## Operations')
  t.same(blocks.map(block => block.split('\n')[0]).sort(), Object.keys(expected).sort(), 'one expectation per example')
})

for (const block of blocks) {
  const title = block.split('\n')[0]
  t.test(`README example "${title}" loads`, async t => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rp4-readme-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const file = path.join(dir, 'rp4.yaml')
    // the examples' files live under /var/log/rp4 and /etc/rp4: here, in a scratch folder
    writeFileSync(file, block.replaceAll('/var/log/rp4/', dir + '/').replaceAll('/etc/rp4/', dir + '/'))
    writeFileSync(path.join(dir, 'admin-token'), 'a-token-from-the-file-0123\n')
    const { model } = loadConfig(file)
    for (const [actual, wanted] of expected[title]?.(model, dir) ?? []) t.same(actual, wanted)
  })
}

const systemdAnalyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' })

t.test('the README\'s systemd unit passes systemd-analyze verify', { skip: systemdAnalyze.error === undefined && systemdAnalyze.status === 0 ? false : 'systemd-analyze is not installed' }, async t => {
  const unit = /```ini\n([^]*?)```/.exec(section)?.[1]
  if (unit === undefined) return t.fail('no ini block in the Operations section')
  t.match(unit, /\nExecReload=\/bin\/kill -HUP \$MAINPID\n/)
  t.match(unit, /\nLimitNOFILE=\d+\n/)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rp4-unit-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'rp4.service')
  // the command as installed here: node and the built entry (verify checks the program exists)
  writeFileSync(file, unit.replace('/usr/bin/rp4 ', `${process.execPath} ${path.join(ROOT, 'dist/bin/rp4.js')} `))
  const verified = spawnSync('systemd-analyze', ['verify', '--man=no', file], { encoding: 'utf8', timeout: 20_000 })
  t.equal(verified.status, 0)
  t.equal(verified.stderr, '', 'no unknown key, no value it ignores')
})
