/** Batches as a socket read runs them (core/batch.ts): open, `fn`'s sends, close. */
import { beginBatch, endBatch } from '../../lib/core/batch.js'

export function batch (fn: () => void): void {
  beginBatch()
  try {
    fn()
  } finally {
    endBatch()
  }
}
