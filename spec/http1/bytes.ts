/**
 * The parser's bytes-to-string step (core/bytes.ts): Node's own latin1 slice, which it relies on,
 * is still there, and gives what the documented `toString('latin1', start, end)` gives for every
 * byte value and for slices at every offset of a pooled buffer.
 */
import t from 'tap'
import { latin1, nativeLatin1Slice } from '../../lib/core/bytes.js'

t.test('Node still has Buffer#latin1Slice: without it the parser takes the slower documented path', async t => {
  t.equal(nativeLatin1Slice, true, 'Buffer.prototype.latin1Slice is a function in this Node')
})

t.test('every byte value, every span of a pooled buffer', async t => {
  const all = Buffer.alloc(256)
  for (let i = 0; i < 256; i++) all[i] = i
  t.equal(latin1(all, 0, 256), all.toString('latin1'))
  // a view inside Node's pool: offsets are the view's, not the pool's
  const pooled = Buffer.from('GET /x HTTP/1.1\r\nHost: a\u00e9\r\n\r\n', 'latin1')
  let mismatches = 0
  for (let start = 0; start <= pooled.length; start++) {
    for (let end = start; end <= pooled.length; end++) {
      if (latin1(pooled, start, end) !== pooled.toString('latin1', start, end)) mismatches++
    }
  }
  t.equal(mismatches, 0, 'every span agrees with toString')
  t.equal(latin1(pooled.subarray(17), 0, 7), 'Host: a')
  t.equal(latin1(pooled, 24, 25), '\u00e9')
})
