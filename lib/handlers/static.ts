/**
 * Static files: a route action serving a directory (GET and HEAD), with ETag and Last-Modified,
 * conditional requests (http/conditional.ts), ranges (http/range.ts), precompressed siblings
 * (`FILE.br`, `FILE.gz`), index files, and an optional listing.
 *
 * Safe by construction: the request path is decoded segment by segment, and a segment that
 * decodes to anything but a plain name (`..`, `.`, a slash, a backslash, NUL, a control
 * character) refuses the request before the file system is asked; hidden names (a leading dot)
 * are refused unless allowed; the resolved real path must stay under the root's real path unless
 * symbolic links leaving it are allowed, and the final open does not follow a link it did not
 * check. Error details never reach the client.
 *
 * What was learned of a request path (the file it names, its validators, the headers of each
 * of its forms, the bytes of a small file) is kept for `revalidate` ms, like nginx's
 * open_file_cache: within that window a request costs no system call at all, and a small file
 * leaves with its head in one write. Past it, the next request asks the file system again (the
 * bytes kept are reused when the file is the same: inode, size and mtime), and the requests for
 * that path that come while it asks are answered from what was known rather than each asking
 * too. A file changed or removed is therefore seen at most `revalidate` (and one check) late; the
 * paths kept are bounded by `memoryCache` bytes (least recently used forgotten first).
 *
 * Larger bodies are streamed from shared, bounded descriptors (open-files.ts) with backpressure:
 * memory stays bounded whatever the file size and the client's speed.
 */
import { createReadStream, type Stats } from 'node:fs'
import { lstat, readdir, realpath, stat } from 'node:fs/promises'
import path from 'node:path'
import { Readable } from 'node:stream'
import { LRUCache } from 'lru-cache'
import { evaluatePreconditions, hasConditions, httpDate, ifRangeHolds, Precondition, type Validators } from '../http/conditional.js'
import { negotiateCoding, type Coding } from '../http/content-coding.js'
import { contentRange, multipart, parseRange, type ByteRange } from '../http/range.js'
import type { StaticModel } from '../model/model.js'
import { clock } from '../core/clock.js'
import { FieldBlock, HeaderList } from '../http/headers.js'
import { keptWholeCost } from '../http1/encode.js'
import type { LocalBody } from '../session/body.js'
import type { FilterSession, RouteHandler, Verdict } from '../session/filter.js'
import type { Session } from '../session/session.js'
import { FileReader, OpenFiles, readWhole, type FileIdentity, type OpenFile } from './open-files.js'

/** Why a path was refused before the file system was asked. */
const enum PathCheck { OK, HIDDEN, FORBIDDEN, BAD }

/** The part of a file read at a time for the parts of a multipart range. */
const READ_SIZE = 64 * 1024

/** What a kept path costs beside its bytes (the strings and header pairs), for the memory bound. */
const PATH_COST = 1024

const EMPTY = Buffer.alloc(0)

/** Bytes of paths remembered as naming nothing (a request path may be long: bounded by bytes, not count). */
const MISSING_BYTES = 1024 * 1024

/** The MIME table, loaded on the first file served: a process without static routes never pays for it. */
let mimeTable: Promise<typeof import('mime').default> | null = null

const TEXT_TYPES = /^(?:text\/|application\/(?:javascript|json|xml|x-javascript|ecmascript|manifest\+json|ld\+json)|image\/svg\+xml)/

type Pairs = ReadonlyArray<readonly [string, string]>

/** One form a file is served in: itself, or a precompressed sibling. */
interface Variant extends FileIdentity {
  /** The real path opened (the open follows no link). */
  readonly real: string
  readonly validators: Validators
  /** Headers of a 304 (no type or coding: RFC 9110 §15.4.5). */
  readonly notModified: Pairs
  /** Headers of a 200, Content-Length aside (the body sets it). */
  readonly ok: Pairs
  /** Headers of a HEAD: a 200's with its Content-Length. */
  readonly head: Pairs
  /** The same three as field blocks, checked once here: answered with a copy, not checked (nor encoded) per response. */
  readonly notModifiedFields: FieldBlock
  readonly okFields: FieldBlock
  readonly headFields: FieldBlock
  readonly type: string
  /** The whole file when it is small enough to be kept; null: read from the file for each response. */
  readonly body: Buffer | null
}

/** What a request path resolved to: a file, in its forms. */
interface Resolved {
  /** When the file system was last asked (`clock`'s scale: `performance.now()`). */
  checkedAt: number
  readonly plain: Variant
  readonly br: Variant | null
  readonly gzip: Variant | null
  /** The codings of the siblings present (empty: nothing to negotiate). */
  readonly codings: readonly Coding[]
  /** Its share of the memory bound. */
  readonly bytes: number
  /** The file system is being asked about it again (past the window): requests meanwhile are answered from this. */
  revalidating: boolean
}

export class StaticFiles implements RouteHandler {
  readonly name = 'static'
  readonly #model: StaticModel
  readonly #files: OpenFiles
  readonly #paths: LRUCache<string, Resolved>
  /** Paths that named nothing to serve, with when that was seen. */
  readonly #missing: LRUCache<string, number>
  readonly #revalidate: number
  readonly #memoryFileSize: number
  #realRoot: Promise<string> | null = null

  constructor (model: StaticModel) {
    this.#model = model
    this.#files = new OpenFiles(model.maxOpenFiles)
    this.#paths = new LRUCache<string, Resolved>({ maxSize: model.memoryCache, sizeCalculation: resolved => resolved.bytes })
    this.#missing = new LRUCache<string, number>({ maxSize: MISSING_BYTES, sizeCalculation: (_at, key) => 64 + key.length * 2 })
    this.#revalidate = model.revalidate
    // a file that would fill much of the bound is streamed: kept, it would push out the rest
    this.#memoryFileSize = Math.min(model.memoryFileSize, Math.floor(model.memoryCache / 8))
  }

  get openFiles (): number { return this.#files.openCount }

  close (): void {
    this.#paths.clear()
    this.#missing.clear()
    this.#files.closeIdle()
  }

  handle (session: FilterSession): Verdict | Promise<Verdict> {
    const method = session.request.method
    if (method !== 'GET' && method !== 'HEAD') {
      if (this.#model.fallback !== null) return 'continue'
      return session.respond(405, [['Allow', 'GET, HEAD'], ['Content-Type', 'text/plain; charset=utf-8']], 'Method Not Allowed\n')
    }
    const key = session.request.path
    const known = this.#paths.get(key)
    // only a path that passed every check below and named a file is kept: no need to check it again
    // the reading taken when this request's bytes were read (core/clock.ts): the window is ms wide
    const now = clock.turn()
    if (known !== undefined && (now - known.checkedAt < this.#revalidate || (known.revalidating && this.#revalidate > 0))) return this.#answer(session, known)
    // nothing there a moment ago: the fallback (or 404) without a trip to the file system, so that a
    // route of files in front of an application does not slow the application's requests
    const missed = known === undefined ? this.#missing.get(key) : undefined
    if (missed !== undefined && now - missed < this.#revalidate) return 'continue'
    const segments: string[] = []
    const check = splitPath(key, segments, this.#model.hidden)
    if (check === PathCheck.BAD) return session.respond(400, [['Content-Type', 'text/plain; charset=utf-8']], 'Bad Request\n')
    if (check === PathCheck.FORBIDDEN) return session.respond(403, [['Content-Type', 'text/plain; charset=utf-8']], 'Forbidden\n')
    if (check === PathCheck.HIDDEN) {
      // a hidden name may be the backend's (`/.well-known/`): it decides; never the file system
      if (this.#model.fallback !== null) return 'continue'
      return session.respond(404, [['Content-Type', 'text/plain; charset=utf-8']], 'Not Found\n')
    }
    const serving = this.#serve(session, key, segments, known ?? null)
    if (known === undefined) return serving.catch(err => this.#failed(session, key, err))
    // one check at a time per path: the requests that come while it runs get what was known
    known.revalidating = true
    return serving.then(verdict => {
      known.revalidating = false
      return verdict
    }, err => {
      known.revalidating = false
      return this.#failed(session, key, err)
    })
  }

  async #serve (session: FilterSession, key: string, segments: string[], previous: Resolved | null): Promise<Verdict> {
    const checkedAt = clock.refresh()
    const root = await (this.#realRoot ??= realpath(this.#model.root))
    let file = path.join(root, ...segments)
    let info = await this.#statInside(root, file)
    if (info === null) return this.#gone(key, checkedAt)
    const request = session.request
    if (info.stats.isDirectory()) {
      const rawPath = request.path
      if (!rawPath.endsWith('/')) {
        this.#paths.delete(key)
        // relative links in the index file resolve against the directory only with its slash
        const location = rawPath + '/' + request.query
        return session.respond(301, [['Location', location], ['Content-Type', 'text/plain; charset=utf-8']], 'Moved Permanently\n')
      }
      let index: { real: string, stats: Stats } | null = null
      for (const name of this.#model.index) {
        index = await this.#statInside(root, path.join(file, name))
        if (index !== null && index.stats.isFile()) {
          file = path.join(file, name)
          break
        }
        index = null
      }
      if (index === null) {
        if (this.#model.listing) {
          this.#paths.delete(key)
          return await this.#listing(session, info.real)
        }
        return this.#gone(key, checkedAt)
      }
      info = index
    }
    if (!info.stats.isFile()) return this.#gone(key, checkedAt)
    const resolved = await this.#resolve(file, info.real, info.stats, checkedAt, previous)
    this.#missing.delete(key)
    this.#paths.set(key, resolved)
    return await this.#answer(session, resolved)
  }

  /** Nothing to serve at `key` (as of `checkedAt`): remembered for the window, in a list of its own, so that a flood of random paths never pushes files out. */
  #gone (key: string, checkedAt: number): Verdict {
    this.#paths.delete(key)
    if (this.#revalidate > 0) this.#missing.set(key, checkedAt)
    return 'continue'
  }

  /** `stat` of `file` if it exists and its real path stays under the root (or links may leave it); null otherwise. */
  async #statInside (root: string, file: string): Promise<{ real: string, stats: Stats } | null> {
    let real: string
    try {
      real = await realpath(file)
    } catch (err) {
      if (isMissing(err)) return null
      throw err
    }
    if (!this.#model.followSymlinks && real !== root && !real.startsWith(root + path.sep)) return null
    const stats = await stat(real)
    return { real, stats }
  }

  /** A file and its precompressed siblings, in the forms they are served in; the bytes kept before are reused for a form that did not change. */
  async #resolve (file: string, real: string, stats: Stats, checkedAt: number, previous: Resolved | null): Promise<Resolved> {
    const model = this.#model
    const type = contentType(await (mimeTable ??= import('mime').then(m => m.default)), file)
    let brStats: Stats | null = null
    let gzipStats: Stats | null = null
    if (model.precompressed) {
      brStats = await siblingOf(real, '.br')
      gzipStats = await siblingOf(real, '.gz')
    }
    const vary = brStats !== null || gzipStats !== null
    const plain = await this.#variant(real, stats, null, type, vary, previous?.plain ?? null)
    const br = brStats === null ? null : await this.#variant(real + '.br', brStats, 'br', type, vary, previous?.br ?? null)
    const gzip = gzipStats === null ? null : await this.#variant(real + '.gz', gzipStats, 'gzip', type, vary, previous?.gzip ?? null)
    const codings: Coding[] = []
    if (br !== null) codings.push('br')
    if (gzip !== null) codings.push('gzip')
    const bytes = PATH_COST + formCost(plain) + (br === null ? 0 : formCost(br)) + (gzip === null ? 0 : formCost(gzip))
    return { checkedAt, plain, br, gzip, codings, bytes, revalidating: false }
  }

  async #variant (real: string, stats: Stats, coding: Coding | null, type: string, vary: boolean, previous: Variant | null): Promise<Variant> {
    const model = this.#model
    const size = stats.size
    const etag = `"${Math.floor(stats.mtimeMs).toString(16)}-${size.toString(16)}${coding === null ? '' : '-' + coding}"`
    const validators: Validators = { etag, lastModified: Math.floor(stats.mtimeMs / 1000) * 1000 }
    const notModified: Array<[string, string]> = [
      ['ETag', etag],
      ['Last-Modified', httpDate(validators.lastModified)],
      ['Cache-Control', model.cacheControl],
      ['Accept-Ranges', 'bytes'],
    ]
    if (vary) notModified.push(['Vary', 'Accept-Encoding'])
    const ok: Array<[string, string]> = [...notModified, ['Content-Type', type]]
    if (coding !== null) ok.push(['Content-Encoding', coding])
    const head: Array<[string, string]> = [...ok, ['Content-Length', String(size)]]
    let body: Buffer | null = null
    if (size === 0) body = EMPTY
    else if (previous !== null && previous.body !== null && previous.real === real && sameFile(previous, stats)) body = previous.body
    else if (size <= this.#memoryFileSize) body = await readWhole(this.#files, real, stats)
    return { real, ino: stats.ino, size, mtimeMs: stats.mtimeMs, validators, notModified, ok, head, type, body, notModifiedFields: flatChecked(notModified), okFields: flatChecked(ok), headFields: flatChecked(head) }
  }

  /** Answer from what the path resolved to: the form the client takes, its conditionals and ranges. */
  #answer (session: FilterSession, resolved: Resolved): Verdict | Promise<Verdict> {
    const request = session.request
    let variant = resolved.plain
    if (resolved.codings.length > 0) {
      const coding = negotiateCoding(request.headers.getAll('accept-encoding').join(', ') || undefined, resolved.codings)
      if (coding === 'br') variant = resolved.br!
      else if (coding === 'gzip') variant = resolved.gzip!
    }
    // a plain request (no If-* field, no Range) is the representation in full
    const conditional = hasConditions(request.headers)
    const condition = conditional ? evaluatePreconditions(request.method, request.headers, variant.validators) : Precondition.PASS
    if (condition === Precondition.NOT_MODIFIED) return respondWith(session, 304, variant.notModifiedFields)
    if (condition === Precondition.FAILED) return session.respond(412, [['Content-Type', 'text/plain; charset=utf-8']], 'Precondition Failed\n')
    const size = variant.size
    let ranges: ByteRange[] | null = null
    const range = conditional ? request.headers.get('range') : undefined
    if (range !== undefined && request.method === 'GET') {
      const ifRange = request.headers.get('if-range')
      if (ifRange === undefined || ifRangeHolds(ifRange, variant.validators)) {
        const parsed = parseRange(range, size)
        if (parsed.kind === 'unsatisfiable') {
          return session.respond(416, [['Content-Range', `bytes */${size}`], ['Content-Type', 'text/plain; charset=utf-8']], 'Range Not Satisfiable\n')
        }
        if (parsed.kind === 'ranges') ranges = parsed.ranges
      }
    }
    if (request.method === 'HEAD') return respondWith(session, 200, variant.headFields)
    const body = variant.body
    if (body !== null) {
      if (ranges === null) return respondWith(session, 200, variant.okFields, body)
      if (ranges.length === 1) {
        const only = ranges[0]
        return session.respond(206, [...variant.ok, ['Content-Range', contentRange(only, size)]], body.subarray(only.start, only.end + 1))
      }
      const parts = multipart(ranges, size, variant.type, boundary())
      const pieces: Buffer[] = []
      for (let i = 0; i < ranges.length; i++) pieces.push(parts.heads[i], body.subarray(ranges[i].start, ranges[i].end + 1))
      pieces.push(parts.tail)
      return session.respond(206, withType(variant.ok, parts.contentType), Buffer.concat(pieces, parts.length))
    }
    return this.#fromFile(session, variant, ranges).catch(err => this.#failed(session, null, err))
  }

  async #fromFile (session: FilterSession, variant: Variant, ranges: readonly ByteRange[] | null): Promise<Verdict> {
    const size = variant.size
    // `real` is a real path: the open follows no link, so one swapped in since the check is refused (ELOOP)
    const open = await this.#files.acquire(variant.real, variant, false)
    if (ranges === null) {
      return session.respond(200, [...variant.ok, ['Content-Length', String(size)]], new FileReader(this.#files, open, 0, size - 1))
    }
    if (ranges.length === 1) {
      const only = ranges[0]
      return session.respond(206, [...variant.ok, ['Content-Range', contentRange(only, size)], ['Content-Length', String(only.end - only.start + 1)]], new FileReader(this.#files, open, only.start, only.end))
    }
    const parts = multipart(ranges, size, variant.type, boundary())
    const headers = withType(variant.ok, parts.contentType)
    headers.push(['Content-Length', String(parts.length)])
    return session.respond(206, headers, Readable.from(this.#parts(open, ranges, parts.heads, parts.tail), { objectMode: false }))
  }

  async * #parts (open: OpenFile, ranges: readonly ByteRange[], heads: readonly Buffer[], tail: Buffer): AsyncGenerator<Buffer> {
    try {
      for (let i = 0; i < ranges.length; i++) {
        yield heads[i]
        const stream = createReadStream('', { fd: open.fd, start: ranges[i].start, end: ranges[i].end, autoClose: false, highWaterMark: READ_SIZE })
        for await (const chunk of stream) yield chunk as Buffer
      }
      yield tail
    } finally {
      this.#files.release(open)
    }
  }

  async #listing (session: FilterSession, dir: string): Promise<Verdict> {
    const entries = await readdir(dir, { withFileTypes: true })
    const names = entries
      .filter(e => this.#model.hidden || !e.name.startsWith('.'))
      .map(e => e.isDirectory() ? e.name + '/' : e.name)
      .sort()
    const title = escapeHtml(decodeForTitle(session.request.path))
    const items = names.map(name => `<li><a href="${escapeHtml(encodeURIComponent(name.endsWith('/') ? name.slice(0, -1) : name) + (name.endsWith('/') ? '/' : ''))}">${escapeHtml(name)}</a></li>`).join('\n')
    const body = `<!doctype html>\n<html><head><meta charset="utf-8"><title>Index of ${title}</title></head>\n<body><h1>Index of ${title}</h1>\n<ul>\n${items}\n</ul></body></html>\n`
    return session.respond(200, [['Content-Type', 'text/html; charset=utf-8'], ['Cache-Control', 'no-cache']], body)
  }

  #failed (session: FilterSession, key: string | null, err: unknown): Verdict {
    // whatever failed, the path is asked again next time
    if (key !== null) {
      this.#paths.delete(key)
      this.#missing.delete(key)
    }
    const code = (err as NodeJS.ErrnoException)?.code
    if (isMissing(err)) return 'continue'
    if (code === 'EACCES' || code === 'EPERM' || code === 'ELOOP') return session.respond(403, [['Content-Type', 'text/plain; charset=utf-8']], 'Forbidden\n')
    // the details stay here: they name paths of the server
    throw err
  }
}

/** A form's share of the memory bound: its kept bytes, and the copy joined to its head once it is served again and again (http1/encode.ts). */
function formCost (variant: Variant): number {
  if (variant.body === null) return 0
  let fields = 0
  for (const field of variant.okFields.fields) fields += field.length
  return variant.body.length + keptWholeCost(variant.body.length, fields)
}

function sameFile (a: FileIdentity, b: FileIdentity): boolean {
  return a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs
}

async function siblingOf (real: string, ext: string): Promise<Stats | null> {
  try {
    const stats = await lstat(real + ext)
    // a sibling is a plain file beside the original: a link there is not followed
    return stats.isFile() ? stats : null
  } catch {
    return null
  }
}

function withType (headers: Pairs, type: string): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const pair of headers) if (pair[0] !== 'Content-Type') out.push([pair[0], pair[1]])
  out.push(['Content-Type', type])
  return out
}

function boundary (): string {
  return 'rp4-' + Math.random().toString(36).slice(2, 14) + Date.now().toString(36)
}

function isMissing (err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG'
}

/**
 * The request path as file names: each segment percent-decoded on its own, so that `%2F` can
 * never become a separator. Refused: malformed encoding (BAD), and any segment that is `.`, `..`,
 * holds a slash, a backslash, NUL or a control character, or is hidden when hidden files are not
 * served (FORBIDDEN).
 */
function splitPath (rawPath: string, out: string[], hidden: boolean): PathCheck {
  if (!rawPath.startsWith('/')) return PathCheck.BAD
  const parts = rawPath.split('/')
  for (let i = 1; i < parts.length; i++) {
    const part = parts[i]
    if (part === '') continue
    let name: string
    try {
      name = decodeURIComponent(part)
    } catch {
      return PathCheck.BAD
    }
    if (name === '.' || name === '..') return PathCheck.FORBIDDEN
    // eslint-disable-next-line no-control-regex
    if (/[/\\\x00-\x1f\x7f]/.test(name)) return PathCheck.FORBIDDEN
    if (!hidden && name.startsWith('.')) return PathCheck.HIDDEN
    out.push(name)
  }
  return PathCheck.OK
}

function contentType (mime: typeof import('mime').default, file: string): string {
  const type = mime.getType(file)
  if (type === null) return 'application/octet-stream'
  return TEXT_TYPES.test(type) ? type + '; charset=utf-8' : type
}

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`)
}

function decodeForTitle (p: string): string {
  try {
    return decodeURIComponent(p)
  } catch {
    return p
  }
}

/**
 * `pairs` as a flat list, every field checked by HeaderList (the Cache-Control value comes from
 * the configuration): done once per file form, so that each response takes a copy unchecked.
 */
function flatChecked (pairs: Pairs): FieldBlock {
  const list = new HeaderList()
  for (const [name, value] of pairs) list.append(name, value)
  return new FieldBlock(list.raw)
}

/** Answer with a copy of fields checked by `flatChecked` (the answer's list is its own to change). */
function respondWith (session: FilterSession, status: number, block: FieldBlock, body?: LocalBody): Verdict {
  return (session as Session).respondFields(status, block.fields.slice(), body, block)
}
