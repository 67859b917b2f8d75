/**
 * Where the serving process's memory at rest comes from: RSS (anonymous and file-backed) of this
 * process after each step of what `rp4 listen` does, from a bare Node to a listening proxy. Run
 * with the serving process's flags and environment, as the harness's rows are:
 *
 *   GLIBC_TUNABLES=glibc.malloc.arena_max=1 node --initial-heap-size=128 --max-semi-space-size=8 dist/perf/memory-steps.js
 *
 * File-backed memory is mostly the pages of the node binary touched so far (its code, V8's
 * compilers among it); anonymous memory is the heaps (V8's, malloc's) and WebAssembly's.
 */
import { readFileSync } from 'node:fs'

function reading (label: string): void {
  const status = readFileSync('/proc/self/status', 'utf8')
  const field = (name: string): string => (Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024).toFixed(1)
  console.log(`${label.padEnd(44)} RSS ${field('VmRSS').padStart(6)} MiB   anonymous ${field('RssAnon').padStart(6)}   file ${field('RssFile').padStart(6)}`)
}

reading('bare node')
await import('node:net')
await import('node:tls')
await import('node:crypto')
await import('node:zlib')
reading('+ net, tls, crypto, zlib')
await import('../lib/http1/llhttp.js')
reading('+ llhttp (its WebAssembly compiled)')
await import('../lib/config/typebox.js')
reading('+ the configuration schema\'s TypeBox')
const lib = await import('../lib/index.js')
reading('+ the rest of rp4\'s modules')
const proxy = lib.createProxy({ listen: '127.0.0.1:0', targets: ['127.0.0.1:9'] })
reading('+ a proxy made')
await proxy.listen()
reading('+ listening')
await proxy.close()
