/**
 * PROXY protocol headers, parsed and written: the examples of HAProxy's spec (proxy-protocol.txt),
 * every way a header can be cut short or malformed, and what rp4 writes read back.
 */
import t from 'tap'
import { V2_SIGNATURE, encodeProxyHeader, looksLikeProxyHeader, parseProxyHeader } from '../../lib/http/proxy-header.js'

function v2 (command: number, family: number, body: Buffer): Buffer {
  const head = Buffer.alloc(16)
  V2_SIGNATURE.copy(head)
  head[12] = 0x20 | command
  head[13] = family
  head.writeUInt16BE(body.length, 14)
  return Buffer.concat([head, body])
}

t.test('v1: the spec\'s examples', async t => {
  const tcp4 = Buffer.from('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n')
  t.same(parseProxyHeader(tcp4), { state: 'done', length: 47, version: 1, source: { ip: '192.168.0.1', port: 56324 } })
  t.same(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n')), { state: 'done', length: 40, version: 1, source: { ip: '2001:db8::1', port: 1 } })
  t.same(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n')), { state: 'done', length: 15, version: 1, source: null })
  t.same(parseProxyHeader(Buffer.from('PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n')).state, 'done')
  // every prefix of a header waits for more
  for (let i = 1; i < 47; i++) t.equal(parseProxyHeader(tcp4.subarray(0, i)).state, 'more', `${i} bytes`)
})

t.test('v1: malformed headers are refused, never guessed at', async t => {
  const bad = [
    'PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n',
    'PROXY TCP4 2001:db8::1 192.168.0.11 1 2\r\n',
    'PROXY TCP6 192.168.0.1 192.168.0.11 1 2\r\n',
    'PROXY TCP4 192.168.0.1 192.168.0.11 65536 2\r\n',
    'PROXY TCP4 192.168.0.1 192.168.0.11 -1 2\r\n',
    'PROXY TCP4 192.168.0.1 192.168.0.11 01 2\r\n',
    'PROXY UDP4 192.168.0.1 192.168.0.11 1 2\r\n',
    'PROXY TCP4  192.168.0.1 192.168.0.11 1 2\r\n',
    'PROXY TCP4 192.168.0.1 192.168.0.11 1 2 3\r\n',
    'GET / HTTP/1.1\r\n',
    'PROXX TCP4 1.2.3.4 1.2.3.4 1 2\r\n',
  ]
  for (const text of bad) t.equal(parseProxyHeader(Buffer.from(text)).state, 'error', JSON.stringify(text))
  t.match(parseProxyHeader(Buffer.from('PROXY ' + 'x'.repeat(200))), { state: 'error', reason: /longer than 107 bytes/ }, 'no end of line within 107 bytes')
})

t.test('v2: IPv4, IPv6, LOCAL, UNSPEC, TLVs skipped; cut short and malformed', async t => {
  const ipv4 = Buffer.from([192, 0, 2, 1, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb])
  const tlv = Buffer.from([0x01, 0x00, 0x02, 0x68, 0x32])
  const header = v2(1, 0x11, Buffer.concat([ipv4, tlv]))
  t.same(parseProxyHeader(Buffer.concat([header, Buffer.from('GET /')])), { state: 'done', length: 16 + 17, version: 2, source: { ip: '192.0.2.1', port: 56324 } })
  for (let i = 1; i < header.length; i++) t.equal(parseProxyHeader(header.subarray(0, i)).state, 'more', `${i} bytes`)

  const ipv6 = Buffer.alloc(36)
  Buffer.from('20010db8000000000000000000000001', 'hex').copy(ipv6, 0)
  ipv6.writeUInt16BE(443, 32)
  ipv6.writeUInt16BE(8443, 34)
  t.same(parseProxyHeader(v2(1, 0x21, ipv6)), { state: 'done', length: 52, version: 2, source: { ip: '2001:db8::1', port: 443 } })
  const mapped = Buffer.alloc(36)
  Buffer.from('00000000000000000000ffffc0000201', 'hex').copy(mapped, 0)
  t.same(parseProxyHeader(v2(1, 0x21, mapped)).state === 'done' && (parseProxyHeader(v2(1, 0x21, mapped)) as { source: unknown }).source, { ip: '192.0.2.1', port: 0 }, 'an IPv4-mapped address as IPv4')

  t.same(parseProxyHeader(v2(0, 0x11, ipv4)), { state: 'done', length: 28, version: 2, source: null }, 'LOCAL: a health check, no client')
  t.same(parseProxyHeader(v2(1, 0x00, Buffer.alloc(0))), { state: 'done', length: 16, version: 2, source: null }, 'UNSPEC')
  t.match(parseProxyHeader(v2(1, 0x12, ipv4)), { state: 'error', reason: /not a stream/ }, 'UDP')
  t.match(parseProxyHeader(v2(1, 0x11, ipv4.subarray(0, 8))), { state: 'error', reason: /cut short/ })
  t.match(parseProxyHeader(v2(2, 0x11, ipv4)), { state: 'error', reason: /unknown command/ })
  const version3 = v2(1, 0x11, ipv4)
  version3[12] = 0x31
  t.match(parseProxyHeader(version3), { state: 'error', reason: /version 3/ })
  const huge = v2(1, 0x11, ipv4)
  huge.writeUInt16BE(65535, 14)
  t.match(parseProxyHeader(huge), { state: 'error', reason: /over 4096/ }, 'a length past the bound is refused before waiting for it')
})

t.test('looksLikeProxyHeader: prefixes of either signature, nothing else', async t => {
  t.ok(looksLikeProxyHeader(Buffer.from('PROX')))
  t.ok(looksLikeProxyHeader(V2_SIGNATURE.subarray(0, 5)))
  t.notOk(looksLikeProxyHeader(Buffer.from('POST / HTTP/1.1')))
  t.notOk(looksLikeProxyHeader(Buffer.from([0x16, 0x03, 0x01])))
})

t.test('what rp4 sends reads back, byte for byte where the spec fixes them', async t => {
  t.equal(encodeProxyHeader(1, { ip: '192.0.2.1', port: 56324 }, { ip: '198.51.100.1', port: 443 }).toString(), 'PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n')
  t.equal(encodeProxyHeader(1, { ip: '192.0.2.1', port: 1 }, { ip: '::1', port: 2 }).toString(), 'PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n', 'mixed families as IPv6')
  const sent = encodeProxyHeader(2, { ip: '192.0.2.1', port: 56324 }, { ip: '198.51.100.1', port: 443 }, { alpn: 'h2', authority: 'example.com' })
  t.equal(sent.subarray(0, 16).toString('hex'), '0d0a0d0a000d0a515549540a' + '2111' + (12 + 5 + 14).toString(16).padStart(4, '0'))
  t.equal(sent.subarray(16, 28).toString('hex'), 'c0000201' + 'c6336401' + 'dc04' + '01bb')
  t.equal(sent.subarray(28).toString('latin1'), '\x01\x00\x02h2\x02\x00\x0bexample.com', 'ALPN and authority TLVs')
  t.same(parseProxyHeader(sent), { state: 'done', length: sent.length, version: 2, source: { ip: '192.0.2.1', port: 56324 } })
  const six = encodeProxyHeader(2, { ip: '2001:db8::7', port: 9 }, { ip: '::1', port: 80 })
  t.same(parseProxyHeader(six), { state: 'done', length: 52, version: 2, source: { ip: '2001:db8::7', port: 9 } })
})
