/**
 * The PROXY protocol (HAProxy's spec, versions 1 and 2) on the accepting side: a trusted sender
 * (a load balancer in front of rp4) starts each connection with a header saying who the client
 * really is. Parsed here from the first bytes, bounded, never throwing:
 *
 *   v1: `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n` (at most 107 bytes), or `PROXY UNKNOWN...\r\n`
 *   v2: a 12-byte signature, version/command, family/protocol, a length, the addresses, then TLVs
 *
 * `UNKNOWN` (v1) and the LOCAL command or an unspecified family (v2: a balancer's own health
 * check) carry no client: the connection's own address stands.
 */
import { isIP } from 'node:net'

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const V1_PREFIX = Buffer.from('PROXY ')
const V1_MAX = 107
/** A v2 header's address block and TLVs beyond this are refused (HAProxy sends far less). */
const V2_MAX_LENGTH = 4096

export type ProxyHeader =
  | { state: 'more' }
  | { state: 'error', reason: string }
  /** `length`: bytes the header took; `source`: the client, or null when the header carries none. */
  | { state: 'done', length: number, version: 1 | 2, source: { ip: string, port: number } | null }

const MORE: ProxyHeader = { state: 'more' }

/** Whether `data` starts (as far as it goes) like a PROXY header of either version. */
export function looksLikeProxyHeader (data: Buffer): boolean {
  const v1 = Math.min(data.length, V1_PREFIX.length)
  if (v1 > 0 && data.subarray(0, v1).equals(V1_PREFIX.subarray(0, v1))) return true
  const v2 = Math.min(data.length, V2_SIGNATURE.length)
  return v2 > 0 && data.subarray(0, v2).equals(V2_SIGNATURE.subarray(0, v2))
}

export function parseProxyHeader (data: Buffer): ProxyHeader {
  if (data.length === 0) return MORE
  if (data[0] === 0x0d) return parseV2(data)
  if (data[0] === 0x50) return parseV1(data)
  return { state: 'error', reason: 'no PROXY protocol header (a trusted sender must send one)' }
}

function parseV1 (data: Buffer): ProxyHeader {
  const prefix = Math.min(data.length, V1_PREFIX.length)
  if (!data.subarray(0, prefix).equals(V1_PREFIX.subarray(0, prefix))) return { state: 'error', reason: 'no PROXY protocol header (a trusted sender must send one)' }
  const end = data.indexOf('\r\n', 0, 'latin1')
  if (end === -1) return data.length >= V1_MAX ? { state: 'error', reason: `PROXY v1 header longer than ${V1_MAX} bytes` } : MORE
  if (end + 2 > V1_MAX) return { state: 'error', reason: `PROXY v1 header longer than ${V1_MAX} bytes` }
  const line = data.toString('latin1', 0, end)
  const parts = line.split(' ')
  if (parts[1] === 'UNKNOWN') return { state: 'done', length: end + 2, version: 1, source: null }
  if (parts.length !== 6) return { state: 'error', reason: `PROXY v1 header malformed: ${JSON.stringify(line)}` }
  const [, family, src, dst, sport, dport] = parts
  const want = family === 'TCP4' ? 4 : family === 'TCP6' ? 6 : 0
  if (want === 0) return { state: 'error', reason: `PROXY v1 header: unknown family ${JSON.stringify(family)}` }
  if (isIP(src) !== want || isIP(dst) !== want) return { state: 'error', reason: `PROXY v1 header: addresses are not ${family}` }
  const port = portOf(sport)
  if (port === -1 || portOf(dport) === -1) return { state: 'error', reason: 'PROXY v1 header: a port is not a number from 0 to 65535' }
  return { state: 'done', length: end + 2, version: 1, source: { ip: src, port } }
}

/** A decimal port without sign or leading zeros, or -1. */
function portOf (text: string): number {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text)) return -1
  const n = Number(text)
  return n <= 65535 ? n : -1
}

function parseV2 (data: Buffer): ProxyHeader {
  const prefix = Math.min(data.length, V2_SIGNATURE.length)
  if (!data.subarray(0, prefix).equals(V2_SIGNATURE.subarray(0, prefix))) return { state: 'error', reason: 'no PROXY protocol header (a trusted sender must send one)' }
  if (data.length < 16) return MORE
  const versionCommand = data[12]
  if (versionCommand >> 4 !== 2) return { state: 'error', reason: `PROXY v2 header: version ${versionCommand >> 4}` }
  const command = versionCommand & 0x0f
  if (command > 1) return { state: 'error', reason: `PROXY v2 header: unknown command ${command}` }
  const length = data.readUInt16BE(14)
  if (length > V2_MAX_LENGTH) return { state: 'error', reason: `PROXY v2 header of ${length} bytes, over ${V2_MAX_LENGTH}` }
  if (data.length < 16 + length) return MORE
  const total = 16 + length
  // LOCAL: the sender's own connection (a health check); its addresses, if any, are ignored
  if (command === 0) return { state: 'done', length: total, version: 2, source: null }
  const family = data[13] >> 4
  const transport = data[13] & 0x0f
  if (family === 0) return { state: 'done', length: total, version: 2, source: null }
  if (transport !== 1) return { state: 'error', reason: 'PROXY v2 header: not a stream (TCP) connection' }
  if (family === 1) {
    if (length < 12) return { state: 'error', reason: 'PROXY v2 header: IPv4 addresses cut short' }
    const ip = `${data[16]}.${data[17]}.${data[18]}.${data[19]}`
    return { state: 'done', length: total, version: 2, source: { ip, port: data.readUInt16BE(24) } }
  }
  if (family === 2) {
    if (length < 36) return { state: 'error', reason: 'PROXY v2 header: IPv6 addresses cut short' }
    const groups: string[] = []
    for (let i = 0; i < 8; i++) groups.push(data.readUInt16BE(16 + i * 2).toString(16))
    const ip = compressIPv6(groups)
    return { state: 'done', length: total, version: 2, source: { ip, port: data.readUInt16BE(48) } }
  }
  // AF_UNIX: no IP to speak of; the connection's own address stands
  if (family === 3) return { state: 'done', length: total, version: 2, source: null }
  return { state: 'error', reason: `PROXY v2 header: unknown address family ${family}` }
}

/** `0:0:0:0:0:ffff:c000:201` → `::ffff:c000:201`; an IPv4-mapped address as its IPv4 form (as Node shows peers). */
function compressIPv6 (groups: string[]): string {
  if (groups.slice(0, 5).every(g => g === '0') && groups[5] === 'ffff') {
    const hi = parseInt(groups[6], 16)
    const lo = parseInt(groups[7], 16)
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`
  }
  let best = -1
  let bestLength = 0
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') { i++; continue }
    let j = i
    while (j < 8 && groups[j] === '0') j++
    if (j - i > bestLength && j - i > 1) { best = i; bestLength = j - i }
    i = j
  }
  if (best === -1) return groups.join(':')
  return groups.slice(0, best).join(':') + '::' + groups.slice(best + bestLength).join(':')
}

/** TLV types of a v2 header rp4 sends. */
const PP2_TYPE_ALPN = 0x01
const PP2_TYPE_AUTHORITY = 0x02

/**
 * The header rp4 sends to a target: `source` is the client, `destination` the address it
 * reached rp4 at. v2 carries `alpn` and `authority` (the SNI) as TLVs when given.
 */
export function encodeProxyHeader (version: 1 | 2, source: { ip: string, port: number }, destination: { ip: string, port: number }, tlvs: { alpn?: string, authority?: string } = {}): Buffer {
  const family = isIP(source.ip) === 6 || isIP(destination.ip) === 6 ? 6 : 4
  const src = family === 6 ? asIPv6(source.ip) : source.ip
  const dst = family === 6 ? asIPv6(destination.ip) : destination.ip
  if (version === 1) return Buffer.from(`PROXY TCP${family} ${src} ${dst} ${source.port} ${destination.port}\r\n`, 'latin1')
  const extra: Buffer[] = []
  for (const [type, value] of [[PP2_TYPE_ALPN, tlvs.alpn], [PP2_TYPE_AUTHORITY, tlvs.authority]] as const) {
    if (value === undefined || value === '') continue
    const bytes = Buffer.from(value, 'utf8')
    const tlv = Buffer.alloc(3 + bytes.length)
    tlv[0] = type
    tlv.writeUInt16BE(bytes.length, 1)
    bytes.copy(tlv, 3)
    extra.push(tlv)
  }
  const addresses = family === 4 ? Buffer.alloc(12) : Buffer.alloc(36)
  if (family === 4) {
    Buffer.from(src.split('.').map(Number)).copy(addresses, 0)
    Buffer.from(dst.split('.').map(Number)).copy(addresses, 4)
    addresses.writeUInt16BE(source.port, 8)
    addresses.writeUInt16BE(destination.port, 10)
  } else {
    ipv6Bytes(src).copy(addresses, 0)
    ipv6Bytes(dst).copy(addresses, 16)
    addresses.writeUInt16BE(source.port, 32)
    addresses.writeUInt16BE(destination.port, 34)
  }
  const body = Buffer.concat([addresses, ...extra])
  const head = Buffer.alloc(16)
  V2_SIGNATURE.copy(head, 0)
  head[12] = 0x21
  head[13] = family === 4 ? 0x11 : 0x21
  head.writeUInt16BE(body.length, 14)
  return Buffer.concat([head, body])
}

function asIPv6 (ip: string): string {
  return isIP(ip) === 4 ? `::ffff:${ip}` : ip
}

function ipv6Bytes (ip: string): Buffer {
  let text = ip
  // an embedded IPv4 tail (::ffff:1.2.3.4) as two groups
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (v4 !== null) {
    const [a, b, c, d] = v4.slice(1).map(Number)
    text = text.slice(0, v4.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16)
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, null]
  const left = head === '' ? [] : head.split(':')
  const right = tail === null || tail === '' ? [] : tail.split(':')
  const groups = tail === null ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right]
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2))
  return out
}
