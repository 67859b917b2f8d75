/**
 * Several targets: requests alternate between them, a target that refuses connections is failed
 * over (the client never sees it) and skipped for timeouts.failedTarget, then tried again.
 */
import net from 'node:net'
import t from 'tap'
import { exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy, unusedPort } from '../helpers/proxy.js'

const GET = 'GET / HTTP/1.1\r\nHost: h\r\n\r\n'

t.test('round robin: requests alternate between two origins', async t => {
  const a = await startOrigin(t, () => ok('A'))
  const b = await startOrigin(t, () => ok('B'))
  const { port } = await startProxy(t, { targets: [a.target, b.target], balance: 'round-robin' })
  const seen: string[] = []
  for (let i = 0; i < 8; i++) {
    const res = await exchange(port, GET, { responses: 1 })
    seen.push(res.responses[0]?.body.toString() ?? '?')
  }
  t.equal(seen.filter(x => x === 'A').length, 4, `A got half: ${seen.join('')}`)
  t.ok(seen.every((x, i) => i === 0 || x !== seen[i - 1]), `strictly alternating: ${seen.join('')}`)
})

t.test('round robin over one keep-alive client connection too', async t => {
  const a = await startOrigin(t, () => ok('A'))
  const b = await startOrigin(t, () => ok('B'))
  const { port } = await startProxy(t, { targets: [a.target, b.target], balance: 'round-robin' })
  const res = await exchange(port, GET.repeat(6), { responses: 6 })
  const seen = res.responses.map(r => r.body.toString()).join('')
  t.equal(seen.replace(/B/g, '').length, 3, `three each: ${seen}`)
})

t.test('failover: a target refusing connections is never seen by clients', async t => {
  const dead = await unusedPort()
  const good = await startOrigin(t, () => ok('good'))
  const { port, events } = await startProxy(t, { targets: [`127.0.0.1:${dead}`, good.target] })
  for (let i = 0; i < 6; i++) {
    const res = await exchange(port, GET, { responses: 1 })
    t.equal(res.responses[0]?.body.toString(), 'good', `request ${i}`)
  }
  t.ok(events.upstreamErrors.length >= 1, 'the refusal was reported')
  t.ok(events.upstreamErrors.every(e => e.target === `127.0.0.1:${dead}`), 'only for the dead target')
  t.ok(events.responses.every(r => r.status === 200 && r.target === good.target), 'every response came from the good target')
})

t.test('a failed target is skipped for timeouts.failedTarget', async t => {
  const dead = await unusedPort()
  const good = await startOrigin(t, () => ok('good'))
  const { port, events } = await startProxy(t, { targets: [`127.0.0.1:${dead}`, good.target], timeouts: { failedTarget: 60_000 } })
  for (let i = 0; i < 8; i++) await exchange(port, GET, { responses: 1 })
  t.equal(events.upstreamErrors.length, 1, 'one connect attempt to the dead target, then skipped')
  t.equal(good.requests.length, 8)
})

t.test('a failed target comes back once timeouts.failedTarget has passed', async t => {
  const backPort = await unusedPort()
  const good = await startOrigin(t, () => ok('good'))
  const { port } = await startProxy(t, { targets: [`127.0.0.1:${backPort}`, good.target], timeouts: { failedTarget: 200 } })
  await exchange(port, GET, { responses: 1 })
  // the target starts listening on its address; the balancer must try it again
  const back = net.createServer(socket => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nback'))
  await new Promise<void>(resolve => back.listen(backPort, '127.0.0.1', () => resolve()))
  t.teardown(() => back.close())
  const deadline = Date.now() + 3000
  let answers = ''
  while (!answers.includes('back') && Date.now() < deadline) {
    const res = await exchange(port, GET, { responses: 1 })
    answers += (res.responses[0]?.body.toString() ?? '?') + ' '
  }
  t.match(answers, /back/, 'the recovered target got requests again')
})

t.test('every target down: 502', async t => {
  const { port } = await startProxy(t, { targets: [`127.0.0.1:${await unusedPort()}`, `127.0.0.1:${await unusedPort()}`] })
  const res = await exchange(port, GET, { responses: 1 })
  t.equal(res.responses[0]?.head.line[1], '502')
})

t.test('p2c-latency (the default) measures each backend\'s response time: a slow one is left alone, p2c without latency shares', async t => {
  const fast = await startOrigin(t, () => ok('fast'))
  // 30 ms per answer: a real measurement is 30 ms or more, a broken one near 0
  const slow = await startOrigin(t, async () => { await new Promise(resolve => setTimeout(resolve, 30)); return ok('slow') })
  const answers = async (port: number): Promise<Record<string, number>> => {
    const out: Record<string, number> = {}
    for (let i = 0; i < 40; i++) {
      const res = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
      const body = res.responses[0]?.body.toString() ?? '(none)'
      out[body] = (out[body] ?? 0) + 1
    }
    return out
  }
  const latency = await startProxy(t, { targets: [fast.target, slow.target], balance: 'p2c-latency' })
  const byLatency = await answers(latency.port)
  t.equal((byLatency.fast ?? 0) + (byLatency.slow ?? 0), 40, JSON.stringify(byLatency))
  // one request at a time, the pair is always both: once measured, the slow one loses every pair
  t.ok((byLatency.slow ?? 0) <= 3, `p2c-latency: the slow backend answered ${byLatency.slow ?? 0} of 40`)
  const plain = await startProxy(t, { targets: [fast.target, slow.target], balance: 'p2c' })
  const byLoad = await answers(plain.port)
  // nothing in flight between requests: every pair ties on load, and the first drawn wins
  t.ok((byLoad.slow ?? 0) >= 8 && (byLoad.fast ?? 0) >= 8, `p2c: both share the requests ${JSON.stringify(byLoad)}`)
})
