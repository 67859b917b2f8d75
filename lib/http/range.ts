/**
 * Range requests (RFC 9110 §14): the byte ranges a Range header asks of a representation of a
 * known length, and the framing of a 206 (Content-Range, multipart/byteranges). Used for files
 * and for cached full responses alike.
 */

export interface ByteRange {
  /** First byte, inclusive. */
  start: number
  /** Last byte, inclusive. */
  end: number
}

/** Most ranges one request may ask for (after merging); more is answered with the whole body. */
export const MAX_RANGES = 16

export type RangeResult =
  /** No usable Range: send the whole representation (also for a syntax this does not know, §14.2). */
  | { kind: 'whole' }
  /** 416, with `Content-Range: bytes *\/LENGTH`. */
  | { kind: 'unsatisfiable' }
  | { kind: 'ranges', ranges: ByteRange[] }

/**
 * The ranges `value` asks of `length` bytes, sorted and merged where they overlap or touch (a
 * client asking the same bytes many times over gets them once: §14.2 allows it and it defeats
 * amplification).
 */
export function parseRange (value: string, length: number): RangeResult {
  const eq = value.indexOf('=')
  if (eq === -1 || value.slice(0, eq).trim().toLowerCase() !== 'bytes') return { kind: 'whole' }
  const specs = value.slice(eq + 1).split(',')
  if (specs.length > 64) return { kind: 'whole' }
  const ranges: ByteRange[] = []
  for (const raw of specs) {
    const spec = raw.trim()
    if (spec === '') continue
    const m = /^(\d*)-(\d*)$/.exec(spec)
    if (m === null || (m[1] === '' && m[2] === '')) return { kind: 'whole' }
    if (m[1] === '') {
      // a suffix: the last N bytes
      const n = Number(m[2])
      if (n === 0) continue
      ranges.push({ start: Math.max(0, length - n), end: length - 1 })
      continue
    }
    const start = Number(m[1])
    const end = m[2] === '' ? length - 1 : Math.min(Number(m[2]), length - 1)
    if (m[2] !== '' && Number(m[2]) < start) return { kind: 'whole' }
    if (start >= length) continue
    ranges.push({ start, end })
  }
  if (ranges.length === 0) return { kind: 'unsatisfiable' }
  ranges.sort((a, b) => a.start - b.start)
  const merged: ByteRange[] = [ranges[0]]
  for (let i = 1; i < ranges.length; i++) {
    const last = merged[merged.length - 1]
    const next = ranges[i]
    if (next.start <= last.end + 1) last.end = Math.max(last.end, next.end)
    else merged.push(next)
  }
  if (merged.length > MAX_RANGES) return { kind: 'whole' }
  return { kind: 'ranges', ranges: merged }
}

export function contentRange (range: ByteRange, length: number): string {
  return `bytes ${range.start}-${range.end}/${length}`
}

/** A multipart/byteranges body's pieces: each part's head, and the closing delimiter (§14.6). */
export interface Multipart {
  contentType: string
  /** The head before each range's bytes. */
  heads: Buffer[]
  tail: Buffer
  /** The body's whole length. */
  length: number
}

export function multipart (ranges: readonly ByteRange[], length: number, type: string | undefined, boundary: string): Multipart {
  const heads: Buffer[] = []
  let total = 0
  for (let i = 0; i < ranges.length; i++) {
    const head = Buffer.from(`${i === 0 ? '' : '\r\n'}--${boundary}\r\n${type === undefined ? '' : `Content-Type: ${type}\r\n`}Content-Range: ${contentRange(ranges[i], length)}\r\n\r\n`, 'latin1')
    heads.push(head)
    total += head.length + ranges[i].end - ranges[i].start + 1
  }
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1')
  return { contentType: `multipart/byteranges; boundary=${boundary}`, heads, tail, length: total + tail.length }
}
