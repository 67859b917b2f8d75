/**
 * The cache's memory store: entries (a stored response: status, headers, body pieces) in an LRU
 * bounded by bytes (lru-cache), and per URI the Vary fields of its latest response and the keys
 * of its variants (RFC 9111 §4.1), so that a URI is invalidated or purged with all its variants.
 *
 * An entry is readable while it is being filled (request coalescing streams it to every waiter as
 * it arrives); it enters the LRU only once complete, so a half-received response is never served
 * from the store.
 */
import { Readable } from 'node:stream'
import { LRUCache } from 'lru-cache'
import { ageFrom, correctedInitialAge, freshnessLifetime, responseFacts, type ResponseFacts } from '../http/cache-control.js'
import { validatorsOf, type Validators } from '../http/conditional.js'
import { FieldBlock, HeaderList } from '../http/headers.js'
import { keptWholeCost } from '../http1/encode.js'

const EMPTY = Buffer.alloc(0)

/** A URI's variants: the Vary fields of its latest response, the keys stored, and the key of its only variant when it has no Vary. */
interface UriRecord {
  readonly fields: readonly string[]
  readonly keys: Set<string>
  readonly plainKey: string
}

/** What of an entry's age and lifetime does not change from hit to hit, seconds. */
interface Freshness {
  readonly lifetime: number
  readonly initialAge: number
}

export class CacheEntry {
  readonly primary: string
  /** The Vary fields' values of the request that produced it, joined. */
  readonly secondary: string
  readonly varyFields: readonly string[]
  status: number
  reason: string
  #headers: string[]
  #block: FieldBlock | null = null
  /** What every hit needs of the stored head, worked out once per head (see `headers`). */
  #facts: ResponseFacts | null = null
  #fresh: Freshness | null = null
  #validators: Validators | null = null
  readonly chunks: Buffer[] = []
  length = 0
  /** The length the backend declared (Content-Length), -1 when it did not: a range of an entry still filling is served against it. */
  expected = -1
  complete = false
  failed = false
  #requestTime: number
  #responseTime: number
  readonly #readers = new Set<EntryReader>()

  constructor (primary: string, secondary: string, varyFields: readonly string[], status: number, reason: string, headers: string[], requestTime: number, responseTime: number) {
    this.primary = primary
    this.secondary = secondary
    this.varyFields = varyFields
    this.status = status
    this.reason = reason
    this.#headers = headers
    this.#requestTime = requestTime
    this.#responseTime = responseTime
  }

  /** Stored header pairs (no framing, no hop-by-hop fields), flat [name, value, ...]; replaced whole (`revalidated`), never edited in place. */
  get headers (): string[] { return this.#headers }
  /** The stored fields as a block that every hit's head starts with (its encoded form kept across hits). */
  get block (): FieldBlock { return (this.#block ??= new FieldBlock(this.#headers)) }
  /** When the request that brought this response was sent, and when the response came (ms since the epoch). */
  get requestTime (): number { return this.#requestTime }
  get responseTime (): number { return this.#responseTime }

  /** A 304 brought `headers` (the stored ones updated, RFC 9111 §4.3.4) and new times: what was worked out from the old ones goes. */
  revalidated (headers: string[], requestTime: number, responseTime: number): void {
    this.#headers = headers
    this.#block = null
    this.#requestTime = requestTime
    this.#responseTime = responseTime
    this.#facts = null
    this.#fresh = null
    this.#validators = null
  }

  get key (): string { return this.primary + '\n' + this.secondary }
  /** A copy of the stored headers, to edit. */
  get headerList (): HeaderList { return new HeaderList([...this.#headers]) }

  /** The stored head's Cache-Control and the rest freshness is computed from. */
  get facts (): ResponseFacts { return (this.#facts ??= responseFacts(this.status, this.headerList)) }

  /** RFC 9111 §4.2.1's freshness lifetime, seconds. */
  get lifetime (): number { return this.#freshness().lifetime }

  /** RFC 9111 §4.2.3's current age at `now` (ms), seconds. */
  ageAt (now: number): number { return ageFrom(this.#freshness().initialAge, this.#responseTime, now) }

  /**
   * What of the age and lifetime does not change from hit to hit (the Date, Expires and
   * Last-Modified dates parsed, Age read), worked out once per stored head and times.
   */
  #freshness (): Freshness {
    if (this.#fresh === null) {
      const facts = this.facts
      this.#fresh = { lifetime: freshnessLifetime(facts, this.#responseTime), initialAge: correctedInitialAge(facts, this.#requestTime, this.#responseTime) }
    }
    return this.#fresh
  }

  /** The stored ETag and Last-Modified, for the client's conditionals. */
  get validators (): Validators {
    this.#validators ??= validatorsOf(new HeaderList(this.#headers))
    return this.#validators
  }

  /**
   * The whole body as one buffer, for a complete entry: every hit then writes it as it is, in
   * one write, without a stream. The pieces are joined once (on the first hit; a piece that is
   * a small view of a larger read buffer is copied out, so that the entry does not keep the
   * rest alive). Null while a coalesced reader still walks the pieces.
   */
  whole (): Buffer | null {
    if (!this.complete) return null
    const chunks = this.chunks
    if (chunks.length === 0) return EMPTY
    if (chunks.length === 1 && chunks[0].length * 2 >= chunks[0].buffer.byteLength) return chunks[0]
    if (this.#readers.size > 0) return null
    const joined = Buffer.allocUnsafeSlow(this.length)
    let offset = 0
    for (let i = 0; i < chunks.length; i++) offset += chunks[i].copy(joined, offset)
    chunks.length = 0
    chunks.push(joined)
    return joined
  }
  get size (): number {
    let fields = 0
    for (const h of this.#headers) fields += h.length
    // a small body is also kept joined to its head once it is served again and again (http1/encode.ts)
    return 256 + this.length + fields + keptWholeCost(this.length, fields)
  }

  append (chunk: Buffer): void {
    this.chunks.push(chunk)
    this.length += chunk.length
    for (const reader of this.#readers) reader.wake()
  }

  finish (): void {
    this.complete = true
    for (const reader of this.#readers) reader.wake()
  }

  fail (): void {
    if (this.complete) return
    this.failed = true
    for (const reader of this.#readers) reader.wake()
  }

  /** Bytes `start` to `end` (inclusive; -1: to the end, whenever that comes), streamed as they arrive. */
  read (start = 0, end = -1): Readable {
    const reader = new EntryReader(this, start, end)
    this.#readers.add(reader)
    return reader
  }

  /** @internal */ forget (reader: EntryReader): void { this.#readers.delete(reader) }

  /** Requests streaming from it as it fills. */
  get readers (): number { return this.#readers.size }
}

class EntryReader extends Readable {
  readonly #entry: CacheEntry
  /** Next byte to send, and the last one wanted (-1: all). */
  #position: number
  readonly #end: number
  #chunk = 0
  #offset = 0
  #waiting = false

  constructor (entry: CacheEntry, start: number, end: number) {
    super({ highWaterMark: 64 * 1024 })
    this.#entry = entry
    this.#position = start
    this.#end = end
    // the piece holding `start` is found as pieces are read: it may not have arrived yet
    this.#offset = start
  }

  override _read (): void {
    this.#waiting = false
    const entry = this.#entry
    for (;;) {
      if (this.#end !== -1 && this.#position > this.#end) return this.#done()
      if (this.#chunk >= entry.chunks.length) {
        if (entry.failed) {
          entry.forget(this)
          this.destroy(new Error('the response being cached was cut short'))
          return
        }
        if (entry.complete) return this.#done()
        this.#waiting = true
        return
      }
      const piece = entry.chunks[this.#chunk]
      if (this.#offset >= piece.length) {
        // wholly before `start`
        this.#offset -= piece.length
        this.#chunk++
        continue
      }
      let slice = piece.subarray(this.#offset)
      if (this.#end !== -1 && slice.length > this.#end - this.#position + 1) slice = slice.subarray(0, this.#end - this.#position + 1)
      this.#chunk++
      this.#offset = 0
      this.#position += slice.length
      if (!this.push(slice)) return
    }
  }

  wake (): void {
    if (this.#waiting) this._read()
  }

  #done (): void {
    this.#entry.forget(this)
    this.push(null)
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    this.#entry.forget(this)
    callback(err)
  }
}

export class MemoryStore {
  readonly #lru: LRUCache<string, CacheEntry>
  /** Told of every entry stored, and of every one that leaves (the disk store follows). */
  onStored: ((entry: CacheEntry) => void) | null = null
  onDropped: ((entry: CacheEntry) => void) | null = null
  /** Per URI: the Vary fields of its latest stored response, and its variants' keys. */
  readonly #uris = new Map<string, UriRecord>()

  /**
   * @param maxSize the bound on every entry's `size` together. The largest response stored is the
   * cache filter's to enforce, on the body (`maxEntrySize`, a length the user gives): an entry
   * accepted there counts here with what comes with it (its fields, a kept joined copy).
   */
  constructor (maxSize: number) {
    this.#lru = new LRUCache<string, CacheEntry>({
      maxSize,
      sizeCalculation: entry => entry.size,
      dispose: (entry, key, reason) => {
        // replaced by a newer response for the same key: the key stays
        if (reason === 'set') return
        this.onDropped?.(entry)
        const uri = this.#uris.get(entry.primary)
        if (uri === undefined) return
        uri.keys.delete(key)
        if (uri.keys.size === 0) this.#uris.delete(entry.primary)
      },
    })
  }

  get bytes (): number { return this.#lru.calculatedSize }
  get count (): number { return this.#lru.size }

  /**
   * The entry for `primary` and the request's values of its Vary fields (read only when the URI
   * has some): one lookup by URI, then the entry's key, kept with the URI when there
   * is no Vary rather than joined again on every hit.
   */
  find (primary: string, request: HeaderList): CacheEntry | undefined {
    const uri = this.#uris.get(primary)
    if (uri === undefined) return undefined
    return this.#lru.get(uri.fields.length === 0 ? uri.plainKey : primary + '\n' + secondaryKey(request, uri.fields))
  }

  get (primary: string, secondary: string): CacheEntry | undefined {
    return this.#lru.get(primary + '\n' + secondary)
  }

  set (entry: CacheEntry): void {
    const key = entry.key
    let uri = this.#uris.get(entry.primary)
    if (uri === undefined || uri.fields.join(',') !== entry.varyFields.join(',')) {
      // the URI's Vary changed: the variants stored under the old fields are unreachable
      if (uri !== undefined) this.delete(entry.primary)
      uri = { fields: entry.varyFields, keys: new Set(), plainKey: entry.primary + '\n' }
      this.#uris.set(entry.primary, uri)
    }
    uri.keys.add(key)
    this.#lru.set(key, entry)
    // too large for the store: lru-cache refused it
    if (!this.#lru.has(key)) uri.keys.delete(key)
    else this.onStored?.(entry)
  }

  /** Every variant of `primary`; how many were removed. */
  delete (primary: string): number {
    const uri = this.#uris.get(primary)
    if (uri === undefined) return 0
    this.#uris.delete(primary)
    let n = 0
    for (const key of uri.keys) if (this.#lru.delete(key)) n++
    return n
  }

  /** Every URI starting with `prefix`; how many entries were removed. */
  deletePrefix (prefix: string): number {
    let n = 0
    for (const primary of [...this.#uris.keys()]) if (primary.startsWith(prefix)) n += this.delete(primary)
    return n
  }
}

/** §4.1: the request's values of the Vary fields, normalized (whitespace around commas, repeated fields joined). */
export function secondaryKey (headers: HeaderList, fields: readonly string[]): string {
  if (fields.length === 0) return ''
  return fields.map(name => headers.getAll(name).map(v => v.trim()).join(',').replace(/\s*,\s*/g, ',')).join('\n')
}
