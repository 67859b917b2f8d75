/**
 * Outlier detection on its own, with a clock the spec drives: consecutive failures and 5xx,
 * success rates against the group's, ejections that grow and are capped, and the share of a
 * group that may be ejected at once.
 */
import t from 'tap'
import { Balancer } from '../../lib/upstream/balancer.js'
import { OutlierDetector } from '../../lib/upstream/health/outlier.js'
import type { OutlierModel } from '../../lib/model/model.js'

const BASE: OutlierModel = { consecutiveFailures: 3, consecutive5xx: 3, successRate: null, baseEjection: 1000, maxEjection: 2500, maxEjectedPercent: 50 }

function setup (n: number, model: Partial<OutlierModel> = {}): { b: Balancer, d: OutlierDetector, clock: { now: number }, seen: string[] } {
  const clock = { now: 5000 }
  const targets = Array.from({ length: n }, (_, i) => ({ authority: `t${i}:80`, weight: 1, backup: false }))
  const b = new Balancer(targets, { policy: { kind: 'round-robin' }, failedTarget: 1000, slowStart: 0, panicThreshold: 0, now: () => clock.now })
  const seen: string[] = []
  b.onTransition = (index, up, reason, detail) => seen.push(`${index} ${up ? 'up' : 'down'} ${reason}${detail !== undefined ? ': ' + detail : ''}`)
  const d = new OutlierDetector({ ...BASE, ...model }, b, () => clock.now)
  t.teardown(() => d.close())
  return { b, d, clock, seen }
}

t.test('consecutive 5xx eject; a success in between resets the count', async t => {
  const { b, d, seen } = setup(4)
  d.response(0, 503); d.response(0, 502); d.response(0, 200); d.response(0, 500); d.response(0, 500)
  t.ok(b.isUp(0), 'two in a row after the success: not yet')
  d.response(0, 504)
  t.notOk(b.isUp(0))
  t.same(seen, ['0 down ejected: 3 5xx responses in a row; ejected for 1000 ms (ejection 1)'])
})

t.test('consecutive failures eject; ejections grow with each and are capped', async t => {
  const { b, d, clock, seen } = setup(4)
  for (let round = 1; round <= 3; round++) {
    for (let i = 0; i < 3; i++) d.failure(1)
    t.notOk(b.isUp(1), `ejection ${round}`)
    clock.now = b.ejectedUntil(1)
    t.ok(b.isUp(1), 'back once its time is over')
  }
  t.same(seen.map(s => s.replace(/^.*ejected for (\d+) ms.*$/, '$1')), ['1000', '2000', '2500'], 'base × n, capped at maxEjection')
})

t.test('never more than maxEjectedPercent of the group at once', async t => {
  const { b, d } = setup(4, { maxEjectedPercent: 50 })
  for (const index of [0, 1, 2, 3]) for (let i = 0; i < 3; i++) d.failure(index)
  t.same([0, 1, 2, 3].map(i => b.isUp(i)), [false, false, true, true], 'two of four, no more')
  t.equal(b.ejectedCount, 2)
})

t.test('success rate: a target far below the group\'s is ejected; an even group is left alone', async t => {
  const { b, d, clock, seen } = setup(5, { consecutive5xx: 0, successRate: { minRequests: 20, stdevFactor: 1.5, interval: 1000 } })
  // every target ~98% good, target 4 at 60%
  for (let i = 0; i < 50; i++) {
    for (let index = 0; index < 5; index++) d.response(index, index === 4 ? (i % 5 < 2 ? 503 : 200) : (i === 7 ? 503 : 200))
  }
  t.same(seen, [], 'nothing judged before the interval ends')
  clock.now += 1000
  d.response(0, 200)
  t.notOk(b.isUp(4))
  t.match(seen, [/^4 down ejected: success rate 60\.0% against the group's 9\d\.\d%/])
  const even = setup(4, { consecutive5xx: 0, successRate: { minRequests: 20, stdevFactor: 1.5, interval: 1000 } })
  for (let i = 0; i < 40; i++) for (let index = 0; index < 4; index++) even.d.response(index, i % 10 === index ? 503 : 200)
  even.clock.now += 1000
  even.d.response(0, 200)
  t.same(even.seen, [], 'equal rates: nobody is an outlier')
})

t.test('too few requests: not judged by success rate', async t => {
  const { d, clock, seen } = setup(3, { consecutive5xx: 0, successRate: { minRequests: 100, stdevFactor: 1, interval: 1000 } })
  for (let i = 0; i < 30; i++) { d.response(0, 200); d.response(1, 200); d.response(2, 503) }
  clock.now += 1000
  d.response(0, 200)
  t.same(seen, [])
})
