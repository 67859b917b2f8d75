/**
 * Connection caps at accept time: open client connections in all, and, when asked for, per
 * client IP (IPv6 clients grouped by /64: one host usually holds the whole prefix). A connection is counted from
 * its accept to its socket's `close`, whatever it became (HTTP, TLS, raw TCP), so the counts
 * follow the sockets and nothing else has to report back.
 */
import type { Socket } from 'node:net'
import type { Address } from './access.js'

const kKey = Symbol('rp4.capKey')

/** The per-IP key, or null when there is no per-IP cap. */
type Key = number | string | null

interface CountedSocket extends Socket { [kKey]: Key, [kCaps]: ConnectionCaps }
const kCaps = Symbol('rp4.caps')

export const enum Admission { OK, GLOBAL, PER_IP }

/** The per-IP key: the IPv4 address as a number, or the first 64 bits of an IPv6 address. */
function keyOf (address: Address): number | string {
  return address.v6 ? address.words[0] + ':' + address.words[1] : address.words[0]
}

export class ConnectionCaps {
  max: number
  /** 0: no cap per client IP, and nothing counted per IP. */
  maxPerIp: number
  readonly #perIp = new Map<number | string, number>()
  #open = 0

  constructor (max: number, maxPerIp: number) {
    this.max = max
    this.maxPerIp = maxPerIp
  }

  /**
   * New caps after a reload; the connections open stay counted. A per-IP cap that was off counts
   * only connections accepted from now on (the ones open were never counted per IP).
   */
  update (max: number, maxPerIp: number): void {
    this.max = max
    if (maxPerIp === 0) this.#perIp.clear()
    this.maxPerIp = maxPerIp
  }

  /** Connections counted and not closed yet. */
  get open (): number { return this.#open }

  /** Open connections of the client at this address (its /64 for IPv6); always 0 without a per-IP cap. */
  openFrom (address: Address): number { return this.#perIp.get(keyOf(address)) ?? 0 }

  /** Count the socket if both caps allow it; it is uncounted on its `close`. */
  admit (socket: Socket, address: Address): Admission {
    if (this.#open >= this.max) return Admission.GLOBAL
    let key: Key = null
    if (this.maxPerIp > 0) {
      key = keyOf(address)
      const count = this.#perIp.get(key) ?? 0
      if (count >= this.maxPerIp) return Admission.PER_IP
      this.#perIp.set(key, count + 1)
    }
    this.#open++
    const counted = socket as CountedSocket
    counted[kKey] = key
    counted[kCaps] = this
    // 'close' comes once: a plain listener, not once()'s wrapper made per connection
    socket.on('close', onCountedClose)
    return Admission.OK
  }

  release (key: Key): void {
    this.#open--
    if (key === null) return
    const count = this.#perIp.get(key) ?? 0
    if (count <= 1) this.#perIp.delete(key)
    else this.#perIp.set(key, count - 1)
  }
}

/** A connection's count, carried from one socket to the next over the same connection (core/park.ts). */
export interface CountTicket { readonly caps: ConnectionCaps, readonly key: Key }

/** Stop counting on `socket`'s close, and give its count: null for a socket never counted. */
export function takeCount (socket: Socket): CountTicket | null {
  const counted = socket as CountedSocket
  const caps = counted[kCaps]
  if (caps === undefined) return null
  socket.removeListener('close', onCountedClose)
  return { caps, key: counted[kKey] }
}

/** `socket` carries the count of `ticket` on: uncounted on its `close`. */
export function giveCount (socket: Socket, ticket: CountTicket): void {
  const counted = socket as CountedSocket
  counted[kKey] = ticket.key
  counted[kCaps] = ticket.caps
  socket.on('close', onCountedClose)
}

/** The connection of `ticket` closed without a socket around it. */
export function dropCount (ticket: CountTicket): void {
  ticket.caps.release(ticket.key)
}

function onCountedClose (this: CountedSocket): void {
  this[kCaps].release(this[kKey])
}
