/**
 * An ordered list of header fields as they cross rp4: names keep the sender's case and order,
 * repeated fields stay separate. Backed by the flat `[name, value, name, value, …]` array the
 * parser produces, without a copy; lookups compare lengths first and then characters in any case
 * (no lowercased copies), so a lookup of a header that is absent costs a pass of integer compares.
 */
/**
 * `name` is `lower` in any case, without allocating: `lower` is a lowercase header name (token
 * characters). A character matches itself or, for a letter, its uppercase form.
 */
export function isName (name: string, lower: string): boolean {
  const length = lower.length
  if (name.length !== length) return false
  for (let i = 0; i < length; i++) {
    const c = name.charCodeAt(i)
    const l = lower.charCodeAt(i)
    if (c !== l && (l < 0x61 || l > 0x7a || c !== l - 0x20)) return false
  }
  return true
}

export class HeaderList {
  /** Flat `[name, value, …]`: read it directly on hot paths; change it through the methods. */
  readonly raw: string[]
  /** The block this list was started from (its first fields were the block's), or null. */
  readonly block: FieldBlock | null

  constructor (raw: string[] = [], block: FieldBlock | null = null) {
    this.raw = raw
    this.block = block
  }

  /** Number of fields. */
  get size (): number { return this.raw.length >> 1 }

  nameAt (index: number): string { return this.raw[index << 1] }
  valueAt (index: number): string { return this.raw[(index << 1) + 1] }

  /** Position of the first field named `name` (case-insensitive) at or after `from`, or -1. */
  indexOf (name: string, from = 0): number {
    const raw = this.raw
    const length = name.length
    let lower: string | null = null
    for (let i = from << 1; i < raw.length; i += 2) {
      const candidate = raw[i]
      if (candidate.length !== length) continue
      if (candidate === name) return i >> 1
      lower ??= name.toLowerCase()
      if (isName(candidate, lower)) return i >> 1
    }
    return -1
  }

  has (name: string): boolean { return this.indexOf(name) !== -1 }

  /** The first value of `name`, or undefined. */
  get (name: string): string | undefined {
    const at = this.indexOf(name)
    return at === -1 ? undefined : this.raw[(at << 1) + 1]
  }

  /** Every value of `name`, in order. */
  getAll (name: string): string[] {
    const out: string[] = []
    for (let at = this.indexOf(name); at !== -1; at = this.indexOf(name, at + 1)) out.push(this.raw[(at << 1) + 1])
    return out
  }

  /** Add a field at the end, beside any of the same name. */
  append (name: string, value: string): void {
    checkField(name, value)
    this.raw.push(name, value)
  }

  /**
   * One field `name: value`: the first existing one takes the value (keeping its place and its
   * name's case), later ones go; absent, it is appended.
   */
  set (name: string, value: string, from = 0): void {
    checkField(name, value)
    const at = this.indexOf(name, from)
    if (at === -1) {
      this.raw.push(name, value)
      return
    }
    this.raw[(at << 1) + 1] = value
    this.#removeFrom(name, at + 1)
  }

  /** Remove every field named `name` (at or after `from`); returns how many there were. */
  delete (name: string, from = 0): number {
    return this.#removeFrom(name, from)
  }

  /** Remove the field at `index`. */
  deleteAt (index: number): void {
    this.raw.splice(index << 1, 2)
  }

  #removeFrom (name: string, from: number): number {
    let removed = 0
    for (let at = this.indexOf(name, from); at !== -1; at = this.indexOf(name, at)) {
      this.raw.splice(at << 1, 2)
      removed++
    }
    return removed
  }

  /** `[name, value]` pairs, for code that prefers iteration to indexes. */
  * entries (): IterableIterator<[string, string]> {
    const raw = this.raw
    for (let i = 0; i < raw.length; i += 2) yield [raw[i], raw[i + 1]]
  }
}

/**
 * A field list made once and sent many times (a static file's fields, a stored response's): rp4
 * checked its fields when they were made. A HeaderList started from it (`list()`, or a copy of
 * `fields` given with the block) holds these very strings first. While they are still there, in
 * order (`covers` compares them one by one, so a change made through a method or through `raw` is
 * seen), an encoder may write the form it keeps for them (`encoded`) instead of encoding them
 * again; a response whose filters changed any of them is encoded field by field, as any other.
 */
export class FieldBlock {
  readonly fields: readonly string[]
  /** A Transfer-Encoding or Content-Length field is among them: framing reads them one by one. */
  readonly framing: boolean
  /** What an encoder keeps for this block (http1/encode.ts: its field lines, the last whole head made with them); null until one needs it. */
  encoded: unknown = null

  /** @param fields flat `[name, value, …]`, checked already (HeaderList's checks, or a parsed message's) */
  constructor (fields: readonly string[]) {
    this.fields = fields
    let framing = false
    for (let i = 0; i < fields.length; i += 2) {
      if (isName(fields[i], 'transfer-encoding') || isName(fields[i], 'content-length')) framing = true
    }
    this.framing = framing
  }

  /** A list of its own, starting with this block's fields. */
  list (): HeaderList {
    return new HeaderList(this.fields.slice(), this)
  }

  /** `raw` begins with this block's fields, unchanged. */
  covers (raw: readonly string[]): boolean {
    const fields = this.fields
    const length = fields.length
    if (raw.length < length) return false
    for (let i = 0; i < length; i++) if (raw[i] !== fields[i]) return false
    return true
  }
}

/**
 * What a filter adds must be a field as RFC 9110 allows it: a CR or LF in a value would end the
 * head early and smuggle the rest in as another request or response.
 */
function checkField (name: string, value: string): void {
  if (!isToken(name)) throw new TypeError(`header name ${JSON.stringify(name)} is not a token`)
  if (!isFieldValue(value)) throw new TypeError(`header value for ${name} has a character no header may hold (CR, LF, NUL or another control)`)
}

/** Token characters (RFC 9110 5.6.2), by code. */
const TOKEN = new Uint8Array(128)
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TOKEN[c.charCodeAt(0)] = 1

/**
 * RFC 9110 5.1 field-name: a token. Read character by character: every response a filter or the
 * cache builds checks each of its fields, and a table lookup per character costs less than a
 * regular expression per field (spec/http/headers.ts holds both checks to the expressions).
 */
export function isToken (name: string): boolean {
  const length = name.length
  if (length === 0) return false
  for (let i = 0; i < length; i++) {
    const c = name.charCodeAt(i)
    if (c >= 128 || TOKEN[c] === 0) return false
  }
  return true
}

/**
 * RFC 9110 5.5 field-value: visible characters, spaces and tabs inside, obs-text allowed; no CR,
 * LF or NUL (tab, 0x20–0x7E and 0x80–0xFF), character by character.
 */
export function isFieldValue (value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x20 ? c !== 0x09 : c === 0x7f || c > 0xff) return false
  }
  return true
}
