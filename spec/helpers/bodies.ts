/**
 * Bodies for integrity tests: random ones held in memory, and large ones generated on the fly with
 * their SHA-256 computed as they are produced, so that hundreds of MB never sit in memory.
 */
import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'

export function sha256 (data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex')
}

/** A random integer in [min, max]. */
export function randomInt (min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1))
}

export function randomBody (size: number): Buffer {
  return randomBytes(size)
}

/** `body` in chunked encoding, cut in chunks of random sizes (and an optional trailer section). */
export function chunked (body: Buffer, maxChunk = 65536, trailers = ''): Buffer {
  const parts: Buffer[] = []
  let off = 0
  while (off < body.length) {
    const size = Math.min(body.length - off, randomInt(1, maxChunk))
    // some chunk-size lines carry an extension, which the proxy must accept and may drop
    const ext = Math.random() < 0.1 ? ';x=y' : ''
    parts.push(Buffer.from(size.toString(16) + ext + '\r\n', 'latin1'), body.subarray(off, off + size), Buffer.from('\r\n'))
    off += size
  }
  parts.push(Buffer.from('0\r\n' + trailers + '\r\n', 'latin1'))
  return Buffer.concat(parts)
}

/**
 * A stream of `total` bytes in `chunkSize` pieces: one random block, each piece stamped with its
 * index so that a duplicated, lost or reordered piece changes the hash. `digest()` is valid once
 * the stream ended.
 */
export class GeneratedBody extends Readable {
  readonly total: number
  #sent = 0
  #index = 0
  readonly #block: Buffer
  readonly #hash = createHash('sha256')
  #digest = ''
  /** When set, each piece is wrapped as one chunk of chunked encoding, and the terminator follows. */
  readonly #chunkedFraming: boolean

  constructor (total: number, { chunkSize = 256 * 1024, chunkedFraming = false } = {}) {
    super({ highWaterMark: chunkSize })
    this.total = total
    this.#block = randomBytes(chunkSize)
    this.#chunkedFraming = chunkedFraming
  }

  override _read (): void {
    if (this.#sent >= this.total) {
      this.#digest = this.#hash.digest('hex')
      if (this.#chunkedFraming) this.push(Buffer.from('0\r\n\r\n'))
      this.push(null)
      return
    }
    const size = Math.min(this.#block.length, this.total - this.#sent)
    const piece = Buffer.from(this.#block.subarray(0, size))
    if (size >= 4) piece.writeUInt32BE(this.#index >>> 0, 0)
    this.#index++
    this.#hash.update(piece)
    this.#sent += size
    if (this.#chunkedFraming) {
      this.push(Buffer.concat([Buffer.from(size.toString(16) + '\r\n'), piece, Buffer.from('\r\n')]))
    } else {
      this.push(piece)
    }
  }

  digest (): string {
    if (this.#digest === '') throw new Error('GeneratedBody.digest() before the stream ended')
    return this.#digest
  }
}
