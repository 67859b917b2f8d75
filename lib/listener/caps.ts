/**
 * Connection caps at accept time: open client connections in all, and per client IP (IPv6
 * clients grouped by /64: one host usually holds the whole prefix). A connection is counted from
 * its accept to its socket's `close`, whatever it became (HTTP, TLS, raw TCP), so the counts
 * follow the sockets and nothing else has to report back.
 */
import type { Socket } from 'node:net'
import type { Address } from './access.js'

const kKey = Symbol('rp4.capKey')

interface CountedSocket extends Socket { [kKey]: number | string, [kCaps]: ConnectionCaps }
const kCaps = Symbol('rp4.caps')

export const enum Admission { OK, GLOBAL, PER_IP }

/** The per-IP key: the IPv4 address as a number, or the first 64 bits of an IPv6 address. */
function keyOf (address: Address): number | string {
  return address.v6 ? address.words[0] + ':' + address.words[1] : address.words[0]
}

export class ConnectionCaps {
  readonly max: number
  readonly maxPerIp: number
  readonly #perIp = new Map<number | string, number>()
  #open = 0

  constructor (max: number, maxPerIp: number) {
    this.max = max
    this.maxPerIp = maxPerIp
  }

  /** Connections counted and not closed yet. */
  get open (): number { return this.#open }

  /** Open connections of the client at this address (its /64 for IPv6). */
  openFrom (address: Address): number { return this.#perIp.get(keyOf(address)) ?? 0 }

  /** Count the socket if both caps allow it; it is uncounted on its `close`. */
  admit (socket: Socket, address: Address): Admission {
    if (this.#open >= this.max) return Admission.GLOBAL
    const key = keyOf(address)
    const count = this.#perIp.get(key) ?? 0
    if (count >= this.maxPerIp) return Admission.PER_IP
    this.#perIp.set(key, count + 1)
    this.#open++
    const counted = socket as CountedSocket
    counted[kKey] = key
    counted[kCaps] = this
    socket.once('close', onCountedClose)
    return Admission.OK
  }

  release (key: number | string): void {
    this.#open--
    const count = this.#perIp.get(key) ?? 0
    if (count <= 1) this.#perIp.delete(key)
    else this.#perIp.set(key, count - 1)
  }
}

function onCountedClose (this: CountedSocket): void {
  this[kCaps].release(this[kKey])
}
