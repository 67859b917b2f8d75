/**
 * The session cache on its own: bounded by bytes whatever is stored, TLS 1.3 sessions and empty
 * IDs never stored, the version read from a session's DER without ever throwing on garbage.
 */
import t from 'tap'
import { SessionCache, sessionVersion } from '../../lib/tls/session-cache.js'

/** The start of an SSL_SESSION_ASN1 as OpenSSL writes it: SEQUENCE, INTEGER 1, INTEGER version, then padding. */
function der (version: number, body = 100): Buffer {
  const inner = Buffer.concat([Buffer.from([0x02, 0x01, 0x01, 0x02, 0x02, version >> 8, version & 0xff]), Buffer.alloc(body, 0x04)])
  const length = inner.length < 0x80 ? Buffer.from([inner.length]) : inner.length < 0x100 ? Buffer.from([0x81, inner.length]) : Buffer.from([0x82, inner.length >> 8, inner.length & 0xff])
  return Buffer.concat([Buffer.from([0x30]), length, inner])
}

t.test('sessionVersion: short and long DER lengths; garbage is -1, never a throw', async t => {
  t.equal(sessionVersion(der(0x0303, 10)), 0x0303, 'short form')
  t.equal(sessionVersion(der(0x0304, 200)), 0x0304, 'one length byte')
  t.equal(sessionVersion(der(0x0303, 1000)), 0x0303, 'two length bytes')
  t.equal(sessionVersion(Buffer.alloc(0)), -1)
  t.equal(sessionVersion(Buffer.from([0x30])), -1)
  t.equal(sessionVersion(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff])), -1, 'a length that runs past the end')
  t.equal(sessionVersion(der(0x0303).subarray(0, 6)), -1, 'truncated')
  // a fixed-seed walk over random buffers: always a number, never an exception
  let seed = 0x2545f491
  const next = (): number => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return seed >>> 0 }
  for (let i = 0; i < 2000; i++) {
    const buf = Buffer.alloc(next() % 24)
    for (let j = 0; j < buf.length; j++) buf[j] = next() & 0xff
    if (i % 2 === 0 && buf.length > 0) buf[0] = 0x30
    const v = sessionVersion(buf)
    if (typeof v !== 'number') t.fail(`not a number for ${buf.toString('hex')}`)
  }
})

t.test('store and find; TLS 1.3 sessions and empty IDs are not stored', async t => {
  const cache = new SessionCache(64 * 1024, 60_000)
  const id = Buffer.alloc(32, 1)
  cache.store(id, der(0x0303))
  t.same(cache.find(id), der(0x0303), 'found by its ID')
  t.equal(cache.find(Buffer.alloc(32, 2)), null, 'another ID: nothing')
  cache.store(Buffer.alloc(32, 3), der(0x0304))
  t.equal(cache.find(Buffer.alloc(32, 3)), null, 'a TLS 1.3 session is not kept')
  cache.store(Buffer.alloc(0), der(0x0303))
  t.equal(cache.count, 1, 'nor one without an ID')
  t.match(cache, { stored: 1, hits: 1, misses: 2 })
})

t.test('bounded by bytes: the least recently used go first, whatever is stored', async t => {
  const cache = new SessionCache(16 * 1024, 60_000)
  for (let i = 0; i < 5000; i++) {
    const id = Buffer.alloc(32)
    id.writeUInt32BE(i)
    cache.store(id, der(0x0303, 50 + (i % 300)))
  }
  t.ok(cache.bytes <= 16 * 1024, `${cache.bytes} bytes`)
  t.ok(cache.count > 10 && cache.count < 200, `${cache.count} entries`)
  const first = Buffer.alloc(32)
  t.equal(cache.find(first), null, 'the first one is gone')
  const last = Buffer.alloc(32)
  last.writeUInt32BE(4999)
  t.ok(cache.find(last) !== null, 'the last one is there')
  // one session larger than the whole cache is refused, not stored over everything else
  const before = cache.count
  cache.store(Buffer.alloc(32, 9), der(0x0303, 20_000))
  t.equal(cache.find(Buffer.alloc(32, 9)), null, 'too large: not stored')
  t.equal(cache.count, before, 'and nothing pushed out for it')
})
