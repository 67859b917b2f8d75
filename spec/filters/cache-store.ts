/**
 * The memory store's accounting (filters/cache-store.ts): an entry counts its body, its fields,
 * and for a small body the joined copy of head and body a hit may keep (http1/encode.ts), so
 * that the cache's size bound holds with those copies made.
 */
import t from 'tap'
import { CacheEntry, MemoryStore } from '../../lib/filters/cache-store.js'
import { KEPT_WHOLE_LIMIT } from '../../lib/http1/encode.js'

function entry (key: string, bodyBytes: number): CacheEntry {
  const headers = ['Content-Type', 'text/plain', 'Cache-Control', 'max-age=60']
  const e = new CacheEntry(key, '', [], 200, 'OK', headers, 0, 0)
  if (bodyBytes > 0) e.append(Buffer.alloc(bodyBytes, 'x'))
  e.finish()
  return e
}

t.test('a small body counts twice (its joined copy), a large one once', async t => {
  const fields = 'Content-Type'.length + 'text/plain'.length + 'Cache-Control'.length + 'max-age=60'.length
  const small = entry('/s', 1000)
  t.ok(small.size >= 2 * 1000 + 2 * fields, `${small.size} counts the copy`)
  const limit = entry('/l', KEPT_WHOLE_LIMIT)
  t.ok(limit.size >= 2 * KEPT_WHOLE_LIMIT, 'at the limit: still kept, still counted')
  const large = entry('/x', KEPT_WHOLE_LIMIT + 1)
  t.ok(large.size < KEPT_WHOLE_LIMIT + 1 + fields + 1024, `${large.size}: never joined, counted once`)
})

t.test('the store\'s bound holds with those copies counted', async t => {
  const store = new MemoryStore(64 * 1024)
  for (let i = 0; i < 40; i++) store.set(entry('/f' + i, 4000))
  let kept = 0
  for (let i = 0; i < 40; i++) if (store.get('/f' + i, '') !== undefined) kept++
  // each counts about 8 KiB: 7 or 8 fit in 64 KiB, not the 15 their bodies alone would allow
  t.ok(kept >= 6 && kept <= 8, `${kept} of 40 kept`)
  t.ok(store.get('/f39', '') !== undefined, 'the latest kept')
})
