/**
 * Waiting on events instead of sleeping. Every wait is bounded so that a broken proxy makes a test
 * fail with a message naming what never happened, rather than hang until tap's file timeout.
 */
import { EventEmitter, once } from 'node:events'

/** An emitter that announces "something changed"; `until` re-checks its predicate on each change. */
export class Observable extends EventEmitter {
  changed (): void {
    this.emit('change')
  }

  until (predicate: () => boolean, ms = 5000, label = 'condition'): Promise<void> {
    if (predicate()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!predicate()) return
        cleanup()
        resolve()
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`timed out after ${ms} ms waiting for ${label}`))
      }, ms)
      const cleanup = (): void => {
        clearTimeout(timer)
        this.removeListener('change', check)
      }
      this.on('change', check)
    })
  }
}

/** Reject after `ms` unless `promise` settles first. */
export async function within<T> (promise: Promise<T>, ms: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${label}`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** The first emission of `event`, bounded. */
export function event<T extends unknown[] = unknown[]> (emitter: EventEmitter, name: string, ms = 5000): Promise<T> {
  return within(once(emitter, name) as Promise<T>, ms, `event "${name}"`)
}

export interface Deferred<T> {
  promise: Promise<T>
  resolve: (value: T) => void
}

export function deferred<T = void> (): Deferred<T> {
  let resolve!: (value: T) => void
  const promise = new Promise<T>(r => { resolve = r })
  return { promise, resolve }
}

/** Yield to the event loop once (between the one-byte writes of a split request). */
export function tick (): Promise<void> {
  return new Promise(resolve => setImmediate(resolve))
}

/** Check `predicate` every few ms until it holds, bounded: for state with no event to wait on (counters in stats()). */
export async function poll (predicate: () => boolean, label: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${label}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}
