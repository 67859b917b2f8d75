/**
 * The cache's disk store: every entry the memory store keeps is also written to a directory, so
 * that the cache survives a restart. Writes are asynchronous (fs.promises: libuv's thread pool,
 * never the event loop), to a temporary name renamed into place once whole; an entry dropped from
 * memory is unlinked, so the directory stays within the memory store's bound.
 *
 * Each file is a header line, a JSON description, then the body; the description holds the body's
 * length and SHA-256. At startup the directory is read back (asynchronously): a file that does not
 * parse, whose body is short or long, or whose hash differs (a torn write, a full disk, bit rot),
 * and every leftover temporary file, is deleted and never served.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { isFieldValue, isToken } from '../http/headers.js'
import { CacheEntry, type MemoryStore } from './cache-store.js'

const MAGIC = 'RP4CACHE1\n'

interface Description {
  primary: string
  secondary: string
  varyFields: string[]
  status: number
  reason: string
  headers: string[]
  requestTime: number
  responseTime: number
  length: number
  sha256: string
}

export class DiskStore {
  readonly dir: string
  readonly #memory: MemoryStore
  /** Entries loaded and dropped at the last load: what a spec and an operator can check. */
  loaded = 0
  dropped = 0
  /** Entries read back from the directory (not written again). */
  readonly fromDisk = new WeakSet<CacheEntry>()
  readonly ready: Promise<void>
  /** The directory has been read back. */
  loading = true

  constructor (dir: string, memory: MemoryStore) {
    this.dir = dir
    this.#memory = memory
    // once, at configuration time: the directory must exist before the first write
    mkdirSync(dir, { recursive: true })
    this.ready = this.#load().finally(() => { this.loading = false })
  }

  /** A complete entry: written under its key's name, replacing any older one. */
  write (entry: CacheEntry): void {
    const body = Buffer.concat(entry.chunks)
    const description: Description = {
      primary: entry.primary,
      secondary: entry.secondary,
      varyFields: [...entry.varyFields],
      status: entry.status,
      reason: entry.reason,
      headers: entry.headers,
      requestTime: entry.requestTime,
      responseTime: entry.responseTime,
      length: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
    }
    const json = JSON.stringify(description)
    const file = this.#fileOf(entry.key)
    const temporary = file + '.' + randomBytes(6).toString('hex') + '.tmp'
    writeFile(temporary, Buffer.concat([Buffer.from(MAGIC + json.length + '\n' + json + '\n'), body]))
      .then(async () => await rename(temporary, file))
      .catch(async () => await unlink(temporary).catch(() => {}))
  }

  /** The entry left memory (evicted, invalidated, purged): its file goes too. */
  remove (entry: CacheEntry): void {
    unlink(this.#fileOf(entry.key)).catch(() => {})
  }

  #fileOf (key: string): string {
    return path.join(this.dir, createHash('sha256').update(key).digest('hex') + '.entry')
  }

  async #load (): Promise<void> {
    let names: string[]
    try {
      names = await readdir(this.dir)
    } catch {
      return
    }
    for (const name of names) {
      const file = path.join(this.dir, name)
      if (name.endsWith('.tmp')) {
        await unlink(file).catch(() => {})
        this.dropped++
        continue
      }
      if (!name.endsWith('.entry')) continue
      const entry = await readEntry(file)
      if (entry === null) {
        await unlink(file).catch(() => {})
        this.dropped++
        continue
      }
      // a response stored since the start (or a newer variant) wins over the one on disk
      if (this.#memory.get(entry.primary, entry.secondary) !== undefined) continue
      this.fromDisk.add(entry)
      this.#memory.set(entry)
      this.loaded++
    }
  }
}

/** The entry in `file`, or null when it is not whole and exactly as written. */
async function readEntry (file: string): Promise<CacheEntry | null> {
  let data: Buffer
  try {
    data = await readFile(file)
  } catch {
    return null
  }
  if (data.subarray(0, MAGIC.length).toString('latin1') !== MAGIC) return null
  const lineEnd = data.indexOf(10, MAGIC.length)
  if (lineEnd === -1) return null
  const jsonLength = Number(data.subarray(MAGIC.length, lineEnd).toString('latin1'))
  if (!Number.isSafeInteger(jsonLength) || jsonLength <= 0) return null
  const jsonStart = lineEnd + 1
  if (data.length < jsonStart + jsonLength + 1 || data[jsonStart + jsonLength] !== 10) return null
  let d: Description
  try {
    d = JSON.parse(data.subarray(jsonStart, jsonStart + jsonLength).toString()) as Description
  } catch {
    return null
  }
  const body = data.subarray(jsonStart + jsonLength + 1)
  if (typeof d !== 'object' || d === null || body.length !== d.length || createHash('sha256').update(body).digest('hex') !== d.sha256) return null
  if (typeof d.primary !== 'string' || typeof d.secondary !== 'string' || !Array.isArray(d.varyFields) || !Array.isArray(d.headers) ||
    !Number.isInteger(d.status) || typeof d.reason !== 'string' || !Number.isFinite(d.requestTime) || !Number.isFinite(d.responseTime)) return null
  // hits answer with the stored fields as they are (not checked again per hit): a file that was
  // tampered with must not put a CR or LF into a response
  if (d.status < 100 || d.status > 999 || !isFieldValue(d.reason) || !wellFormed(d.headers)) return null
  const entry = new CacheEntry(d.primary, d.secondary, d.varyFields, d.status, d.reason, d.headers, d.requestTime, d.responseTime)
  if (body.length > 0) entry.append(Buffer.from(body))
  entry.finish()
  return entry
}

/** A flat `[name, value, …]` list of strings whose names are tokens and values field values. */
function wellFormed (fields: unknown[]): fields is string[] {
  if (fields.length % 2 !== 0) return false
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]
    const value = fields[i + 1]
    if (typeof name !== 'string' || typeof value !== 'string' || !isToken(name) || !isFieldValue(value)) return false
  }
  return true
}
