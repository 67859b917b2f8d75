/**
 * Who may connect: allow and deny lists of IP addresses and CIDR ranges, IPv4 and IPv6, checked
 * once per accepted connection. Each list is a binary trie over address bits (one for IPv4, one
 * for IPv6), so a lookup costs at most 32 or 128 steps whatever the number of ranges. An
 * IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a dual-stack listener reports IPv4 clients) is
 * checked as the IPv4 address it carries, and so is a range inside `::ffff:0:0/96`.
 *
 * With an allow list, only addresses in it are accepted; the deny list always wins. The lists may
 * also come from a file (`allow CIDR` / `deny CIDR` lines, `#` comments), reloaded when its
 * modification time changes; a file that does not parse leaves the previous lists in place.
 */
import { readFileSync, stat, statSync, type Stats } from 'node:fs'

/** An address as 32-bit words, most significant first: one word for IPv4, four for IPv6. */
export interface Address {
  v6: boolean
  words: number[]
}

export interface Cidr extends Address {
  /** Prefix length in bits: 0–32 for IPv4, 0–128 for IPv6. */
  bits: number
}

export interface AccessRule {
  action: 'allow' | 'deny'
  range: Cidr
}

const HEX = /^[0-9a-fA-F]{1,4}$/

/**
 * Dotted-quad IPv4 (`192.0.2.1`): four decimal parts of 0 to 255, no leading zeros, nothing else;
 * null otherwise. Read character by character: it runs on every accepted connection.
 */
function parseV4 (text: string): number | null {
  const length = text.length
  if (length < 7 || length > 15) return null
  let value = 0
  let parts = 0
  let i = 0
  while (i <= length) {
    // one part: 1 to 3 digits, no leading zero unless it is 0 itself
    const start = i
    let n = 0
    while (i < length) {
      const c = text.charCodeAt(i)
      if (c < 0x30 || c > 0x39) break
      n = n * 10 + (c - 0x30)
      i++
    }
    const digits = i - start
    if (digits === 0 || digits > 3 || n > 255 || (digits > 1 && text.charCodeAt(start) === 0x30)) return null
    value = value * 256 + n
    parts++
    if (i === length) break
    if (text.charCodeAt(i) !== 0x2e /* . */ || parts === 4) return null
    i++
  }
  return parts === 4 ? value : null
}

function parseV6 (text: string): number[] | null {
  const zone = text.indexOf('%')
  if (zone !== -1) text = text.slice(0, zone)
  const groups: number[] = []
  let tail: number[] = []
  const double = text.indexOf('::')
  if (double !== -1 && text.indexOf('::', double + 1) !== -1) return null
  const head = double === -1 ? text : text.slice(0, double)
  const rest = double === -1 ? '' : text.slice(double + 2)
  const fill = (part: string, into: number[], last: boolean): boolean => {
    if (part === '') return true
    const pieces = part.split(':')
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]
      if (last && i === pieces.length - 1 && piece.includes('.')) {
        const v4 = parseV4(piece)
        if (v4 === null) return false
        into.push(v4 >>> 16, v4 & 0xffff)
      } else {
        if (!HEX.test(piece)) return false
        into.push(parseInt(piece, 16))
      }
    }
    return true
  }
  if (!fill(head, groups, double === -1)) return null
  if (double !== -1 && !fill(rest, tail = [], true)) return null
  if (double === -1) {
    if (groups.length !== 8) return null
  } else {
    if (groups.length + tail.length > 7) return null
    while (groups.length + tail.length < 8) groups.push(0)
    groups.push(...tail)
  }
  return [0, 2, 4, 6].map(i => (groups[i] * 0x10000 + groups[i + 1]))
}

/** Whether four IPv6 words are in `::ffff:0:0/96`. */
function isMapped (words: number[]): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff
}

/**
 * An address as a socket reports it, or as written in a rule; null when it is not one.
 * IPv4-mapped IPv6 addresses come back as IPv4.
 */
export function parseAddress (text: string): Address | null {
  if (!text.includes(':')) {
    const v4 = parseV4(text)
    return v4 === null ? null : { v6: false, words: [v4] }
  }
  const words = parseV6(text)
  if (words === null) return null
  return isMapped(words) ? { v6: false, words: [words[3]] } : { v6: true, words }
}

/** `ADDRESS` (a single host) or `ADDRESS/BITS`; an error message when it is neither. */
export function parseCidr (text: string): Cidr | string {
  const trimmed = text.trim()
  const slash = trimmed.indexOf('/')
  const host = slash === -1 ? trimmed : trimmed.slice(0, slash)
  // a zone (fe80::1%eth0) names an interface, not a range
  let address: Address | null = null
  if (host.includes(':')) {
    // kept as IPv6 here, so that a mapped range's prefix length counts from bit 0
    const words = host.includes('%') ? null : parseV6(host)
    if (words !== null) address = { v6: true, words }
  } else {
    address = parseAddress(host)
  }
  if (address === null) return `"${text}" is not an IP address or CIDR range (e.g. 10.0.0.0/8, 2001:db8::/32)`
  const max = address.v6 ? 128 : 32
  let bits = max
  if (slash !== -1) {
    const suffix = trimmed.slice(slash + 1)
    if (!/^\d{1,3}$/.test(suffix) || Number(suffix) > max) return `"${text}": the prefix length must be from 0 to ${max}`
    bits = Number(suffix)
  }
  // a range inside ::ffff:0:0/96 is the IPv4 range it maps
  if (address.v6 && bits >= 96 && isMapped(address.words)) return { v6: false, words: [address.words[3]], bits: bits - 96 }
  return { ...address, bits }
}

function bitAt (words: number[], index: number): number {
  return (words[index >>> 5] >>> (31 - (index & 31))) & 1
}

/**
 * A set of prefixes of one address family, as a binary trie in flat arrays: node i's children are
 * `zero[i]` and `one[i]` (0: none; node 0 is the root, never a child), `end[i]` marks a prefix.
 */
export class PrefixTrie {
  readonly #zero: number[] = [0]
  readonly #one: number[] = [0]
  readonly #end: boolean[] = [false]
  #size = 0

  /** Prefixes added (duplicates included). */
  get size (): number { return this.#size }

  add (words: number[], bits: number): void {
    this.#size++
    let node = 0
    for (let i = 0; i < bits; i++) {
      // a shorter prefix already covers everything below it
      if (this.#end[node]) return
      const children = bitAt(words, i) === 0 ? this.#zero : this.#one
      let next = children[node]
      if (next === 0) {
        next = this.#end.length
        this.#zero.push(0)
        this.#one.push(0)
        this.#end.push(false)
        children[node] = next
      }
      node = next
    }
    this.#end[node] = true
  }

  /** Whether some prefix in the set covers the address. */
  has (words: number[], length: number): boolean {
    let node = 0
    for (let i = 0; ; i++) {
      if (this.#end[node]) return true
      if (i === length) return false
      node = (bitAt(words, i) === 0 ? this.#zero : this.#one)[node]
      if (node === 0) return false
    }
  }
}

/** One family's allow and deny tries. */
class Family {
  readonly allow = new PrefixTrie()
  readonly deny = new PrefixTrie()
}

export class AccessList {
  readonly #v4 = new Family()
  readonly #v6 = new Family()
  readonly #hasAllow: boolean
  readonly allowCount: number
  readonly denyCount: number

  constructor (rules: Iterable<AccessRule>) {
    let allow = 0
    let deny = 0
    for (const { action, range } of rules) {
      const family = range.v6 ? this.#v6 : this.#v4
      if (action === 'allow') {
        family.allow.add(range.words, range.bits)
        allow++
      } else {
        family.deny.add(range.words, range.bits)
        deny++
      }
    }
    this.#hasAllow = allow > 0
    this.allowCount = allow
    this.denyCount = deny
  }

  get empty (): boolean { return !this.#hasAllow && this.denyCount === 0 }

  /** Whether a client at this address may connect. */
  accepts (address: Address): boolean {
    const family = address.v6 ? this.#v6 : this.#v4
    const length = address.v6 ? 128 : 32
    if (family.deny.has(address.words, length)) return false
    return !this.#hasAllow || family.allow.has(address.words, length)
  }
}

/**
 * The text of an access file → rules. Throws an Error naming the first bad line (1-based) and
 * what is wrong with it.
 */
export function parseAccessFile (text: string): AccessRule[] {
  const rules: AccessRule[] = []
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const hash = lines[i].indexOf('#')
    const line = (hash === -1 ? lines[i] : lines[i].slice(0, hash)).trim()
    if (line === '') continue
    const fields = line.split(/\s+/)
    const action = fields[0].toLowerCase()
    if ((action !== 'allow' && action !== 'deny') || fields.length !== 2) {
      throw new AccessFileError(i + 1, `"${line}" is not "allow CIDR" or "deny CIDR"`)
    }
    const range = parseCidr(fields[1])
    if (typeof range === 'string') throw new AccessFileError(i + 1, range)
    rules.push({ action, range })
  }
  return rules
}

export class AccessFileError extends Error {
  readonly line: number
  constructor (line: number, reason: string) {
    super(`line ${line}: ${reason}`)
    this.line = line
  }
}

/** What tells that a file changed without reading it. */
function stamp (stats: Stats): string {
  return `${stats.mtimeMs}:${stats.ctimeMs}:${stats.size}:${stats.ino}`
}

export interface AccessHooks {
  /** The file changed and was loaded. */
  onReload (list: AccessList): void
  /** The file changed but could not be used: the previous lists stay. */
  onReloadError (err: Error): void
}

/**
 * The lists in force: the rules given inline, plus those of the file, re-read when it changes
 * (checked every `interval` ms on an unref'd timer).
 */
export class AccessControl {
  list: AccessList
  readonly #inline: readonly AccessRule[]
  readonly #file: string | null
  readonly #hooks: AccessHooks
  #stamp = ''
  #timer: NodeJS.Timeout | null = null
  #checking = false

  /** Loads the file now: a file that cannot be read or parsed throws, naming it and the line. */
  constructor (inline: readonly AccessRule[], file: string | null, interval: number, hooks: AccessHooks) {
    this.#inline = inline
    this.#file = file
    this.#hooks = hooks
    let fileRules: AccessRule[] = []
    if (file !== null) {
      try {
        this.#stamp = stamp(statSync(file))
        const text = readFileSync(file, 'utf8')
        fileRules = parseAccessFile(text)
      } catch (err) {
        const reason = err instanceof AccessFileError ? err.message : `cannot read it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`
        throw new TypeError(`option access.file: "${file}" ${reason}`)
      }
      this.#timer = setInterval(() => this.#check(), interval)
      this.#timer.unref()
    }
    this.list = new AccessList([...inline, ...fileRules])
  }

  #check (): void {
    if (this.#checking || this.#file === null) return
    this.#checking = true
    const file = this.#file
    stat(file, (err, stats) => {
      this.#checking = false
      if (this.#timer === null) return
      if (err !== null) {
        const next = 'missing:' + (err.code ?? '')
        if (next !== this.#stamp) this.#hooks.onReloadError(new Error(`"${file}": ${err.code ?? err.message}`))
        this.#stamp = next
        return
      }
      const next = stamp(stats)
      if (next === this.#stamp) return
      this.#stamp = next
      this.#reload(file)
    })
  }

  #reload (file: string): void {
    let rules: AccessRule[]
    try {
      rules = parseAccessFile(readFileSync(file, 'utf8'))
    } catch (err) {
      const reason = err instanceof AccessFileError ? err.message : `cannot read it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`
      this.#hooks.onReloadError(new Error(`"${file}" ${reason}`))
      return
    }
    this.list = new AccessList([...this.#inline, ...rules])
    this.#hooks.onReload(this.list)
  }

  close (): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }
}
