import t from 'tap'
import { RateLimiter, prefix64 } from '../../lib/filters/rate-limit.js'

t.test('IPv6 clients are grouped by /64', async t => {
  t.equal(prefix64('2001:db8:0:1::5'), '2001:db8:0:1')
  t.equal(prefix64('2001:0DB8:0000:0001:aaaa:bbbb:cccc:dddd'), '2001:db8:0:1')
  t.equal(prefix64('::1'), '0:0:0:0')
  t.equal(prefix64('fe80::1:2:3:4'), 'fe80:0:0:0')
  const limiter = new RateLimiter(1, 1)
  t.equal(limiter.take('2001:db8:0:1::5'), 0)
  t.ok(limiter.take('2001:db8:0:1::6') > 0, 'another address of the same /64 shares the bucket')
  t.equal(limiter.take('2001:db8:0:2::5'), 0, 'another /64 has its own')
})

t.test('a burst, then the rate', async t => {
  const limiter = new RateLimiter(0.1, 3)
  t.same([limiter.take('192.0.2.1'), limiter.take('192.0.2.1'), limiter.take('192.0.2.1')], [0, 0, 0])
  t.equal(limiter.take('192.0.2.1'), 10, 'one request every 10 s: retry after 10 s')
  t.equal(limiter.take('192.0.2.2'), 0)
})
