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
 *
 * `readDirectly` goes one step further for a socket that reads into given buffers: its handle's
 * `onread` becomes a function of this module that reads the length from the state the handle
 * shares (core/stream-wrap.ts) and calls the reader, past Node's generic read callback. That
 * callback looks up four symbol fields of the socket per read, and with sockets of many shapes
 * in one process (clients, backends, each with the fields rp4 adds) those lookups go megamorphic:
 * 3.5% of the proxy's CPU samples under the harness's small requests, 0.9% after (`perf record`);
 * CPU per request 0.960 against the build before (A/B, 12 rounds).
 */
import net, { type Socket } from 'node:net'
import { handleError, streamWrap } from './stream-wrap.js'

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
 * `handleHasIt`: the handle reads into `first` already (it is not handed it again).
 */
export function readInto<S extends Socket> (socket: S, first: Buffer, next: () => Buffer, onRead: (this: S, length: number, buffer: Buffer) => boolean | undefined, handleHasIt = false): boolean {
  if (fields === null) return false
  const record = socket as unknown as Record<symbol, unknown> & { _handle?: Handle | null }
  const handle = record._handle
  if (handle === null || handle === undefined || typeof handle.useUserBuffer !== 'function') return false
  if (record[fields.buffer] !== null || socket.readableLength > 0 || socket.destroyed || handle.constructor.name !== 'TCP') return false
  record[fields.buffer] = first
  record[fields.callback] = onRead
  record[fields.generator] = next
  // a handle already reading into `first` (a parked one, core/park.ts) is not handed it again:
  // each hand-over stacks one more read listener on the handle for as long as it lives
  if (!handleHasIt) handle.useUserBuffer(first)
  return true
}

/** True when `socket` reads into given buffers (made with `onread`, or switched by `readInto`). */
export function readsIntoGiven (socket: Socket): boolean {
  return fields !== null && (socket as unknown as Record<symbol, unknown>)[fields.buffer] !== null
}

/** Told of the reads of a socket handed to `readDirectly`. */
export interface DirectReader {
  /** `length` bytes were read into `buffer` (the one given last); false: stop reading (pause). */
  onHandleRead (length: number, buffer: Buffer): boolean
  /** The buffer of the next read (asked right after each read). */
  nextBuffer (): Buffer
}

interface ReadHandle {
  constructor: Function
  onread: (this: ReadHandle, arrayBuffer: unknown) => unknown
  reading: boolean
  readStop (): number
  rp4Socket?: Socket
  rp4Reader?: DirectReader
  rp4Buffer?: Buffer
}

const readState = streamWrap?.streamBaseState
const kReadBytes = streamWrap?.kReadBytesOrError ?? 0
/** Node's read callback for stream handles (what every socket's handle has), taken from the first handle `readDirectly` sees. */
let streamRead: ReadHandle['onread'] | null = null

/** True when `readDirectly` can take sockets on this Node. */
export const canReadDirectly = fields !== null && streamWrap !== null

/**
 * From the next read on, the handle of `socket` (reading into buffers already: a socket made with
 * `onread`, or one switched by `readInto`) calls `reader` itself, instead of Node's generic read
 * callback: no timer refresh (rp4's sockets have no stream timeout), none of the socket's symbol
 * fields looked up per read (a lookup that sees sockets of many shapes). The end of the stream and
 * read errors still go to Node's callback, which ends or destroys the socket as before; pause()
 * and resume() work as with `onread`. False, and nothing changed, where that is not possible.
 */
export function readDirectly (socket: Socket, reader: DirectReader): boolean {
  if (!canReadDirectly) return false
  const record = socket as unknown as Record<symbol, unknown> & { _handle?: ReadHandle | null }
  const handle = record._handle
  if (handle === null || handle === undefined || handle.constructor !== streamWrap!.TCP) return false
  const current = record[fields!.buffer]
  if (!(current instanceof Uint8Array) || socket.destroyed) return false
  streamRead ??= handle.onread
  if (handle.onread !== streamRead) return false
  handle.rp4Socket = socket
  handle.rp4Reader = reader
  handle.rp4Buffer = current as Buffer
  handle.onread = onHandleRead
  return true
}

function onHandleRead (this: ReadHandle, arrayBuffer: unknown): unknown {
  const length = readState![kReadBytes]
  const socket = this.rp4Socket!
  if (length <= 0 || socket.destroyed) return streamRead!.call(this, arrayBuffer)
  const reader = this.rp4Reader!
  const more = reader.onHandleRead(length, this.rp4Buffer!)
  const next = reader.nextBuffer()
  this.rp4Buffer = next
  if (!more && !socket.destroyed) {
    this.reading = false
    const err = this.readStop()
    if (err !== 0) socket.destroy(handleError('read', err))
  }
  // the handle reads into what is returned next
  return next
}
