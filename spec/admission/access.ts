/**
 * Access lists: the trie against a naive linear reference over thousands of random ranges (IPv4
 * and IPv6), address and CIDR parsing, the file syntax, and option validation naming the option.
 */
import t from 'tap'
import { seeded as random } from '../helpers/random.js'
import { isIP } from 'node:net'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { AccessList, AccessFileError, PrefixTrie, parseAccessFile, parseAddress, parseCidr, type AccessRule, type Address, type Cidr } from '../../lib/admission/access.js'
import { buildModel, createProxy } from '../../lib/index.js'

function word (next: () => number): number { return Math.floor(next() * 4294967296) >>> 0 }

/** Bit by bit, as plainly as possible. */
function naiveCovers (range: Cidr, address: Address): boolean {
  if (range.v6 !== address.v6) return false
  for (let i = 0; i < range.bits; i++) {
    const a = (range.words[i >>> 5] >>> (31 - (i & 31))) & 1
    const b = (address.words[i >>> 5] >>> (31 - (i & 31))) & 1
    if (a !== b) return false
  }
  return true
}

function naiveAccepts (rules: AccessRule[], address: Address): boolean {
  if (rules.some(r => r.action === 'deny' && naiveCovers(r.range, address))) return false
  const allows = rules.filter(r => r.action === 'allow')
  return allows.length === 0 || allows.some(r => naiveCovers(r.range, address))
}

/** An address near one of the ranges half of the time, so that matches are not all misses. */
function addressNear (next: () => number, rules: AccessRule[], v6: boolean): Address {
  const words = Array.from({ length: v6 ? 4 : 1 }, () => word(next))
  const same = rules.filter(r => r.range.v6 === v6)
  if (same.length > 0 && next() < 0.5) {
    const base = same[Math.floor(next() * same.length)].range
    // keep a random-length prefix of the range's address, the rest random
    const keep = Math.floor(next() * (base.bits + 4))
    for (let i = 0; i < Math.min(keep, v6 ? 128 : 32); i++) {
      const bit = (base.words[i >>> 5] >>> (31 - (i & 31))) & 1
      const mask = 1 << (31 - (i & 31))
      words[i >>> 5] = (bit === 1 ? words[i >>> 5] | mask : words[i >>> 5] & ~mask) >>> 0
    }
  }
  return { v6, words }
}

function randomRules (next: () => number, count: number): AccessRule[] {
  const rules: AccessRule[] = []
  for (let i = 0; i < count; i++) {
    const v6 = next() < 0.5
    const action = next() < 0.3 ? 'deny' : 'allow'
    // mostly long prefixes, as real lists are; a few short allowed ones that cover a lot (short
    // denied ones would refuse nearly everything)
    const max = v6 ? 128 : 32
    const bits = action === 'allow' && next() < 0.002 ? 4 + Math.floor(next() * 9) : Math.floor(max / 2 + next() * (max / 2 + 1))
    rules.push({ action, range: { v6, words: Array.from({ length: v6 ? 4 : 1 }, () => word(next)), bits } })
  }
  return rules
}

t.test('the trie agrees with a linear scan over thousands of random ranges', async t => {
  for (const seed of [1, 2, 3]) {
    const next = random(seed)
    const rules = randomRules(next, 5000)
    const list = new AccessList(rules)
    let mismatches = 0
    let accepted = 0
    for (let i = 0; i < 4000; i++) {
      const address = addressNear(next, rules, next() < 0.5)
      const expected = naiveAccepts(rules, address)
      if (list.accepts(address) !== expected) mismatches++
      if (expected) accepted++
    }
    t.equal(mismatches, 0, `seed ${seed}: no disagreement in 4000 lookups`)
    t.ok(accepted > 0 && accepted < 4000, `seed ${seed}: both verdicts exercised (${accepted} accepted)`)
  }
})

t.test('a trie of one family: prefixes, nesting, /0 and full length', async t => {
  const next = random(7)
  const ranges: Cidr[] = Array.from({ length: 3000 }, () => ({ v6: false, words: [word(next)], bits: Math.floor(next() * 33) }))
  const trie = new PrefixTrie()
  for (const r of ranges) trie.add(r.words, r.bits)
  let mismatches = 0
  for (let i = 0; i < 5000; i++) {
    const address: Address = { v6: false, words: [word(next)] }
    if (trie.has(address.words, 32) !== ranges.some(r => naiveCovers(r, address))) mismatches++
  }
  t.equal(mismatches, 0)
  const all = new PrefixTrie()
  all.add([0], 0)
  t.ok(all.has([0xffffffff], 32), '/0 covers everything')
  const host = new PrefixTrie()
  host.add([0x7f000001], 32)
  t.ok(host.has([0x7f000001], 32))
  t.notOk(host.has([0x7f000002], 32))
})

t.test('deny wins over allow; no allow list accepts the rest', async t => {
  const rule = (action: 'allow' | 'deny', text: string): AccessRule => ({ action, range: parseCidr(text) as Cidr })
  const addr = (text: string): Address => parseAddress(text) as Address
  const list = new AccessList([rule('allow', '10.0.0.0/8'), rule('deny', '10.1.0.0/16'), rule('allow', '2001:db8::/32')])
  t.ok(list.accepts(addr('10.2.3.4')))
  t.notOk(list.accepts(addr('10.1.3.4')), 'deny inside allow')
  t.notOk(list.accepts(addr('192.168.1.1')), 'outside the allow list')
  t.ok(list.accepts(addr('2001:db8:1::5')))
  t.notOk(list.accepts(addr('2001:db9::1')))
  t.ok(list.accepts(addr('::ffff:10.9.9.9')), 'an IPv4-mapped address is checked as IPv4')
  t.notOk(list.accepts(addr('::ffff:10.1.0.1')))
  const denyOnly = new AccessList([rule('deny', '127.0.0.1')])
  t.ok(denyOnly.accepts(addr('127.0.0.2')), 'only a deny list: everything else is accepted')
  t.notOk(denyOnly.accepts(addr('127.0.0.1')))
  const mapped = new AccessList([rule('deny', '::ffff:192.168.0.0/112')])
  t.notOk(mapped.accepts(addr('192.168.4.4')), 'a mapped range applies to IPv4 clients')
  t.ok(mapped.accepts(addr('192.169.0.1')))
})

t.test('addresses and ranges: parsing agrees with node:net and refuses junk', async t => {
  const valid = ['0.0.0.0', '255.255.255.255', '127.0.0.1', '::', '::1', '1::', 'fe80::1%eth0', '2001:db8::1:2',
    '1:2:3:4:5:6:7:8', '::ffff:1.2.3.4', '64:ff9b::10.0.0.1', 'ABCD:ef01::']
  for (const text of valid) t.not(parseAddress(text), null, `${text} parses`)
  const invalid = ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-1', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9',
    '12345::', 'g::', '1:2:3:4:5:6:7', '::1.2.3', 'localhost', ' 1.2.3.4']
  for (const text of invalid) t.equal(parseAddress(text), null, `"${text}" does not parse`)
  const next = random(11)
  let disagreements = 0
  for (let i = 0; i < 2000; i++) {
    const groups = Array.from({ length: 8 }, () => Math.floor(next() * 65536).toString(16))
    const start = Math.floor(next() * 8)
    const length = Math.floor(next() * (8 - start))
    const text = length > 1 ? [...groups.slice(0, start), '', ...groups.slice(start + length)].join(':').replace(/^:(?!:)/, '::').replace(/(?<!:):$/, '::') : groups.join(':')
    if ((parseAddress(text) !== null) !== (isIP(text) === 6)) disagreements++
  }
  t.equal(disagreements, 0, 'random IPv6 spellings: valid exactly when node:net says so')
  // IPv4 is read character by character (every accepted connection's address): the edges, then
  // random near-misses, each against node:net
  const v4Invalid = ['1.2.3.', '.1.2.3', '1..2.3', '1.2.3.4 ', '1.2.3.04', '1.2.3.0400', '00.0.0.0', '1.2.3.4a', '1.2.3.256',
    '1.2.3.1000', '1.2.3.4.', '+1.2.3.4', '1.2.3.0x1', '1.2.3.4\0', '1,2.3.4', '１.2.3.4', '999.999.999.999']
  for (const text of v4Invalid) t.equal(parseAddress(text), null, `${JSON.stringify(text)} does not parse`)
  t.same(parseAddress('0.10.100.255'), { v6: false, words: [0x000a64ff] })
  t.same(parseAddress('192.168.1.100'), { v6: false, words: [0xc0a80164] })
  const pieces = ['0', '00', '01', '1', '9', '10', '99', '100', '199', '255', '256', '300', '999', '1000', '', 'a', ' 1', '1 ', '-1']
  let v4Disagreements = 0
  for (let i = 0; i < 5000; i++) {
    const parts = Array.from({ length: 3 + Math.floor(next() * 3) }, () => pieces[Math.floor(next() * pieces.length)])
    const text = parts.join('.')
    const parsed = parseAddress(text)
    const expected = isIP(text) === 4
    if ((parsed !== null) !== expected) v4Disagreements++
    else if (parsed !== null && parsed.words[0] !== parts.reduce((v, p) => v * 256 + Number(p), 0)) v4Disagreements++
  }
  t.equal(v4Disagreements, 0, 'random IPv4 spellings: valid exactly when node:net says so, with the right value')
  t.same(parseAddress('::ffff:127.0.0.1'), { v6: false, words: [0x7f000001] })
  t.same(parseAddress('::1'), { v6: true, words: [0, 0, 0, 1] })
  t.same(parseCidr('10.0.0.0/8'), { v6: false, words: [0x0a000000], bits: 8 })
  t.same(parseCidr('2001:db8::/32'), { v6: true, words: [0x20010db8, 0, 0, 0], bits: 32 })
  t.same(parseCidr('::1'), { v6: true, words: [0, 0, 0, 1], bits: 128 })
  t.same(parseCidr(' 127.0.0.1 '), { v6: false, words: [0x7f000001], bits: 32 })
  t.match(parseCidr('10.0.0.0/33'), /prefix length must be from 0 to 32/)
  t.match(parseCidr('::/129'), /from 0 to 128/)
  t.match(parseCidr('10.0.0.0/'), /prefix length/)
  t.match(parseCidr('example.com'), /not an IP address or CIDR range/)
  t.match(parseCidr('fe80::1%eth0'), /not an IP address/)
})

t.test('the access file: rules, comments, and the bad line by number', async t => {
  const rules = parseAccessFile('# office\nallow 10.0.0.0/8   # all of it\n\n  deny 10.1.0.0/16\r\nALLOW ::1\n')
  t.same(rules.map(r => r.action), ['allow', 'deny', 'allow'])
  t.same(rules[2].range, { v6: true, words: [0, 0, 0, 1], bits: 128 })
  const cases: Array<[string, number, RegExp]> = [
    ['allow 10.0.0.0/8\npermit 1.2.3.4\n', 2, /is not "allow CIDR" or "deny CIDR"/],
    ['# c\n\nallow\n', 3, /is not "allow CIDR"/],
    ['deny 1.2.3.4 5.6.7.8\n', 1, /is not "allow CIDR"/],
    ['allow 1.2.3.4\ndeny 1.2.3.4/40\n', 2, /prefix length/],
    ['allow 1.2.3.4\n\n\ndeny nope\n', 4, /not an IP address/],
  ]
  for (const [text, line, reason] of cases) {
    const err = t.throws(() => parseAccessFile(text)) as unknown
    t.ok(err instanceof AccessFileError && err.line === line, `reported at line ${line}`)
    t.match((err as Error).message, new RegExp(`^line ${line}: `))
    t.match((err as Error).message, reason)
  }
  t.same(parseAccessFile(''), [], 'an empty file: no rules')
})

t.test('options: validation names the option; a bad file names the file and the line', async t => {
  const base = { listen: '127.0.0.1:0', targets: ['127.0.0.1:1'] }
  t.throws(() => buildModel({ ...base, access: { allow: ['10.0.0.0/8', 'nope'] } }), /option access\.allow\[1\]: "nope" is not an IP/)
  t.throws(() => buildModel({ ...base, access: { deny: '1.2.3.4' as never } }), /option access\.deny: must be a list/)
  t.throws(() => buildModel({ ...base, access: { bogus: 1 } as never }), /option access\.bogus: unknown key/)
  t.throws(() => buildModel({ ...base, access: { file: '' } }), /option access\.file: an empty file name/)
  t.throws(() => buildModel({ ...base, limits: { maxConnections: 0 } }), /option limits\.maxConnections: 0: at least 1/)
  t.throws(() => buildModel({ ...base, limits: { maxConnectionsPerIp: 1.5 } }), /option limits\.maxConnectionsPerIp/)
  const model = buildModel(base)
  t.equal(model.listeners[0].access, null, 'no access option: no lists')
  t.equal(model.limits.maxConnectionsPerIp, 0, 'no cap per IP by default')
  t.ok(model.limits.maxConnections > 0, 'a global cap: what the open files allow')
  t.equal(buildModel({ ...base, access: { allow: [], deny: [] } }).listeners[0].access, null, 'empty lists: none')

  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-access-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'access.txt')
  writeFileSync(file, 'allow 127.0.0.0/8\n# fine so far\ndeny 10.0.0.0/99\n')
  t.throws(() => createProxy({ ...base, access: { file } }), { message: `option access.file: "${file}" line 3: "10.0.0.0/99": the prefix length must be from 0 to 32` })
  t.throws(() => createProxy({ ...base, access: { file: path.join(dir, 'missing') } }), /option access\.file: cannot read ".*missing": ENOENT/)
})
