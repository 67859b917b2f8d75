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
 *
 * `SocketReads` makes the choice for one socket, read by read.
 */
import type { Socket } from 'node:net'
import { closeLoan, openLoan } from './loan.js'
import { readDirectly, readInto } from './read-into.js'

/** Bytes of the shared buffer: Node's own read size. */
export const SHARED_SIZE = 64 * 1024
/** Bytes of an own buffer. */
export const OWN_SIZE = 256 * 1024
/**
 * A read from the shared buffer at least this large is dispatched as a loan (of its copy), to
 * learn whether the body's next reads could go to an own buffer: one that fills half of the
 * shared buffer suggests a large body.
 */
const LEND_FROM = SHARED_SIZE / 2
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

/** Own buffers alive and kept free now; handed to sockets and abandoned so far (for specs). */
export function ownBufferCounts (): { live: number, free: number, taken: number, abandoned: number } {
  return { live, free: free.length, taken, abandoned }
}

/**
 * The read buffers of one socket that reads through `onread` (or core/read-into.ts): the buffer
 * for its next read, and the loan of each read's dispatch. Node asks for `buffer` after every read.
 */
export class SocketReads {
  /** What the socket reads into next. */
  buffer: Buffer = sharedReadBuffer()
  #lending = false
  /** Told of each read of a socket switched by `switchReads`; false: stop reading. */
  readonly onRead: ReadHandler | null

  /** The socket read, for `onRead`. */
  readonly #socket: Socket | null

  constructor (onRead: ReadHandler | null = null, socket: Socket | null = null) {
    this.onRead = onRead
    this.#socket = socket
  }

  /** A read of a switched socket, from its handle (core/read-into.ts `readDirectly`). */
  onHandleRead (length: number, buffer: Buffer): boolean {
    return this.onRead!(this.#socket!, this, length, buffer)
  }

  /** The buffer of the socket's next read. */
  nextBuffer (): Buffer {
    return this.buffer
  }

  /**
   * The bytes of a read into `buffer`, to dispatch: a view of an own buffer, lent for the
   * dispatch, or a copy of the shared buffer's (lent too when large, to learn whether the next
   * reads could be). Call `end` when the dispatch is done, even if it threw.
   */
  begin (length: number, buffer: Buffer): Buffer {
    const own = buffer !== shared
    const chunk = own ? buffer.subarray(0, length) : Buffer.from(buffer.subarray(0, length))
    this.#lending = own || length >= LEND_FROM
    if (this.#lending) openLoan(chunk)
    return chunk
  }

  /**
   * The dispatch is over; choose the next buffer. `busy`: a large body is still coming on this
   * socket (its next reads may go to an own buffer, if nothing kept a view of this one's).
   */
  end (busy: boolean): void {
    if (!this.#lending) return
    this.#lending = false
    const free = closeLoan()
    const current = this.buffer
    if (current !== shared) {
      if (!free) {
        // something keeps a view of it: it leaves the pool, and reads go back to copies
        abandonOwnBuffer()
        this.buffer = sharedReadBuffer()
      } else if (!busy) {
        returnOwnBuffer(current)
        this.buffer = sharedReadBuffer()
      }
    } else if (free && busy) {
      // a large body whose reads nobody keeps: the rest of it is read into a buffer of its own
      this.buffer = takeOwnBuffer() ?? current
    }
  }

  /** A copy of a read, for a reader that keeps what it gets; the socket goes back to the shared buffer. */
  copy (length: number, buffer: Buffer): Buffer {
    const chunk = Buffer.from(buffer.subarray(0, length))
    this.release()
    return chunk
  }

  /**
   * No more reads into an own buffer: call when the socket is closed, or during a read's dispatch
   * (Node asks for the next buffer after it); at any other time the socket's next read still goes
   * to the buffer it was given.
   */
  release (): void {
    const current = this.buffer
    if (current === shared) return
    // never a kept one: `end` swaps those out at once
    this.buffer = sharedReadBuffer()
    returnOwnBuffer(current)
  }
}

/** A read of a switched socket: `length` bytes in `buffer` (hand them on through `reads.begin`/`end` or `reads.copy`). */
export type ReadHandler = (socket: Socket, reads: SocketReads, length: number, buffer: Buffer) => boolean

const kReads = Symbol('rp4.reads')

interface Switched extends Socket { [kReads]?: SocketReads }

/** The reads of a socket `switchReads` switched; undefined for one that reads as Node does. */
export function readsOf (socket: Socket): SocketReads | undefined {
  return (socket as Switched)[kReads]
}

/**
 * From the next read on, `socket` reads into the buffers its SocketReads chooses, and `onRead`
 * is told of each read instead of a 'data' event (core/read-into.ts). False where this Node or
 * this socket cannot (a TLS socket, unread data in its stream), or it was switched already.
 */
export function switchReads (socket: Socket, onRead: ReadHandler, handleHasShared = false): boolean {
  const s = socket as Switched
  if (s[kReads] !== undefined) return false
  const reads = new SocketReads(onRead, socket)
  if (!readInto(s, reads.buffer, nextBuffer, dispatchRead, handleHasShared)) return false
  s[kReads] = reads
  // each read comes to `reads` straight from the handle where this Node allows it
  readDirectly(s, reads)
  return true
}

/**
 * `switchReads` for a socket made around a handle that reads into the shared buffer already (an
 * unparked one, core/park.ts).
 */
export function adoptReads (socket: Socket, onRead: ReadHandler): boolean {
  return switchReads(socket, onRead, true)
}

/** The reads of the socket whose read was dispatched last: Node asks for its next buffer right after. */
let lastReads: SocketReads | null = null

function nextBuffer (): Buffer {
  return lastReads!.buffer
}

function dispatchRead (this: Switched, length: number, buffer: Buffer): boolean {
  const reads = this[kReads]!
  const more = reads.onRead!(this, reads, length, buffer)
  lastReads = reads
  return more
}
