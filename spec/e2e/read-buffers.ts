/**
 * Backend reads into reused buffers (core/read-buffers.ts, core/loan.ts): a large body read into
 * a connection's own buffer is written to the client from that buffer, and the buffer is read
 * into again only when nothing kept a view of it. Checked byte for byte where it could go wrong:
 * many large downloads at once, slow clients whose sockets queue what they are given, and a
 * filter that keeps every piece of the body it sees.
 */
import t from 'tap'
import net from 'node:net'
import { createHash } from 'node:crypto'
import { randomBody, randomInt, sha256 } from '../helpers/bodies.js'
import { startOrigin, type OriginRequest } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import { poll } from '../helpers/wait.js'
import { ownBufferCounts } from '../../lib/core/read-buffers.js'
import type { Filter } from '../../lib/index.js'

const MB = 1 << 20

/** /big/<size>: that many random bytes, their SHA-256 in X-Sha256. */
function big (req: OriginRequest): Buffer {
  const body = randomBody(Number(req.url.split('/')[2]))
  return Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nX-Sha256: ${sha256(body)}\r\nContent-Length: ${body.length}\r\n\r\n`), body])
}

interface Download { status: number, declared: string, length: number, hash: string }

/**
 * GET each of `paths` in turn on one keep-alive connection. A slow client stops reading at the
 * start of each body over 5 MiB until the proxy had to keep a read buffer (its socket to this client queued
 * what it was given), or 3 s passed, then reads on.
 */
async function downloads (port: number, paths: string[], slow: boolean): Promise<Download[]> {
  const socket = net.connect(port, '127.0.0.1')
  const results: Download[] = []
  let pending: Buffer = Buffer.alloc(0)
  let head: { status: number, declared: string, left: number, length: number, hash: ReturnType<typeof createHash>, waited: boolean } | null = null
  let next = 0
  return await new Promise<Download[]>((resolve, reject) => {
    const ask = (): void => { socket.write(`GET ${paths[next++]} HTTP/1.1\r\nHost: h\r\n\r\n`) }
    socket.on('connect', ask)
    socket.on('error', reject)
    socket.on('close', () => reject(new Error(`closed after ${results.length} of ${paths.length} downloads`)))
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      while (pending.length > 0) {
        if (head === null) {
          const end = pending.indexOf('\r\n\r\n')
          if (end < 0) break
          const text = pending.subarray(0, end).toString('latin1')
          const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text)?.[1] ?? 'NaN')
          head = { status: Number(text.slice(9, 12)), declared: /\r\nx-sha256: *(\w+)/i.exec(text)?.[1] ?? '', left: length, length: 0, hash: createHash('sha256'), waited: false }
          pending = pending.subarray(end + 4)
        }
        if (slow && !head.waited && head.left > 5 * MB) break
        const take = Math.min(head.left, pending.length)
        head.hash.update(pending.subarray(0, take))
        head.left -= take
        head.length += take
        pending = pending.subarray(take)
        if (head.left > 0) break
        results.push({ status: head.status, declared: head.declared, length: head.length, hash: head.hash.digest('hex') })
        head = null
        if (results.length === paths.length) {
          socket.removeAllListeners('close')
          socket.destroy()
          resolve(results)
          return
        }
        ask()
      }
      if (slow && head !== null && head.length === 0 && !head.waited && head.left > 5 * MB) {
        head.waited = true
        socket.pause()
        const before = ownBufferCounts().abandoned
        poll(() => ownBufferCounts().abandoned > before, 'a kept read buffer', 3000).catch(() => {}).finally(() => socket.resume())
      }
    })
  })
}

t.test('large downloads on six connections at once, two of them slow: every byte, through buffers read into again', async t => {
  const origin = await startOrigin(t, big)
  const { proxy, port } = await startProxy(t, { targets: [origin.target] })
  // a slow client's body outgrows what the kernel buffers on the way (about 4 MiB on loopback)
  const plans = Array.from({ length: 6 }, (_, i) => ({
    slow: i < 2,
    paths: i < 2 ? [`/big/${randomInt(7 * MB, 9 * MB)}`, `/big/${randomInt(MB, 2 * MB)}`] : Array.from({ length: 3 }, () => `/big/${randomInt(MB, 3 * MB)}`),
  }))
  const results = await Promise.all(plans.map(async plan => await downloads(port, plan.paths, plan.slow)))
  for (const [i, plan] of plans.entries()) {
    for (const [j, path] of plan.paths.entries()) {
      const got = results[i][j]
      t.equal(got.status, 200, `${plan.slow ? 'slow' : 'fast'} client ${i}, ${path}: 200`)
      t.equal(got.length, Number(path.split('/')[2]), `client ${i}, ${path}: whole length`)
      t.equal(got.hash, got.declared, `client ${i}, ${path}: the backend's bytes`)
    }
  }
  const counts = ownBufferCounts()
  t.ok(counts.taken > 0, `own buffers were read into (${JSON.stringify(counts)})`)
  t.ok(counts.abandoned > 0, 'and some were kept by a slow client\'s socket (left to the collector, reads went back to copies)')
  t.same(proxy.stats().errors, {}, 'no error in rp4')
})

t.test('a filter that keeps every piece of the body it sees: what it kept is the backend\'s body', async t => {
  const origin = await startOrigin(t, big)
  const kept = new Map<object, Buffer[]>()
  const hashes: string[] = []
  const keeper: Filter = {
    name: 'keeper',
    onResponseBody (session, chunk) {
      // kept as given: no copy
      const pieces = kept.get(session) ?? []
      pieces.push(chunk)
      kept.set(session, pieces)
      return chunk
    },
    onResponseEnd (session) {
      hashes.push(sha256(Buffer.concat(kept.get(session) ?? [])))
      kept.delete(session)
      return null
    },
  }
  const { port } = await startProxy(t, { targets: [origin.target], filters: [keeper] })
  const plans = Array.from({ length: 4 }, () => Array.from({ length: 2 }, () => `/big/${randomInt(MB, 2 * MB)}`))
  const results = (await Promise.all(plans.map(async paths => await downloads(port, paths, false)))).flat()
  for (const got of results) t.equal(got.hash, got.declared, 'the client got the backend\'s bytes')
  t.equal(hashes.length, results.length, 'the filter saw every response end')
  t.same([...hashes].sort(), results.map(r => r.declared).sort(), 'what the filter kept is, for every response, the backend\'s body')
})

t.test('own buffers are all accounted for once the connections are gone', async t => {
  const origin = await startOrigin(t, big)
  const { proxy, port } = await startProxy(t, { targets: [origin.target] })
  await Promise.all([0, 1, 2].map(async () => await downloads(port, [`/big/${2 * MB}`, `/big/${2 * MB}`], false)))
  await proxy.close()
  // the backend connections closed with the proxy: each own buffer went back to the free list or left the pool
  await new Promise(resolve => setImmediate(resolve))
  const counts = ownBufferCounts()
  t.equal(counts.live, counts.free, `every own buffer alive is a free one (${counts.live} alive, ${counts.free} free)`)
})
