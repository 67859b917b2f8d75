/**
 * The README's reference tables are generated from the schema (npm run docs): this fails when the
 * README says something else, so that a flag, a default or a key cannot change without its row.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { SECTIONS, updateReadme } from '../../lib/config/docs.js'
import { CLI_FLAGS, argText, flagDefs } from '../../lib/config/flags.js'
import { ROOT } from '../helpers/proxy.js'

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')

t.test('README.md holds the tables the schema generates (run npm run docs after changing lib/config/schema.ts)', async t => {
  t.equal(updateReadme(readme), readme)
})

t.test('the flag table lists every flag, as --help does', async t => {
  const table = SECTIONS.flags()
  for (const def of flagDefs()) t.match(table, '`' + def.spec.name + argText(def.spec) + '`')
  for (const flag of CLI_FLAGS) t.match(table, '`' + flag.name + '`')
})

t.test('a README without the markers is refused, not silently left alone', async t => {
  t.throws(() => updateReadme('# rp4\n'), /markers of the flags table not found/)
})
