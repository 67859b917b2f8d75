/**
 * Given to node with `--import` (NODE_OPTIONS works, and reaches the processes rp4 starts): every
 * ES module the process loads is appended, as a URL, to the file RP4_MODULE_LOG names.
 */
import { register } from 'node:module'

register('data:text/javascript,' + encodeURIComponent(`
import { appendFileSync } from 'node:fs'
export async function load (url, context, next) {
  appendFileSync(process.env.RP4_MODULE_LOG, url + '\\n')
  return next(url, context)
}
`))
