/**
 * The YAML library, loaded the first time a configuration file is read or written. `rp4 listen`
 * with flags never needs it, and loading it cost every serving process (and each worker) 72
 * modules and 35–60 ms of its start. It is a CommonJS package, so it loads synchronously where
 * it is first needed and the callers stay synchronous.
 */
import { createRequire } from 'node:module'
import type * as Yaml from 'yaml'

const require = createRequire(import.meta.url)
let loaded: typeof Yaml | null = null

export function yaml (): typeof Yaml {
  return (loaded ??= require('yaml') as typeof Yaml)
}
