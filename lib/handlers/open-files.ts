/**
 * Open file descriptors for the static files handler: bounded in all, and kept open for hot files
 * so that a popular file costs a `stat` per request, not an `open` and a `close`. A descriptor is
 * reused only while the file is the one it was opened on (same inode, size and mtime); reads use
 * positions (`pread`), so many responses share one descriptor.
 *
 * At the bound, the least recently used idle descriptor is closed; when every one is in use, a
 * request waits for one to be released (in order), so that a flood of requests for distinct
 * files cannot exhaust the process's descriptors.
 */
import { close, open, constants, type Stats } from 'node:fs'

export interface OpenFile {
  readonly fd: number
  readonly path: string
}

interface Entry extends OpenFile {
  readonly ino: number
  readonly size: number
  readonly mtimeMs: number
  refs: number
  /** Replaced by a newer descriptor for the same path: closed once unused. */
  stale: boolean
}

const READ_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0)

export class OpenFiles {
  readonly #max: number
  /** Idle or in use, by path; Map order is recency (least recent first). */
  readonly #byPath = new Map<string, Entry>()
  #open = 0
  readonly #waiters: Array<() => void> = []

  constructor (max: number) {
    this.#max = max
  }

  get openCount (): number { return this.#open }

  /**
   * A descriptor for `path` whose file is `stat` (from a stat just done). `followLast`: the last
   * component may be a symbolic link (it was checked to stay inside the root).
   */
  async acquire (path: string, stat: Stats, followLast: boolean): Promise<OpenFile> {
    const cached = this.#byPath.get(path)
    if (cached !== undefined && !cached.stale && cached.ino === stat.ino && cached.size === stat.size && cached.mtimeMs === stat.mtimeMs) {
      cached.refs++
      this.#byPath.delete(path)
      this.#byPath.set(path, cached)
      return cached
    }
    await this.#slot()
    let fd: number
    try {
      fd = await openFd(path, followLast ? constants.O_RDONLY : READ_FLAGS)
    } catch (err) {
      this.#open--
      this.#wake()
      throw err
    }
    const entry: Entry = { fd, path, ino: stat.ino, size: stat.size, mtimeMs: stat.mtimeMs, refs: 1, stale: false }
    const previous = this.#byPath.get(path)
    if (previous !== undefined) {
      previous.stale = true
      this.#byPath.delete(path)
      if (previous.refs === 0) this.#close(previous)
    }
    this.#byPath.set(path, entry)
    return entry
  }

  release (file: OpenFile): void {
    const entry = file as Entry
    entry.refs--
    if (entry.refs === 0 && entry.stale) this.#close(entry)
    else if (entry.refs === 0 && this.#waiters.length > 0) this.#evictIdle()
  }

  /** Close every idle descriptor (the server is closing). */
  closeIdle (): void {
    for (const entry of [...this.#byPath.values()]) {
      if (entry.refs === 0) {
        this.#byPath.delete(entry.path)
        this.#close(entry)
      }
    }
  }

  async #slot (): Promise<void> {
    if (this.#open >= this.#max) this.#evictIdle()
    while (this.#open >= this.#max) await new Promise<void>(resolve => this.#waiters.push(resolve))
    this.#open++
  }

  #evictIdle (): void {
    for (const entry of this.#byPath.values()) {
      if (entry.refs !== 0) continue
      this.#byPath.delete(entry.path)
      this.#close(entry)
      return
    }
  }

  #close (entry: Entry): void {
    close(entry.fd, () => {})
    this.#open--
    this.#wake()
  }

  #wake (): void {
    const next = this.#waiters.shift()
    if (next !== undefined) next()
  }
}

function openFd (path: string, flags: number): Promise<number> {
  return new Promise((resolve, reject) => open(path, flags, (err, fd) => err === null ? resolve(fd) : reject(err)))
}
