/**
 * Reads of an accepted socket into buffers of the caller's choosing. `net.connect` takes an
 * `onread` option (a buffer, or a function giving the next one, and a callback per read); a
 * socket a server accepted has no such option. This module gives an accepted cleartext socket the
 * same behaviour: it sets the three fields `onread` would have set (found by their names on a
 * socket made with `onread`) and hands the handle its first buffer, as `net` does for its own
 * sockets. The stream's pause(), resume() and end work as with `onread`.
 *
 * Internal to Node, so only this module does it, only after checking at load that a socket made
 * with `onread` carries those fields as expected, and only on a socket whose stream holds no
 * unread data; anywhere else `readInto` returns false and the socket reads as before.
 * spec/core/read-into.ts fails when a Node release changes any of it.
 */
import net, { type Socket } from 'node:net'

interface Fields { buffer: symbol, callback: symbol, generator: symbol }



interface Handle { useUserBuffer?: (buffer: Uint8Array) => void }

const fields: Fields | null = (() => {
  const generator = (): Buffer => Buffer.alloc(1)
  const callback = (): undefined => undefined
  const probe = new net.Socket({ onread: { buffer: generator, callback } } as net.SocketConstructorOpts)
  const find = (name: string): symbol | undefined => Object.getOwnPropertySymbols(probe).find(s => s.description === name)
  const buffer = find('kBuffer')
  const cb = find('kBufferCb')
  const gen = find('kBufferGen')
  const record = probe as unknown as Record<symbol, unknown>
  const plain = new net.Socket() as unknown as Record<symbol, unknown>
  const ok = buffer !== undefined && cb !== undefined && gen !== undefined &&
    record[buffer] === true && record[cb] === callback && record[gen] === generator &&
    plain[buffer] === null && plain[cb] === null && plain[gen] === null
  probe.destroy()
  return ok ? { buffer, callback: cb, generator: gen } : null
})()

/** True when this Node's sockets can be switched (the load-time check passed). */
export const canReadInto = fields !== null

/**
 * From the next read on, `socket` reads into `first`, then calls `onRead(length, buffer)` (with
 * the socket as `this`) and `next()` (as a plain function, right after) for the buffer of the
 * following read, instead of emitting 'data'. A buffer is read into until the next read
 * completes: only then is the next one asked for. False, and nothing
 * changed, where that is not possible: this Node, a TLS socket, a socket with unread data.
 */
export function readInto<S extends Socket> (socket: S, first: Buffer, next: () => Buffer, onRead: (this: S, length: number, buffer: Buffer) => boolean | undefined): boolean {
  if (fields === null) return false
  const record = socket as unknown as Record<symbol, unknown> & { _handle?: Handle | null }
  const handle = record._handle
  if (handle === null || handle === undefined || typeof handle.useUserBuffer !== 'function') return false
  if (record[fields.buffer] !== null || socket.readableLength > 0 || socket.destroyed || handle.constructor.name !== 'TCP') return false
  record[fields.buffer] = first
  record[fields.callback] = onRead
  record[fields.generator] = next
  handle.useUserBuffer(first)
  return true
}
