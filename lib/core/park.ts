/**
 * Parking: an idle cleartext client connection kept as its bare TCP handle. A `net.Socket` costs
 * about 1.1 KiB of heap on top of its handle (the stream states, listeners, fields), and rp4's
 * connection object, parser and meter as much again; a keep-alive connection that sends nothing
 * for a while needs none of it until it sends again. `parkHandle` takes the handle from its
 * socket (the socket is then destroyed without closing it, and collected) and reads it into the
 * process's shared read buffer (core/read-buffers.ts); the first bytes it reads, its end or its
 * error go to the handle's owner, which makes a socket around the handle again (`unparkHandle`)
 * or closes it (`closeHandle`).
 *
 * Internal to Node: a socket's `_handle`, the handle's `owner_symbol` field (found by its
 * description), `new net.Socket({ handle })` (what `net.Server` does for every connection it
 * accepts), and the handle's read state (core/stream-wrap.ts). Only this module does it, only
 * after checking at load that a socket made around a handle sets those fields as expected; where
 * that check fails, `canPark` is false and connections stay as they are. spec/core/park.ts fails
 * when a Node release changes any of it.
 */
import net, { type Socket } from 'node:net'
import { streamWrap } from './stream-wrap.js'
import { readsOf, sharedReadBuffer } from './read-buffers.js'
import { canReadInto, readsIntoGiven } from './read-into.js'
import { hasQueuedWrite } from './direct-write.js'

/** Told of what a parked handle reads. Called from the handle's read callback: may unpark or close it. */
export interface ParkOwner {
  /** The first bytes read (a copy, the owner's to keep). */
  onParkedData (chunk: Buffer): void
  /** The client's end (`status` UV_EOF) or a read error (a negative errno). */
  onParkedEnd (status: number): void
  /** A call above threw: the owner closes what it owns (the process goes on). */
  onInternalError (err: unknown): void
}

/** A TCP handle as this module uses it. */
export interface ParkedHandle {
  readonly constructor: Function
  onread: (this: ParkedHandle, arrayBuffer: unknown) => unknown
  reading: boolean
  readStart (): number
  readStop (): number
  useUserBuffer (buffer: Uint8Array): void
  close (callback?: () => void): void
  rp4Parked?: ParkOwner | undefined
  /** Fields core/read-into.ts sets on a handle it reads directly. */
  rp4Socket?: unknown
  rp4Reader?: unknown
  rp4Buffer?: unknown
}

/** libuv's end-of-stream status. */
export const UV_EOF = -4095

const TCP = streamWrap?.TCP
const readState = streamWrap?.streamBaseState
const kReadBytes = streamWrap?.kReadBytesOrError ?? 0

/** The symbol by which a handle names the socket around it, found on a socket made around a handle. */
const ownerSymbol: symbol | null = (() => {
  if (TCP === undefined) return null
  try {
    const constants = (process as unknown as { binding: (name: string) => { constants?: { SOCKET?: number } } }).binding('tcp_wrap').constants
    if (typeof constants?.SOCKET !== 'number') return null
    const Handle = TCP as unknown as new (type: number) => ParkedHandle
    const handle = new Handle(constants.SOCKET)
    const socket = new net.Socket({ handle, manualStart: true } as net.SocketConstructorOpts)
    const symbol = Object.getOwnPropertySymbols(handle).find(s => s.description === 'owner_symbol')
    const record = handle as unknown as Record<symbol, unknown>
    const ok = symbol !== undefined && record[symbol] === socket &&
      (socket as unknown as { _handle: unknown })._handle === handle && typeof handle.onread === 'function' &&
      typeof handle.readStart === 'function' && typeof handle.readStop === 'function' &&
      typeof handle.useUserBuffer === 'function'
    socket.destroy()
    return ok ? symbol : null
  } catch {
    return null
  }
})()

/** True when this Node's client connections can be parked (the load-time check passed). */
export const canPark = ownerSymbol !== null && readState !== undefined && canReadInto

interface ParkableSocket extends Socket {
  _handle: ParkedHandle | null
  connecting: boolean
}

/**
 * Take `socket`'s handle and read it for `owner`; the socket is destroyed without closing the
 * handle (take every listener of yours off it first: its 'close' still comes). Null, and nothing
 * changed, where that is not possible: this Node, a socket that is not a connected cleartext TCP
 * socket, one with bytes in either direction not yet through (unread in its stream, unwritten in
 * its stream or in the kernel's queue of a direct write), ended in either direction, or reading
 * into a buffer of its own.
 */
export function parkHandle (socket: Socket, owner: ParkOwner): ParkedHandle | null {
  if (!canPark) return null
  const s = socket as ParkableSocket
  const handle = s._handle
  if (handle === null || handle === undefined || handle.constructor !== TCP) return null
  if (s.connecting || s.destroyed || s.readableEnded || s.writableEnded || s.readableLength !== 0 ||
    s.writableLength !== 0 || s.writableCorked !== 0 || hasQueuedWrite(s)) return null
  const reads = readsOf(socket)
  // the handle of a socket switched to given buffers reads into the last one it was handed
  if (reads !== undefined && reads.buffer !== sharedReadBuffer()) return null
  if (reads === undefined && readsIntoGiven(socket)) return null
  // the handle goes on reading (a socket with nothing held reads): only who is told changes
  s._handle = null
  const record = handle as unknown as Record<symbol, unknown>
  record[ownerSymbol!] = null
  handle.rp4Socket = undefined
  handle.rp4Reader = undefined
  handle.rp4Buffer = undefined
  socket.destroy()
  // a handle that read through Node's own allocation reads into the shared buffer from now on (and
  // keeps doing so once unparked: core/read-buffers.ts `adoptReads`)
  if (reads === undefined) handle.useUserBuffer(sharedReadBuffer())
  handle.rp4Parked = owner
  handle.onread = onParkedRead
  if (!handle.reading) {
    handle.reading = true
    const err = handle.readStart()
    if (err !== 0) process.nextTick(endParked, handle, err)
  }
  return handle
}

function endParked (handle: ParkedHandle, status: number): void {
  const owner = handle.rp4Parked
  if (owner === undefined) return
  try {
    owner.onParkedEnd(status)
  } catch (err) {
    owner.onInternalError(err)
  }
}

function onParkedRead (this: ParkedHandle): unknown {
  const length = readState![kReadBytes]
  const owner = this.rp4Parked
  if (length === 0 || owner === undefined) return undefined
  try {
    if (length > 0) owner.onParkedData(Buffer.from(sharedReadBuffer().subarray(0, length)))
    else owner.onParkedEnd(length)
  } catch (err) {
    owner.onInternalError(err)
  }
  // the handle keeps reading into the shared buffer
  return undefined
}

/**
 * A socket around a parked handle again, its reads going to the shared buffer as before it was
 * parked: hand it to `adoptReads` (core/read-buffers.ts) at once, before the handle's next read.
 * The handle goes on reading (its stream flows from its first 'data' listener or `resume()`, and
 * `pause()` stops the handle). Half-open and without Nagle's algorithm, as the listener's sockets.
 */
export function unparkHandle (handle: ParkedHandle): Socket {
  handle.rp4Parked = undefined
  // Nagle's algorithm is off already (the listener's sockets are made so): the socket knows it, and
  // a setNoDelay(true) asks the kernel nothing again
  return new net.Socket({ handle, allowHalfOpen: true, readable: true, writable: true, manualStart: true, noDelay: true } as net.SocketConstructorOpts)
}

/** Close a parked handle for good. */
export function closeHandle (handle: ParkedHandle): void {
  handle.rp4Parked = undefined
  handle.reading = false
  handle.readStop()
  handle.close()
}
