/**
 * CPU per KiB against compression ratio for each gzip level and brotli quality, on a 100 KiB
 * JSON body like the harness's compression scenario: the measurement the default levels of
 * `compress` are chosen by. Streams are driven the way the compress filter drives them (one
 * stream per response, written in 64 KiB pieces), and CPU is the process's own (user + system,
 * the thread pool included), so run it on a quiet machine.
 *
 *   node dist/perf/compress-levels.js [--responses N]
 */
import { constants, createBrotliCompress, createGzip, type BrotliCompress, type Gzip } from 'node:zlib'

const responses = Number(process.argv[process.argv.indexOf('--responses') + 1]) || 200
const body = Buffer.from(JSON.stringify(Array.from({ length: 1400 }, (_, i) => ({ id: i, name: `user ${i}`, email: `user${i}@example.com`, active: i % 3 === 0, score: (i * 7919) % 1000 }))))

async function run (make: () => Gzip | BrotliCompress): Promise<{ cpuPerKiB: number, ratio: number }> {
  let out = 0
  const start = process.cpuUsage()
  for (let i = 0; i < responses; i++) {
    const stream = make()
    stream.on('data', (chunk: Buffer) => { out += chunk.length })
    const done = new Promise(resolve => stream.once('end', resolve))
    for (let off = 0; off < body.length; off += 65536) stream.write(body.subarray(off, off + 65536))
    stream.end()
    await done
  }
  const used = process.cpuUsage(start)
  return { cpuPerKiB: (used.user + used.system) / (responses * body.length / 1024), ratio: body.length * responses / out }
}

console.log(`${(body.length / 1024).toFixed(0)} KiB JSON, ${responses} responses per level`)
console.log('coding   level  CPU µs/KiB  ratio')
for (let level = 1; level <= 9; level++) {
  const r = await run(() => createGzip({ level }))
  console.log(`gzip     ${String(level).padStart(5)}  ${r.cpuPerKiB.toFixed(2).padStart(10)}  ${r.ratio.toFixed(2).padStart(5)}`)
}
for (const quality of [0, 1, 2, 3, 4, 5, 6, 7, 9, 11]) {
  const r = await run(() => createBrotliCompress({ params: { [constants.BROTLI_PARAM_QUALITY]: quality, [constants.BROTLI_PARAM_SIZE_HINT]: body.length } }))
  console.log(`brotli   ${String(quality).padStart(5)}  ${r.cpuPerKiB.toFixed(2).padStart(10)}  ${r.ratio.toFixed(2).padStart(5)}`)
}
