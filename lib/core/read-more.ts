/**
 * Node's readable streams schedule a `process.nextTick` after every chunk pushed (maybeReadMore),
 * which calls `read(0)` to keep a stream's buffer filled. A `net.Socket` read by 'data' listeners
 * needs none of it: its handle reads on its own until the buffer passes the high-water mark, and
 * `read()` starts it again when the buffer drains. That is one tick, one `read(0)` and one `_read`
 * per socket read, two reads per proxied request.
 *
 * Marking the stream as "reading more" already (`_readableState.readingMore`, an internal flag
 * that only maybeReadMore looks at) keeps that tick from being scheduled. Only this module touches
 * it, only when the flag exists as a boolean, and spec/core/read-more.ts fails when a Node release
 * changes it.
 */
import type { Socket } from 'node:net'
import { Readable } from 'node:stream'

interface WithState { _readableState?: { readingMore?: unknown } }

/** True when this Node's readable state has the flag (and skipping the tick is possible). */
export const canSkipReadMore = (() => {
  const state = (new Readable() as WithState)._readableState
  return state !== undefined && typeof state.readingMore === 'boolean'
})()

/** Stop `socket` from scheduling a read-more tick after each chunk (no-op where the flag is unknown). */
export function skipReadMore (socket: Socket): void {
  if (!canSkipReadMore) return
  const state = (socket as unknown as WithState)._readableState
  if (state !== undefined) state.readingMore = true
}
