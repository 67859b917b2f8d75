/**
 * Read holds on upstream connections: an exchange that pauses a backend connection (its response
 * is early and must wait for the one before it, or the client's socket is full) releases that
 * hold whenever it leaves the connection, so that a connection goes back to the pool with nothing
 * holding it. A connection pooled while paused answers the next request nobody reads: no bytes,
 * no close.
 */
import t from 'tap'
import { RawClient } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import { deferred, poll } from '../helpers/wait.js'
import { runTorture, startTortureOrigin } from '../../perf/torture.js'
import type { Filter } from '../../lib/index.js'

const get = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: h\r\n\r\n`

t.test('an early response held for its turn does not leave its connection paused in the pool', async t => {
  const slow = deferred()
  const origin = await startOrigin(t, async req => {
    if (req.url === '/slow') await slow.promise
    return ok(`${req.url} done`)
  })
  const started = await startProxy(t, { targets: [origin.target] })
  const pool = (): { open: number, idle: number } => started.proxy.stats().upstream[0]

  // client A pipelines a POST that the origin answers late and a GET it answers at once: the
  // GET's response is held by rp4 until the POST's is written
  const a = await RawClient.connect(started.port)
  t.teardown(() => a.destroy())
  await a.write('POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n' + get('/fast'))
  await origin.until(() => origin.requests.some(r => r.url === '/fast') && origin.connections.every(c => c.pending === 0 || c.requests.some(r => r.url === '/slow')), 5000, '/fast answered by the origin')
  // the connection that carried /fast is back in the pool once its response is complete
  await poll(() => pool().idle === 1, 'the /fast connection idle in the pool')
  t.equal(a.responses.length, 0, 'nothing for A yet: /slow comes first')

  // client B's request takes that pooled connection; its answer must reach B now, not after /slow
  const b = await RawClient.connect(started.port)
  t.teardown(() => b.destroy())
  await b.write(get('/c'))
  const [response] = await b.waitResponses(1, 5000)
  t.equal(response.body.toString(), '/c done', 'B is answered while A still waits')
  t.equal(origin.requests.find(r => r.url === '/c')?.connection, origin.requests.find(r => r.url === '/fast')?.connection,
    '/c went out on the connection that carried /fast')

  slow.resolve()
  const answers = await a.waitResponses(2, 5000)
  t.same(answers.map(r => r.body.toString()), ['/slow done', '/fast done'], 'A gets both, in request order')
  t.same(started.proxy.stats().errors, {}, 'no error of any kind')
})

t.test('mixed pipelined traffic with uploads and downloads up to 4 MiB: every response, in order, every byte', async t => {
  const origin = await startTortureOrigin()
  t.teardown(() => origin.close())
  const started = await startProxy(t, { targets: [`127.0.0.1:${origin.port}`] })
  const result = await runTorture({ port: started.port, requests: 1000, stallMs: 10_000, timeoutMs: 90_000 })
  t.equal(result.stalled, null, 'no stall')
  t.same(result.failures, [], 'no response out of order, lost, or with a different SHA-256')
  t.equal(result.completed, 1000, 'all 1000 answered')
  t.same(started.proxy.stats().errors, {}, 'no error of any kind in rp4')
})

t.test('the same traffic through filters on every hook, a third of them answering onRequest later: still every response, in order, every byte', async t => {
  const origin = await startTortureOrigin()
  t.teardown(() => origin.close())
  let seen = 0
  const jitter: Filter = {
    name: 'jitter',
    onRequest () {
      // pending promises interleave with pipelining, slow readers and body backpressure
      seen++
      if (seen % 3 === 0) return 'continue'
      return new Promise(resolve => setTimeout(() => resolve('continue'), seen % 7))
    },
    onUpstreamRequest (_session, head) { head.headers.set('X-Jitter', String(seen)) },
    onResponse (_session, head) { head.headers.append('X-Jitter', '1') },
    onResponseBody (_session, chunk) { return chunk },
  }
  const started = await startProxy(t, { targets: [`127.0.0.1:${origin.port}`], filters: [jitter] })
  const result = await runTorture({ port: started.port, requests: 600, seed: 7, stallMs: 10_000, timeoutMs: 90_000 })
  t.equal(result.stalled, null, 'no stall')
  t.same(result.failures, [], 'no response out of order, lost, or with a different SHA-256')
  t.equal(result.completed, 600, 'all 600 answered')
  t.equal(seen, 600, 'every request went through the filter')
  t.same(started.proxy.stats().errors, {}, 'no error of any kind in rp4')
})
