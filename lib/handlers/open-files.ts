/**
 * Open file descriptors for the static files handler: bounded in all, and kept open for hot files
 * so that a popular file costs a `stat` per request, not an `open` and a `close`. A descriptor is
 * reused only while the file is the one it was opened on (same inode, size and mtime); reads use
 * positions (`pread`), so many responses share one descriptor.
 *
 * At the bound, the least recently used idle descriptor is closed; when every one is in use, a
 * request waits for one to be released (in order), so that a flood of requests for distinct
 * files cannot exhaust the process's descriptors.
 *
 * `FileReader` streams a part of an open file in large positioned reads: a 1 MiB file is four
 * trips to the thread pool and four socket writes, not sixteen of each as with `createReadStream`'s
 * 64 KiB.
 */
import { close, open, read, constants } from 'node:fs'
import { Readable } from 'node:stream'

export interface OpenFile {
  readonly fd: number
  readonly path: string
}

/** What identifies the contents a descriptor was opened on (a Stats has it). */
export interface FileIdentity {
  readonly ino: number
  readonly size: number
  readonly mtimeMs: number
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
  async acquire (path: string, stat: FileIdentity, followLast: boolean): Promise<OpenFile> {
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

/** The part of a file read at a time: large, so that a big file costs few reads and few writes; the client's pace still bounds what is in memory (one read ahead). */
const READ_SIZE = 256 * 1024

/**
 * Bytes `start` to `end` (inclusive) of an open file, read with positions (the descriptor is
 * shared); the descriptor goes back to the pool when the stream ends or is destroyed, never while
 * a read is still using it.
 */
export class FileReader extends Readable {
  readonly #files: OpenFiles
  readonly #file: OpenFile
  #position: number
  readonly #end: number
  #reading = false
  #released = false
  #destroyed = false

  constructor (files: OpenFiles, file: OpenFile, start: number, end: number) {
    super({ highWaterMark: READ_SIZE })
    this.#files = files
    this.#file = file
    this.#position = start
    this.#end = end
  }

  override _read (): void {
    const left = this.#end - this.#position + 1
    if (left <= 0) {
      this.#release()
      this.push(null)
      return
    }
    const size = left < READ_SIZE ? left : READ_SIZE
    this.#reading = true
    read(this.#file.fd, Buffer.allocUnsafeSlow(size), 0, size, this.#position, (err, bytes, buffer) => {
      this.#reading = false
      if (this.#destroyed) return this.#release()
      if (err !== null) return void this.destroy(err)
      // the file shrank under us: what was promised cannot be sent
      if (bytes === 0) return void this.destroy(new Error(`the file ended ${left} bytes early`))
      this.#position += bytes
      this.push(bytes === size ? buffer : buffer.subarray(0, bytes))
    })
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    this.#destroyed = true
    if (!this.#reading) this.#release()
    callback(err)
  }

  #release (): void {
    if (this.#released) return
    this.#released = true
    this.#files.release(this.#file)
  }
}

/** All of a small file, read through the pool's descriptor; null when it did not read back at the size its stat gave (it is changing). */
export async function readWhole (files: OpenFiles, path: string, stat: FileIdentity): Promise<Buffer | null> {
  const file = await files.acquire(path, stat, false)
  try {
    const buffer = Buffer.allocUnsafeSlow(stat.size)
    let done = 0
    while (done < stat.size) {
      const bytes = await readAt(file.fd, buffer, done, stat.size - done, done)
      if (bytes === 0) return null
      done += bytes
    }
    return buffer
  } finally {
    files.release(file)
  }
}

function readAt (fd: number, buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buffer, offset, length, position, (err, bytes) => err === null ? resolve(bytes) : reject(err)))
}
