/**
 * Read buffers for sockets that read through `onread` (a buffer given to the handle instead of a
 * fresh allocation per read). Two kinds:
 *
 * - the shared buffer: one for the process, small (Node's own read size). Every socket that is
 *   not moving a large body reads into it, and its reader copies what it read out before handing
 *   it on (an exact-size copy, as Node's reads give), so no view of it outlives a read callback
 *   and any number of sockets can point at it.
 * - own buffers: larger, one per socket moving a large body to a reader that keeps up. Its views
 *   are lent for the dispatch of each read (core/loan.ts) and the buffer is read into again when
 *   none was kept: no allocation and no copy per read, and a quarter of the read calls.
 *
 * Own buffers are bounded (OWN_MAX per process, OWN_FREE_MAX kept for the next socket): past the
 * bound, sockets stay on the shared buffer and its copies.
 */

/** Bytes of the shared buffer: Node's own read size. */
export const SHARED_SIZE = 64 * 1024
/** Bytes of an own buffer. */
export const OWN_SIZE = 256 * 1024
/** Own buffers alive at most (in use, or kept free). */
const OWN_MAX = 64
/** Own buffers kept for reuse when their socket no longer needs them. */
const OWN_FREE_MAX = 8

let shared: Buffer | null = null
const free: Buffer[] = []
let live = 0
/** Own buffers handed to sockets, and abandoned (a view was kept), since the process started. */
let taken = 0
let abandoned = 0

/** The process's shared read buffer (views of it never leave a read callback). */
export function sharedReadBuffer (): Buffer {
  return (shared ??= Buffer.allocUnsafeSlow(SHARED_SIZE))
}

/** An own read buffer, or null when OWN_MAX are alive. */
export function takeOwnBuffer (): Buffer | null {
  const buffer = free.pop()
  if (buffer !== undefined) {
    taken++
    return buffer
  }
  if (live >= OWN_MAX) return null
  live++
  taken++
  return Buffer.allocUnsafeSlow(OWN_SIZE)
}

/** An own buffer no view of which is kept, and that no socket reads into any more. */
export function returnOwnBuffer (buffer: Buffer): void {
  if (free.length < OWN_FREE_MAX) free.push(buffer)
  else live--
}

/** An own buffer something kept a view of: it leaves the pool (the collector frees it with the last view). */
export function abandonOwnBuffer (): void {
  live--
  abandoned++
}

/** Own buffers alive and kept free now; handed to sockets and abandoned so far (for specs and metrics). */
export function ownBufferCounts (): { live: number, free: number, taken: number, abandoned: number } {
  return { live, free: free.length, taken, abandoned }
}
