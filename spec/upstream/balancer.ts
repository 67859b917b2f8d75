/**
 * The balancer and its policies on their own, with a clock the spec drives: distributions over
 * many picks with fixed seeds, hash keys that move only with their target, bounded loads, backups,
 * the panic threshold, slow start, and failover that never tries a target twice.
 */
import t from 'tap'
import { Balancer, type BalancerOptions, type BalancedTarget } from '../../lib/upstream/balancer.js'
import { hashKey } from '../../lib/upstream/balance/hash.js'
import type { BalanceModel } from '../../lib/model/model.js'

function targets (...weights: number[]): BalancedTarget[] {
  return weights.map((weight, i) => ({ authority: `10.0.0.${i + 1}:80`, weight, backup: false }))
}

function balancer (list: BalancedTarget[], policy: BalanceModel, more: Partial<BalancerOptions> = {}): { b: Balancer, clock: { now: number } } {
  const clock = { now: 1_000_000 }
  const b = new Balancer(list, { policy, failedTarget: 10_000, slowStart: 0, panicThreshold: 0, seed: 42, now: () => clock.now, ...more })
  return { b, clock }
}

function counts (b: Balancer, picks: number, key: (i: number) => string | null = () => null): number[] {
  const seen = b.targets.map(() => 0)
  for (let i = 0; i < picks; i++) seen[b.pick(key(i), null)]++
  return seen
}

const RR: BalanceModel = { kind: 'round-robin' }
const hash = (loadFactor = 1.25): BalanceModel => ({ kind: 'hash', by: 'header', name: 'x-user', loadFactor })

t.test('smooth weighted round robin: nginx\'s order for 5:1:1, and exact shares', async t => {
  const { b } = balancer(targets(5, 1, 1), RR)
  const order = Array.from({ length: 7 }, () => 'abc'[b.pick(null, null)]).join('')
  t.equal(order, 'aabacaa', 'the heavy target\'s turns are spread, not bunched')
  t.same(counts(b, 7000), [5000, 1000, 1000])
})

t.test('round robin with equal weights is plain rotation', async t => {
  const { b } = balancer(targets(1, 1, 1), RR)
  t.equal(Array.from({ length: 6 }, () => b.pick(null, null)).join(''), '012012')
})

t.test('a target that is down takes no turns and comes back without a burst', async t => {
  const { b, clock } = balancer(targets(1, 1), RR)
  b.markDown(0)
  t.same(counts(b, 10), [0, 10])
  clock.now += 10_001
  t.same(counts(b, 10), [5, 5], 'alternating again at once')
})

t.test('least-conn: the fewest in flight per weight; ties go round', async t => {
  const { b } = balancer(targets(1, 1, 2), { kind: 'least-conn' })
  b.acquire(0); b.acquire(0); b.acquire(1); b.acquire(2); b.acquire(2)
  // loads per weight: 2, 1, 1 → a tie between 1 and 2, broken in turn
  const picks = [b.pick(null, null), b.pick(null, null)]
  t.ok(picks.includes(1) && picks.includes(2), `both tied targets get turns: ${picks}`)
  t.notOk(picks.includes(0), 'never the loaded one')
  // an idle group: every target in turn, not all on the first
  const idle = balancer(targets(1, 1, 1), { kind: 'least-conn' }).b
  t.same(counts(idle, 300), [100, 100, 100])
})

t.test('least-conn keeps loads level when requests stay in flight', async t => {
  const { b } = balancer(targets(1, 3), { kind: 'least-conn' })
  for (let i = 0; i < 400; i++) b.acquire(b.pick(null, null))
  t.equal(b.active(0), 100)
  t.equal(b.active(1), 300, 'in proportion to the weights')
})

t.test('p2c: a loaded target is chosen far less; idle targets evenly (fixed seed)', async t => {
  const { b } = balancer(targets(1, 1, 1, 1), { kind: 'p2c', latency: false })
  const even = counts(b, 40_000)
  for (const n of even) t.ok(Math.abs(n - 10_000) < 600, `within 6% of an even share: ${even}`)
  for (let i = 0; i < 20; i++) b.acquire(3)
  const skewed = counts(b, 40_000)
  // the loaded one wins only when drawn against... nobody: it is always the worse of its pair
  t.equal(skewed[3], 0, `the loaded target is never the less loaded of a pair: ${skewed}`)
  t.ok(skewed.slice(0, 3).every(n => Math.abs(n - 13_333) < 800), `the rest share evenly: ${skewed}`)
})

t.test('p2c honours weights with nothing in flight: 3:1 gives 3/4 and 1/4, 3:1:1 gives 3/5 and 1/5 each (fixed seed)', async t => {
  const two = counts(balancer(targets(3, 1), { kind: 'p2c', latency: false }).b, 40_000)
  t.ok(Math.abs(two[0] - 30_000) < 1000, `the heavy one: three shares of four, not all: ${two}`)
  const three = counts(balancer(targets(3, 1, 1), { kind: 'p2c', latency: false }).b, 50_000)
  t.ok(Math.abs(three[0] - 30_000) < 1000, `the heavy one: three fifths: ${three}`)
  for (const n of three.slice(1)) t.ok(Math.abs(n - 10_000) < 700, `each light one a fifth: ${three}`)
})

t.test('p2c with weights keeps load per weight level when requests stay in flight', async t => {
  const { b } = balancer(targets(1, 3), { kind: 'p2c', latency: false })
  for (let i = 0; i < 400; i++) b.acquire(b.pick(null, null))
  t.ok(Math.abs(b.active(1) - 300) <= 4, `in proportion to the weights: ${b.active(0)}, ${b.active(1)}`)
})

t.test('p2c with weights follows slow start: a target coming back draws a small share first', async t => {
  const { b, clock } = balancer(targets(1, 1), { kind: 'p2c', latency: false }, { slowStart: 10_000 })
  b.markDown(0)
  clock.now += 10_001
  b.markUp(0)
  const early = counts(b, 10_000)
  t.ok(early[0] > 500 && early[0] < 1500, `about 10% at first: ${early}`)
  clock.now += 10_000
  const later = counts(b, 10_000)
  t.ok(Math.abs(later[0] - 5000) < 400, `an even share once the window is over: ${later}`)
})

t.test('p2c-latency: the slow target loses its pairs even with no requests in flight', async t => {
  const { b } = balancer(targets(1, 1, 1), { kind: 'p2c', latency: true })
  for (let i = 0; i < 10; i++) { b.observeLatency(0, 5); b.observeLatency(1, 5); b.observeLatency(2, 50) }
  const seen = counts(b, 30_000)
  t.equal(seen[2], 0, `ten times slower: never preferred (${seen})`)
})

t.test('p2c-latency: a target measured slow once is not starved: its estimate fades until it is tried again', async t => {
  const { b, clock } = balancer(targets(1, 1), { kind: 'p2c', latency: true })
  // one response of 2 s (a backend's cold start), against 5 ms
  b.observeLatency(0, 2000)
  b.observeLatency(1, 5)
  t.equal(counts(b, 1000)[0], 0, 'at first the slow one loses every pair')
  // the fast one keeps being measured; nothing comes from the slow one
  let tried = -1
  for (let second = 1; second <= 120 && tried === -1; second++) {
    clock.now += 1000
    b.observeLatency(1, 5)
    if (b.pick(null, null) === 0) tried = second
  }
  t.ok(tried > 0 && tried <= 90, `tried again within a minute and a half (after ${tried} s)`)
  // it answers fast now: its estimate is a fast one at once, and it takes its share of the traffic
  b.observeLatency(0, 5)
  t.ok(b.latency(0) < 10, `measured fast: ${b.latency(0).toFixed(1)} ms`)
  const share = [0, 0]
  for (let i = 0; i < 2000; i++) {
    clock.now += 10
    const chosen = b.pick(null, null)
    share[chosen]++
    b.observeLatency(chosen, 5)
  }
  t.ok(share[0] > 600 && share[1] > 600, `both take a share, answering alike (${share})`)
})

t.test('p2c-latency: a target that is still slow when tried again goes back to losing its pairs', async t => {
  const { b, clock } = balancer(targets(1, 1), { kind: 'p2c', latency: true })
  b.observeLatency(0, 2000)
  b.observeLatency(1, 5)
  let tries = 0
  for (let second = 1; second <= 600; second++) {
    clock.now += 1000
    b.observeLatency(1, 5)
    if (b.pick(null, null) === 0) {
      tries++
      b.observeLatency(0, 2000)
    }
  }
  t.ok(tries >= 5 && tries <= 30, `probed now and then over ten minutes, one request each time (${tries})`)
})

t.test('p2c with the same seed makes the same choices', async t => {
  const a = balancer(targets(1, 1, 1, 1, 1), { kind: 'p2c', latency: false }).b
  const c = balancer(targets(1, 1, 1, 1, 1), { kind: 'p2c', latency: false }).b
  for (let i = 0; i < 50; i++) { a.acquire(i % 5); c.acquire(i % 5) }
  a.acquire(1); c.acquire(1)
  const pa = Array.from({ length: 200 }, () => a.pick(null, null))
  const pc = Array.from({ length: 200 }, () => c.pick(null, null))
  t.same(pa, pc)
})

t.test('hash: the same key, the same target; keys spread by weight', async t => {
  const { b } = balancer(targets(1, 1, 1, 1), hash())
  const first = Array.from({ length: 2000 }, (_, i) => b.pick(`user-${i}`, null))
  const again = Array.from({ length: 2000 }, (_, i) => b.pick(`user-${i}`, null))
  t.same(again, first, 'stable')
  const share = [0, 0, 0, 0]
  for (const i of first) share[i]++
  for (const n of share) t.ok(n > 350 && n < 650, `each target owns about a quarter of the keys: ${share}`)
  const weighted = balancer(targets(3, 1), hash()).b
  const w = counts(weighted, 4000, i => `k${i}`)
  t.ok(w[0] > 2600 && w[0] < 3400, `3:1 by weight: ${w}`)
})

t.test('hash: a target that leaves moves only its own keys, and they come back with it', async t => {
  const { b, clock } = balancer(targets(1, 1, 1, 1, 1), hash())
  const keys = Array.from({ length: 3000 }, (_, i) => `session-${i}`)
  const before = keys.map(k => b.pick(k, null))
  b.markDown(2)
  const during = keys.map(k => b.pick(k, null))
  let moved = 0
  keys.forEach((_, i) => {
    if (before[i] === 2) t.not(during[i], 2)
    else if (during[i] !== before[i]) moved++
  })
  t.equal(moved, 0, 'no key of another target moved')
  t.ok(before.filter(x => x === 2).length > 300, 'the departed target had its share of keys')
  clock.now += 10_001
  t.same(keys.map(k => b.pick(k, null)), before, 'back where they were')
})

t.test('hash: the ring does not depend on the order the targets are listed in', async t => {
  const list = targets(1, 2, 1)
  const forward = balancer(list, hash()).b
  const reversed = balancer([...list].reverse(), hash()).b
  for (let i = 0; i < 500; i++) {
    const key = `k${i}`
    t.equal(reversed.targets[reversed.pick(key, null)].authority, forward.targets[forward.pick(key, null)].authority)
  }
})

t.test('hash with bounded loads: one hot key cannot push its target past c × the mean', async t => {
  const { b } = balancer(targets(1, 1, 1, 1), hash(1.25))
  let worst = 0
  for (let i = 0; i < 400; i++) {
    const index = b.pick('the-same-hot-key', null)
    b.acquire(index)
    let total = 0
    for (let j = 0; j < 4; j++) total += b.active(j)
    const bound = Math.ceil(1.25 * total / 4)
    for (let j = 0; j < 4; j++) worst = Math.max(worst, b.active(j) - bound)
  }
  t.equal(worst, 0, 'never above the bound')
  const loads = [0, 1, 2, 3].map(i => b.active(i))
  // the key's owner fills to 1.25 × the mean, then the next ones round the ring do
  t.equal(Math.max(...loads), 125, `the owner stopped at the bound: ${loads}`)
  t.equal(loads.filter(n => n === 125).length, 3, `the spill filled the next targets round the ring up to the bound: ${loads}`)
  t.equal(loads.reduce((a, n) => a + n, 0), 400)
})

t.test('hash: requests without the key go round robin, not to one target', async t => {
  const { b } = balancer(targets(1, 1, 1), hash())
  t.same(counts(b, 300), [100, 100, 100])
})

t.test('hashKey spreads near keys far apart', async t => {
  const a = hashKey('user-1')
  const b = hashKey('user-2')
  t.ok(Math.abs(a - b) > 1000, `${a} vs ${b}`)
  t.equal(hashKey('user-1'), a, 'deterministic')
})

t.test('backups: only while no primary is up', async t => {
  const list = [...targets(1, 1), { authority: 'backup:80', weight: 1, backup: true }]
  const { b, clock } = balancer(list, RR)
  t.same(counts(b, 10), [5, 5, 0], 'primaries up: the backup idles')
  b.markDown(0)
  t.same(counts(b, 10), [0, 10, 0], 'one primary left: still no backup')
  b.markDown(1)
  t.same(counts(b, 10), [0, 0, 10], 'no primary: the backup')
  b.markDown(2)
  t.same(counts(b, 10), [5, 5, 0], 'nothing up: the primaries again (one may be back)')
  clock.now += 10_001
  b.markUp(0)
  t.same(counts(b, 4), [2, 2, 0])
})

t.test('panic threshold: under it, every primary is chosen from again', async t => {
  const { b } = balancer(targets(1, 1, 1, 1), RR, { panicThreshold: 50 })
  b.markDown(0)
  t.same(counts(b, 30), [0, 10, 10, 10], '75% up: above the threshold, the down target is skipped')
  b.markDown(1)
  t.same(counts(b, 20), [0, 0, 10, 10], '50% up: not below it')
  b.markDown(2)
  t.same(counts(b, 40), [10, 10, 10, 10], '25% up: panic, the load spreads over all')
  const off = balancer(targets(1, 1, 1, 1), RR).b
  off.markDown(0); off.markDown(1); off.markDown(2)
  t.same(counts(off, 8), [0, 0, 0, 8], 'without a threshold the last one takes everything')
})

t.test('slow start: a target that comes back gets a rising share', async t => {
  const { b, clock } = balancer(targets(1, 1), RR, { slowStart: 10_000 })
  t.same(counts(b, 100), [50, 50], 'targets present from the start are not held back')
  b.markDown(0)
  clock.now += 10_001
  b.markUp(0)
  const start = counts(b, 1100)
  t.ok(start[0] >= 90 && start[0] <= 110, `10% of the weight at first: ${start}`)
  clock.now += 5000
  const half = counts(b, 1500)
  t.ok(half[0] >= 480 && half[0] <= 520, `half way: half the weight: ${half}`)
  clock.now += 5000
  t.same(counts(b, 100), [50, 50], 'full weight once the window is over')
})

t.test('failover never tries a target twice, backups last, then gives up', async t => {
  const list = [...targets(1, 1, 1), { authority: 'backup:80', weight: 1, backup: true }]
  const { b } = balancer(list, RR)
  const tried: number[] = []
  for (let i = 0; i < 4; i++) {
    const index = b.pick(null, tried)
    t.notOk(tried.includes(index), `try ${i}: a new target`)
    tried.push(index)
    b.markDown(index)
  }
  t.equal(tried[3], 3, 'the backup is the last resort')
  t.equal(b.pick(null, tried), -1)
})

t.test('transitions are reported once, with their reason', async t => {
  const { b } = balancer(targets(1, 1), RR)
  const seen: string[] = []
  b.onTransition = (index, up, reason) => seen.push(`${index} ${up ? 'up' : 'down'} ${reason}`)
  b.markDown(0)
  b.markDown(0)
  b.markUp(0)
  b.markUp(0)
  b.setChecked(1, false)
  b.setChecked(1, false)
  b.setChecked(1, true)
  t.same(seen, ['0 down connect_failed', '0 up connected', '1 down check_failed', '1 up check_passed'])
})
