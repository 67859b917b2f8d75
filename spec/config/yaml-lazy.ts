/**
 * The YAML library is loaded only when a configuration file is read or written (lib/config/yaml.ts):
 * a proxy made from flags or options, as `rp4 listen` makes it, never loads it. Checked in a
 * fresh Node process, where the CommonJS module cache tells what was loaded.
 */
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import t from 'tap'
import { probe } from '../helpers/probe.js'
import { checkBuilt, ROOT } from '../helpers/proxy.js'

const url = (relative: string): string => JSON.stringify(pathToFileURL(path.join(ROOT, relative)).href)

const PROBE = `
import { createRequire } from 'node:module'
const require = createRequire(${url('package.json')})
const loaded = () => Object.keys(require.cache).some(file => file.includes('/node_modules/yaml/'))
const { createProxy, loadConfig } = await import(${url('dist/lib/index.js')})
const { parseCommandLine, flagsToOptions, toYaml } = await import(${url('dist/lib/config/flags.js')})
const steps = { imported: loaded() }
const line = parseCommandLine(['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--compress'])
const options = flagsToOptions('127.0.0.1:0', line)
const proxy = createProxy(options)
await proxy.listen()
steps.listening = loaded()
await proxy.close()
const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs')
const { tmpdir } = await import('node:os')
const dir = mkdtempSync(tmpdir() + '/rp4-yaml-')
writeFileSync(dir + '/rp4.yaml', toYaml(options))
steps.written = loaded()
steps.readBack = JSON.stringify(loadConfig(dir + '/rp4.yaml').options).includes('127.0.0.1:1')
rmSync(dir, { recursive: true })
console.log(JSON.stringify(steps))
`

t.test('a proxy from flags never loads the YAML library; writing or reading a configuration does', async t => {
  if (!checkBuilt(t, 'dist/lib/index.js')) return
  const steps = await probe<Record<string, boolean>>(PROBE)
  t.equal(steps.imported, false, 'not loaded by importing the library')
  t.equal(steps.listening, false, 'not loaded by a proxy made from flags and listening')
  t.equal(steps.written, true, 'loaded to write the options as YAML')
  t.equal(steps.readBack, true, 'and reads it back')
})
