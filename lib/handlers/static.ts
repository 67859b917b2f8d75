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
 * Bodies are streamed from shared, bounded descriptors (open-files.ts) with backpressure: memory
 * stays bounded whatever the file size and the client's speed.
 */
import { createReadStream, type Stats } from 'node:fs'
import { lstat, readdir, realpath, stat } from 'node:fs/promises'
import path from 'node:path'
import { Readable } from 'node:stream'
import { evaluatePreconditions, httpDate, ifRangeHolds, Precondition, type Validators } from '../http/conditional.js'
import { negotiateCoding, type Coding } from '../http/content-coding.js'
import { contentRange, multipart, parseRange, type ByteRange } from '../http/range.js'
import type { StaticModel } from '../model/model.js'
import type { FilterSession, RouteHandler, Verdict } from '../session/filter.js'
import { OpenFiles, type OpenFile } from './open-files.js'

/** Why a path was refused before the file system was asked. */
const enum PathCheck { OK, HIDDEN, FORBIDDEN, BAD }

/** The part of a file read at a time. */
const READ_SIZE = 64 * 1024

/** The MIME table, loaded on the first file served: a process without static routes never pays for it. */
let mimeTable: Promise<typeof import('mime').default> | null = null

const TEXT_TYPES = /^(?:text\/|application\/(?:javascript|json|xml|x-javascript|ecmascript|manifest\+json|ld\+json)|image\/svg\+xml)/

export class StaticFiles implements RouteHandler {
  readonly name = 'static'
  readonly #model: StaticModel
  readonly #files: OpenFiles
  #realRoot: Promise<string> | null = null

  constructor (model: StaticModel) {
    this.#model = model
    this.#files = new OpenFiles(model.maxOpenFiles)
  }

  get openFiles (): number { return this.#files.openCount }

  close (): void {
    this.#files.closeIdle()
  }

  handle (session: FilterSession): Verdict | Promise<Verdict> {
    const method = session.request.method
    if (method !== 'GET' && method !== 'HEAD') {
      if (this.#model.fallback !== null) return 'continue'
      return session.respond(405, [['Allow', 'GET, HEAD'], ['Content-Type', 'text/plain; charset=utf-8']], 'Method Not Allowed\n')
    }
    const segments: string[] = []
    const check = splitPath(session.request.path, segments, this.#model.hidden)
    if (check === PathCheck.BAD) return session.respond(400, [['Content-Type', 'text/plain; charset=utf-8']], 'Bad Request\n')
    if (check === PathCheck.FORBIDDEN) return session.respond(403, [['Content-Type', 'text/plain; charset=utf-8']], 'Forbidden\n')
    if (check === PathCheck.HIDDEN) {
      // a hidden name may be the backend's (`/.well-known/`): it decides; never the file system
      if (this.#model.fallback !== null) return 'continue'
      return session.respond(404, [['Content-Type', 'text/plain; charset=utf-8']], 'Not Found\n')
    }
    return this.#serve(session, segments).catch(err => this.#failed(session, err))
  }

  async #serve (session: FilterSession, segments: string[]): Promise<Verdict> {
    const root = await (this.#realRoot ??= realpath(this.#model.root))
    let file = path.join(root, ...segments)
    let info = await this.#statInside(root, file)
    if (info === null) return 'continue'
    const request = session.request
    if (info.stats.isDirectory()) {
      const rawPath = request.path
      if (!rawPath.endsWith('/')) {
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
        if (this.#model.listing) return await this.#listing(session, info.real)
        return 'continue'
      }
      info = index
    }
    if (!info.stats.isFile()) return 'continue'
    return await this.#file(session, file, info.real, info.stats)
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

  async #file (session: FilterSession, file: string, real: string, stats: Stats): Promise<Verdict> {
    const request = session.request
    const model = this.#model
    const type = contentType(await (mimeTable ??= import('mime').then(m => m.default)), file)
    // a precompressed sibling, when the client takes its coding
    let served = real
    let servedStats = stats
    let coding: Coding | null = null
    let hasSiblings = false
    if (model.precompressed) {
      const siblings: Coding[] = []
      const found = new Map<Coding, { real: string, stats: Stats }>()
      for (const [c, ext] of [['br', '.br'], ['gzip', '.gz']] as const) {
        const sibling = await this.#siblingOf(real, ext)
        if (sibling !== null) {
          siblings.push(c)
          found.set(c, sibling)
        }
      }
      hasSiblings = siblings.length > 0
      if (hasSiblings) {
        coding = negotiateCoding(request.headers.getAll('accept-encoding').join(', ') || undefined, siblings)
        if (coding !== null) {
          const chosen = found.get(coding)!
          served = chosen.real
          servedStats = chosen.stats
        }
      }
    }
    const size = servedStats.size
    const etag = `"${Math.floor(servedStats.mtimeMs).toString(16)}-${size.toString(16)}${coding === null ? '' : '-' + coding}"`
    const validators: Validators = { etag, lastModified: Math.floor(servedStats.mtimeMs / 1000) * 1000 }
    const headers: Array<[string, string]> = [
      ['ETag', etag],
      ['Last-Modified', httpDate(validators.lastModified)],
      ['Cache-Control', model.cacheControl],
      ['Accept-Ranges', 'bytes'],
    ]
    if (hasSiblings) headers.push(['Vary', 'Accept-Encoding'])
    const condition = evaluatePreconditions(request.method, request.headers, validators)
    if (condition === Precondition.NOT_MODIFIED) return session.respond(304, headers)
    if (condition === Precondition.FAILED) return session.respond(412, [['Content-Type', 'text/plain; charset=utf-8']], 'Precondition Failed\n')
    if (type !== undefined) headers.push(['Content-Type', type])
    if (coding !== null) headers.push(['Content-Encoding', coding])

    let ranges: ByteRange[] | null = null
    const range = request.headers.get('range')
    if (range !== undefined && request.method === 'GET') {
      const ifRange = request.headers.get('if-range')
      if (ifRange === undefined || ifRangeHolds(ifRange, validators)) {
        const parsed = parseRange(range, size)
        if (parsed.kind === 'unsatisfiable') {
          return session.respond(416, [['Content-Range', `bytes */${size}`], ['Content-Type', 'text/plain; charset=utf-8']], 'Range Not Satisfiable\n')
        }
        if (parsed.kind === 'ranges') ranges = parsed.ranges
      }
    }
    if (request.method === 'HEAD' || size === 0) {
      headers.push(['Content-Length', String(size)])
      return session.respond(200, headers, request.method === 'HEAD' ? undefined : Buffer.alloc(0))
    }
    // `served` is a real path: the open follows no link, so one swapped in since the check is refused (ELOOP)
    const open = await this.#files.acquire(served, servedStats, false)
    if (ranges === null) {
      headers.push(['Content-Length', String(size)])
      return session.respond(200, headers, this.#read(open, 0, size - 1))
    }
    if (ranges.length === 1) {
      const only = ranges[0]
      headers.push(['Content-Range', contentRange(only, size)], ['Content-Length', String(only.end - only.start + 1)])
      return session.respond(206, headers, this.#read(open, only.start, only.end))
    }
    const boundary = 'rp4-' + Math.random().toString(36).slice(2, 14) + Date.now().toString(36)
    const parts = multipart(ranges, size, type, boundary)
    const withoutType = headers.filter(([name]) => name !== 'Content-Type')
    withoutType.push(['Content-Type', parts.contentType], ['Content-Length', String(parts.length)])
    return session.respond(206, withoutType, Readable.from(this.#parts(open, ranges, parts.heads, parts.tail), { objectMode: false }))
  }

  async #siblingOf (real: string, ext: string): Promise<{ real: string, stats: Stats } | null> {
    try {
      const stats = await lstat(real + ext)
      // a sibling is a plain file beside the original: a link there is not followed
      return stats.isFile() ? { real: real + ext, stats } : null
    } catch {
      return null
    }
  }

  /** Bytes `start` to `end` (inclusive) of an open file; the descriptor goes back to the pool when the stream ends or is destroyed. */
  #read (open: OpenFile, start: number, end: number): Readable {
    const stream = createReadStream('', { fd: open.fd, start, end, autoClose: false, highWaterMark: READ_SIZE })
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      this.#files.release(open)
    }
    stream.once('close', release)
    stream.once('end', release)
    stream.once('error', release)
    return stream
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

  #failed (session: FilterSession, err: unknown): Verdict {
    const code = (err as NodeJS.ErrnoException)?.code
    if (isMissing(err)) return 'continue'
    if (code === 'EACCES' || code === 'EPERM' || code === 'ELOOP') return session.respond(403, [['Content-Type', 'text/plain; charset=utf-8']], 'Forbidden\n')
    // the details stay here: they name paths of the server
    throw err
  }
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

function contentType (mime: typeof import('mime').default, file: string): string | undefined {
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
