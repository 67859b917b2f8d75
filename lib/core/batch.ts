/**
 * Write batching: while one socket chunk is parsed, every write to another socket is corked, and
 * all of them are uncorked together once the chunk is done. A response head and the body bytes
 * that followed it in the same read leave in one writev; pipelined requests leave in one write.
 */
import type { Socket } from 'node:net'

const corked: Socket[] = []
let batching = false

/** Start collecting writes (call before parsing a chunk). */
export function beginBatch (): void {
  batching = true
}

/** Cork `socket` until `endBatch`, once per batch. Outside a batch, writes go out at once. */
export function batchWrites (socket: Socket): void {
  if (batching && socket.writableCorked === 0) {
    socket.cork()
    corked.push(socket)
  }
}

/** Flush every socket corked since `beginBatch`. */
export function endBatch (): void {
  batching = false
  for (let i = 0; i < corked.length; i++) {
    const socket = corked[i]
    if (socket.writableCorked > 0) socket.uncork()
  }
  corked.length = 0
}
