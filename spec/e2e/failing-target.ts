/**
 * One backend of three answers 503 to everything. With retries on (`--retries 1`, the plain
 * config), no policy may let a 503 through to a client while a healthy target remains: each 503
 * is retried on a target not tried yet, and after `retries.markDownAfter` failed tries in a row the
 * failing backend is skipped for the failed-target time (nginx's max_fails), so least-conn and
 * P2C stop preferring it for answering fastest. A backend's own 500, or a 503 without retries,
 * passes untouched and costs the backend nothing.
 */
import t, { type Test } from 'tap'
import { exchange } from '../helpers/client.js'
import { ok, startOrigin, type Origin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import type { Proxy, TargetHealthEvent } from '../../lib/index.js'

const GET = 'GET / HTTP/1.1\r\nHost: h\r\n\r\n'
const UNAVAILABLE = 'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy'
const INTERNAL = 'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops'
const POLICIES = ['round-robin', 'least-conn', 'p2c', 'p2c-latency'] as const

/** `clients` clients, each sending `each` requests one after another; the status and body of every answer. */
async function load (port: number, clients: number, each: number, request = GET): Promise<string[]> {
  const out: string[] = []
  await Promise.all(Array.from({ length: clients }, async () => {
    for (let i = 0; i < each; i++) {
      const res = await exchange(port, request, { responses: 1 })
      const r = res.responses[0]
      out.push(r === undefined ? '(none)' : `${r.head.line[1]} ${r.body.toString()}`)
    }
  }))
  return out
}

function tally (list: string[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const x of list) out[x] = (out[x] ?? 0) + 1
  return out
}

/** The proxy's health transitions, each with when it came (performance.now(): the proxy's clock). */
function healthEvents (proxy: Proxy): Array<TargetHealthEvent & { at?: number }> {
  const events: Array<TargetHealthEvent & { at?: number }> = []
  proxy.on('targetHealth', event => { events.push({ ...event, at: performance.now() }) })
  return events
}

async function fleet (t: Test, failing: string): Promise<{ good: Origin[], bad: Origin }> {
  const good = [await startOrigin(t, () => ok('a')), await startOrigin(t, () => ok('b'))]
  const bad = await startOrigin(t, () => failing)
  return { good, bad }
}

for (const policy of POLICIES) {
  t.test(`${policy}: one backend answering 503 to everything, one request at a time: no client sees a 503`, async t => {
    const { good, bad } = await fleet(t, UNAVAILABLE)
    const { proxy, port } = await startProxy(t, { targets: [good[0].target, bad.target, good[1].target], balance: policy, retries: 1 })
    const health = healthEvents(proxy)
    const seen = await load(port, 1, 60)
    t.equal(seen.length, 60)
    t.same(Object.keys(tally(seen)).filter(s => !s.startsWith('200 ')), [], `every answer a 200: ${JSON.stringify(tally(seen))}`)
    t.equal(good[0].requests.length + good[1].requests.length, 60, 'each request answered once by a good one')
    // round robin and least-conn reach it in turn; P2C once its pair includes it: the third failure
    // skips it. P2C weighted by latency may stop choosing it sooner: its one measurement, taken with
    // a new connection on a busy machine, can stay above the healthy targets' for the whole run
    // (seen in CI: one try). Fewer tries, then, and no skip yet; never a fourth.
    const tries = bad.requests.length
    if (policy === 'p2c-latency') t.ok(tries >= 1 && tries <= 3, `the failing backend got 1 to 3 tries (${tries})`)
    else t.equal(tries, 3, 'the failing backend got three tries, then was skipped')
    if (tries === 3) {
      t.same(health.map(e => `${e.target} ${e.up ? 'up' : 'down'} ${e.reason}`), [`${bad.target} down failed_tries`])
      t.match(health[0].detail, /^3 failed tries in a row; skipped for 10000 ms$/)
    } else {
      t.same(health, [], 'not marked down before its third failure')
    }
    t.match(proxy.stats().groups, [{ group: 'default', retries: tries, budgetExhausted: 0 }])
  })

  t.test(`${policy}: eight clients at once: still no 503, and the failing backend soon left alone`, async t => {
    const { good, bad } = await fleet(t, UNAVAILABLE)
    const { port } = await startProxy(t, { targets: [good[0].target, bad.target, good[1].target], balance: policy, retries: 1 })
    const seen = await load(port, 8, 20)
    t.equal(seen.length, 160)
    t.same(Object.keys(tally(seen)).filter(s => !s.startsWith('200 ')), [], `every answer a 200: ${JSON.stringify(tally(seen))}`)
    // the third failure skips it; tries already on their way when it came still reach it. P2C by
    // latency may leave it alone sooner: a try is timed from its dispatch to its response head, and
    // with eight at once a first sample that took longer (its connection being opened, a busy
    // turn) can make it the slower of every pair it is in, so it is not chosen again before the skip
    const least = policy === 'p2c-latency' ? 1 : 3
    t.ok(bad.requests.length >= least && bad.requests.length <= 3 + 8, `the failing backend got ${bad.requests.length} tries of 160`)
  })
}

t.test('the skip ends after the failed-target time; three more failures skip it again', async t => {
  const { good, bad } = await fleet(t, UNAVAILABLE)
  const { proxy, port } = await startProxy(t, { targets: [good[0].target, bad.target, good[1].target], balance: 'round-robin', retries: 1, timeouts: { failedTarget: '300ms' } })
  const health = healthEvents(proxy)
  t.same(tally(await load(port, 1, 12)), { '200 a': 6, '200 b': 6 })
  t.equal(bad.requests.length, 3)
  const skippedAt = health[0].at!
  // bounded: 300 ms of skip, at most 5 s of waiting
  while (bad.requests.length === 3 && performance.now() - skippedAt < 5000) {
    const [answer] = await load(port, 1, 1)
    t.match(answer, /^200 /)
  }
  // the event is told a moment after the skip began: a millisecond of slack
  t.ok(performance.now() - skippedAt >= 299, `not before the failed-target time: ${performance.now() - skippedAt} ms`)
  const after = await load(port, 1, 12)
  t.same(after.filter(s => !s.startsWith('200 ')), [], 'still no 503 to a client')
  t.equal(bad.requests.length, 6, 'three more tries, then skipped again')
  t.same(health.map(e => e.reason), ['failed_tries', 'failed_tries'])
})

t.test('a backend\'s own 500 is not a failed try: it passes, and the backend keeps its share', async t => {
  const { good, bad } = await fleet(t, INTERNAL)
  const { proxy, port } = await startProxy(t, { targets: [good[0].target, bad.target, good[1].target], balance: 'round-robin', retries: 1 })
  const health = healthEvents(proxy)
  t.same(tally(await load(port, 1, 30)), { '200 a': 10, '500 oops': 10, '200 b': 10 })
  t.equal(bad.requests.length, 10)
  t.same(health, [])
})

t.test('without retries a 503 is the backend\'s answer: passed, and the backend keeps its share', async t => {
  const { good, bad } = await fleet(t, UNAVAILABLE)
  const { proxy, port } = await startProxy(t, { targets: [good[0].target, bad.target, good[1].target], balance: 'round-robin' })
  const health = healthEvents(proxy)
  t.same(tally(await load(port, 1, 30)), { '200 a': 10, '503 busy': 10, '200 b': 10 })
  t.same(health, [])
})

t.test('markDownAfter 0: retried every time, never skipped', async t => {
  const { good, bad } = await fleet(t, UNAVAILABLE)
  const { proxy, port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ proxy: 'app' }],
    upstreams: { app: { targets: [good[0].target, bad.target, good[1].target], policy: 'round-robin', retries: { count: 1, markDownAfter: 0 } } },
  })
  const health = healthEvents(proxy)
  const seen = tally(await load(port, 1, 30))
  t.same(Object.keys(seen).sort(), ['200 a', '200 b'])
  t.equal(bad.requests.length, 10, 'tried in every one of its turns')
  t.same(health, [])
})

t.test('a 503 to a POST (not retried) still counts against the backend', async t => {
  const { good, bad } = await fleet(t, UNAVAILABLE)
  const { proxy, port } = await startProxy(t, { targets: [good[0].target, bad.target, good[1].target], balance: 'round-robin', retries: 1 })
  const health = healthEvents(proxy)
  const posts = tally(await load(port, 1, 9, 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n'))
  t.same(posts, { '200 a': 3, '503 busy': 3, '200 b': 3 }, 'a POST takes the answer it gets')
  t.same(health.map(e => e.reason), ['failed_tries'])
  t.same(tally(await load(port, 1, 6, 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n')), { '200 a': 3, '200 b': 3 }, 'then it is skipped')
})

t.test('never more than half the group out: two failing of three, only one skipped', async t => {
  const good = await startOrigin(t, () => ok('good'))
  const bad = [await startOrigin(t, () => UNAVAILABLE), await startOrigin(t, () => UNAVAILABLE)]
  const { proxy, port } = await startProxy(t, { targets: [bad[0].target, good.target, bad[1].target], balance: 'round-robin', retries: 1 })
  const health = healthEvents(proxy)
  const seen = tally(await load(port, 1, 30))
  t.equal(health.length, 1, `one skipped: ${JSON.stringify(health)}`)
  t.equal(health[0].reason, 'failed_tries')
  const stillIn = health[0].target === bad[0].target ? bad[1] : bad[0]
  const before = stillIn.requests.length
  await load(port, 1, 10)
  t.ok(stillIn.requests.length > before, 'the other failing one still takes its turns')
  t.ok((seen['200 good'] ?? 0) >= 20, `most answers good: ${JSON.stringify(seen)}`)
})

t.test('resets before the response count as failed tries too', async t => {
  const good = [await startOrigin(t, () => ok('a')), await startOrigin(t, () => ok('b'))]
  const resets = await startOrigin(t, () => ({ close: 'reset' }))
  const { proxy, port } = await startProxy(t, { targets: [good[0].target, resets.target, good[1].target], balance: 'round-robin', retries: 1 })
  const health = healthEvents(proxy)
  const seen = await load(port, 1, 30)
  t.same(seen.filter(s => !s.startsWith('200 ')), [], 'every answer a 200')
  t.equal(resets.requests.length, 3)
  t.same(health.map(e => e.reason), ['failed_tries'])
})
