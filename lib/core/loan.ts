/**
 * Read buffers lent for one dispatch. A socket that reads into a buffer of its own, used again
 * for its next read (see core/read-buffers.ts), hands the engine views of that buffer: the bytes
 * of one read, valid only until the read's callback returns. The buffer may be read into again
 * only if nothing kept a view of it past that point.
 *
 * The reader opens a loan for the read, counts each piece it hands on (`lendPiece`), and closes
 * the loan when the dispatch is done. Code that ends a piece's journey says how: written to the
 * kernel in full or copied (`settlePiece`), or kept as it is (`keepLoan`, e.g. a filter or a
 * socket's write queue holds it). The buffer is free again only when every piece handed on was
 * settled and none was kept: a path that says nothing about a piece makes the reader take
 * another buffer, never reuse one that might still be referenced.
 *
 * One loan at a time: a dispatch runs to its end before the event loop reads another socket.
 */

let lent: ArrayBufferLike | null = null
let pieces = 0
let settled = 0
let kept = false

/** Start lending views of `chunk`'s memory for the dispatch of one read. */
export function openLoan (chunk: Buffer): void {
  lent = chunk.buffer
  pieces = 0
  settled = 0
  kept = false
}

/** The reader hands a view of the lent memory on. */
export function lendPiece (): void {
  pieces++
}

/** `data` is a view of the memory lent now. */
export function isLent (data: Buffer): boolean {
  return lent !== null && data.buffer === lent
}

/** True while a loan is open (a read's dispatch lends views of its buffer). */
export function lending (): boolean {
  return lent !== null
}

/** `count` pieces handed on are done with: written in full, copied, or dropped. */
export function settlePieces (count = 1): void {
  settled += count
}

/** Something keeps a view of the lent memory past the dispatch (the buffer must not be read into again). */
export function keepLoan (): void {
  if (lent !== null) kept = true
}

/**
 * End the dispatch. True: the lent memory may be read into again: every piece was settled once,
 * and nothing kept one (a count that does not match, either way, means some path is not understood).
 */
export function closeLoan (): boolean {
  const free = !kept && settled === pieces
  lent = null
  return free
}

/** `data` copied when it is a view of the lent memory (for code that keeps what it is given). */
export function unlent (data: Buffer): Buffer {
  if (!isLent(data)) return data
  settled++
  return Buffer.from(data)
}

/** `data` copied when it is a view of the lent memory, for code that keeps bytes that are not a piece handed on (a stash of unparsed bytes). */
export function copyIfLent (data: Buffer): Buffer {
  return isLent(data) ? Buffer.from(data) : data
}
