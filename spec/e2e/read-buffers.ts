/**
 * Reads into reused buffers (core/read-buffers.ts, core/loan.ts): a large body read into a
 * connection's own buffer is written on from that buffer, and the buffer is read into again only
 * when nothing kept a view of it. Checked byte for byte where it could go wrong: many large
 * downloads and uploads at once, slow clients and a slow backend whose sockets queue what they
 * are given, a filter that keeps every piece of the body it sees, and pipelined requests whose
 * bytes are kept while the one before is answered.
 */
import t from 'tap'
import net from 'node:net'
import tls from 'node:tls'
import { createHash } from 'node:crypto'
import { randomBody, randomInt, sha256 } from '../helpers/bodies.js'
import { ok, startOrigin, type OriginRequest } from '../helpers/origin.js'
import { RawClient } from '../helpers/client.js'
import { connectRaw, startTcpBackend } from '../helpers/tls-backends.js'
import { startProxy } from '../helpers/proxy.js'
import { poll } from '../helpers/wait.js'
import { ownBufferCounts } from '../../lib/core/read-buffers.js'
import { makeCertificates } from '../helpers/tls-certs.js'
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
async function downloads (port: number, paths: string[], slow: boolean, secure = false): Promise<Download[]> {
  const socket = secure ? tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }) : net.connect(port, '127.0.0.1')
  const results: Download[] = []
  let pending: Buffer = Buffer.alloc(0)
  let head: { status: number, declared: string, left: number, length: number, hash: ReturnType<typeof createHash>, waited: boolean } | null = null
  let next = 0
  return await new Promise<Download[]>((resolve, reject) => {
    const ask = (): void => { socket.write(`GET ${paths[next++]} HTTP/1.1\r\nHost: h\r\n\r\n`) }
    socket.on(secure ? 'secureConnect' : 'connect', ask)
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

/** POST `bodies` in turn on one keep-alive connection, each in one write; the answers' bodies, in order. */
async function uploads (port: number, bodies: Buffer[]): Promise<string[]> {
  const client = await RawClient.connect(port)
  try {
    const answers: string[] = []
    for (const body of bodies) {
      await client.write(Buffer.concat([Buffer.from(`POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: ${body.length}\r\n\r\n`), body]))
      const [response] = await client.waitResponses(answers.length + 1, 30_000).then(all => all.slice(answers.length))
      answers.push(response.body.toString())
    }
    return answers
  } finally {
    client.destroy()
  }
}

t.test('large uploads on six connections at once: every byte reaches the backend, through buffers read into again', async t => {
  const origin = await startOrigin(t, req => ok(`${req.bodyLength} ${req.sha256}`))
  const { proxy, port } = await startProxy(t, { targets: [origin.target] })
  const before = ownBufferCounts()
  const plans = Array.from({ length: 6 }, () => Array.from({ length: 2 }, () => randomBody(randomInt(MB, 3 * MB))))
  const answers = await Promise.all(plans.map(async bodies => await uploads(port, bodies)))
  for (const [i, bodies] of plans.entries()) {
    for (const [j, body] of bodies.entries()) t.equal(answers[i][j], `${body.length} ${sha256(body)}`, `client ${i}, upload ${j}: the backend got the same ${body.length} bytes`)
  }
  const after = ownBufferCounts()
  t.ok(after.taken > before.taken, `the clients' reads went to own buffers (${JSON.stringify(after)})`)
  t.same(proxy.stats().errors, {}, 'no error in rp4')
})

t.test('large uploads to a backend that reads slowly: what its socket queues is never read over', async t => {
  // the backend takes 40 MB/s in all: the proxy's sockets to it fill, and hold what they were given
  const origin = await startOrigin(t, req => ok(`${req.bodyLength} ${req.sha256}`), { readRate: 40 * MB })
  const { port } = await startProxy(t, { targets: [origin.target] })
  const before = ownBufferCounts()
  const plans = Array.from({ length: 3 }, () => [randomBody(randomInt(6 * MB, 8 * MB))])
  const answers = await Promise.all(plans.map(async bodies => await uploads(port, bodies)))
  for (const [i, [body]] of plans.entries()) t.equal(answers[i][0], `${body.length} ${sha256(body)}`, `client ${i}: the backend got the same ${body.length} bytes`)
  const after = ownBufferCounts()
  t.ok(after.taken > before.taken, 'own buffers were read into')
  t.ok(after.abandoned > before.abandoned, `and some were kept by a backend socket's queue (${JSON.stringify(after)})`)
})

t.test('pipelined uploads on a connection whose reads went to own buffers, each request held by a filter for a while: every byte arrives', async t => {
  const origin = await startOrigin(t, req => ok(`${req.method} ${req.url} ${req.bodyLength} ${req.sha256}`))
  // parsing stops at each head until the filter answers: what was read after it waits meanwhile
  const hold: Filter = { name: 'hold', onRequest: async () => await new Promise(resolve => setImmediate(() => resolve('continue'))) }
  const { port } = await startProxy(t, { targets: [origin.target], filters: [hold] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  const first = randomBody(2 * MB + 123)
  const second = randomBody(3 * MB + 7)
  // pipelined: the second request's head sits in a read of the first one's body
  await client.write(Buffer.concat([
    Buffer.from(`POST /one HTTP/1.1\r\nHost: h\r\nContent-Length: ${first.length}\r\n\r\n`), first,
    Buffer.from(`POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: ${second.length}\r\n\r\n`), second,
    Buffer.from('GET /three HTTP/1.1\r\nHost: h\r\n\r\n'),
  ]))
  const responses = await client.waitResponses(3, 30_000)
  t.equal(responses[0]?.body.toString(), `POST /one ${first.length} ${sha256(first)}`)
  t.equal(responses[1]?.body.toString(), `POST /two ${second.length} ${sha256(second)}`)
  t.equal(responses[2]?.body.toString(), `GET /three 0 ${sha256(Buffer.alloc(0))}`)
})

t.test('a connection whose reads went to own buffers becomes a tunnel: what the client sends after the 101 is echoed whole', async t => {
  const origin = await startOrigin(t, req => req.url === '/up'
    ? ok(`${req.bodyLength} ${req.sha256}`)
    : { bytes: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n', tunnel: (data, socket) => { socket.write(data) } })
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  const before = ownBufferCounts()
  const body = randomBody(3 * MB)
  await client.write(Buffer.concat([Buffer.from(`POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: ${body.length}\r\n\r\n`), body]))
  const [answer] = await client.waitResponses(1, 30_000)
  t.equal(answer.body.toString(), `${body.length} ${sha256(body)}`, 'the upload arrived whole')
  t.ok(ownBufferCounts().taken > before.taken, 'its reads went to an own buffer')
  await client.write('GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n')
  await client.waitResponses(2, 10_000)
  // large enough for several reads on the tunnel, through the client socket's stream now
  const data = randomBody(MB + 17)
  await client.write(data)
  await client.until(() => client.tunnel().length >= data.length, 10_000, 'the echo')
  t.equal(sha256(client.tunnel()), sha256(data), 'every byte echoed, in order')
})

t.test('TCP passthrough: large transfers both ways on four connections at once go through own buffers, every byte', async t => {
  // each connection: the backend sends its download at once and, after the client's FIN, the digest of what it got
  const downloads = new Map<number, Buffer>()
  const backend = await startTcpBackend(t, conn => {
    const body = randomBody(randomInt(2 * MB, 4 * MB))
    downloads.set(downloads.size, body)
    conn.socket.write(Buffer.from(`${String(body.length).padStart(10, '0')}${sha256(body)}`))
    conn.socket.write(body)
    conn.socket.on('end', () => conn.socket.end(sha256(conn.data)))
  })
  const { port } = await startProxy(t, { targets: [backend.target], tcp: true })
  const before = ownBufferCounts()
  await Promise.all([0, 1, 2, 3].map(async () => {
    const client = await connectRaw(port)
    t.teardown(() => client.socket.destroy())
    const upload = randomBody(randomInt(2 * MB, 4 * MB))
    client.socket.end(upload)
    await client.watch.until(() => client.conn.ended, 20_000, 'the backend\'s FIN through the proxy')
    const received = client.conn.data
    const length = Number(received.subarray(0, 10).toString())
    const declared = received.subarray(10, 74).toString()
    const body = received.subarray(74, 74 + length)
    t.equal(sha256(body), declared, `download of ${length} bytes intact`)
    t.equal(received.subarray(74 + length).toString(), sha256(upload), `upload of ${upload.length} bytes intact`)
  }))
  const after = ownBufferCounts()
  t.ok(after.taken > before.taken, `the relay's reads went to own buffers (${JSON.stringify(after)})`)
})

// a write to a TLS socket completes only once its encrypted bytes are written, so the backend's
// reads for a TLS client stay on copies of the shared buffer (its large first reads are lent, and
// kept by the TLS socket's queue): the bytes must come through that path whole
t.test('TLS clients: large downloads from a cleartext backend reach each client whole', async t => {
  const certificates = await makeCertificates(t)
  const pair = await certificates.issue('rb', ['localhost', '127.0.0.1'])
  const origin = await startOrigin(t, big)
  const { port } = await startProxy(t, { targets: [origin.target], tls: { certificates: [pair] } })
  const plans = Array.from({ length: 4 }, (_, i) => ({
    paths: i === 0 ? [`/big/${randomInt(7 * MB, 9 * MB)}`] : [`/big/${randomInt(MB, 3 * MB)}`, `/big/${randomInt(MB, 3 * MB)}`],
  }))
  const results = await Promise.all(plans.map(async plan => await downloads(port, plan.paths, false, true)))
  for (const [i, plan] of plans.entries()) {
    for (const [j, path] of plan.paths.entries()) {
      t.equal(results[i][j].length, Number(path.split('/')[2]), `client ${i}, ${path}: whole length`)
      t.equal(results[i][j].hash, results[i][j].declared, `client ${i}, ${path}: the backend's bytes`)
    }
  }
})

t.test('a smuggling attempt after a large upload, on a connection whose reads went to own buffers, sent a byte at a time: 400, and the backend sees only the upload', async t => {
  const origin = await startOrigin(t, req => ok(`${req.method} ${req.url} ${req.bodyLength} ${req.sha256}`))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  const before = ownBufferCounts()
  const body = randomBody(2 * MB + 5)
  await client.write(Buffer.concat([Buffer.from(`POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: ${body.length}\r\n\r\n`), body]))
  const [first] = await client.waitResponses(1, 30_000)
  t.equal(first.body.toString(), `POST /up ${body.length} ${sha256(body)}`, 'the upload arrived whole')
  t.ok(ownBufferCounts().taken > before.taken, 'its reads went to an own buffer')
  // Content-Length and Transfer-Encoding together, with a second request hidden in the body
  await client.writeBytewise('POST /smuggle HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: h\r\n\r\n')
  const [, refused] = await client.waitResponses(2, 10_000)
  t.equal(refused.head.line[1], '400', 'refused with a 400')
  t.same(origin.requests.map(r => r.url), ['/up'], 'the backend saw the upload only')
})
