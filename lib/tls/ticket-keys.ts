/**
 * The keys that encrypt session tickets (resumption without a full handshake, RFC 5077 and TLS 1.3
 * PSK tickets), rotated on a schedule: a ticket key that never changes turns into a long-term
 * secret, and whoever steals it can decrypt every recorded session resumed with it (no forward
 * secrecy). Mozilla's guidance: rotate at least daily.
 *
 * One object holds them for every certificate context of a listener, so that a ticket resumes
 * whichever certificate issued it and after a reload; it is also the one thing to share when
 * several worker processes must accept each other's tickets (`set`).
 *
 * Node lets a context have one ticket key only: a ticket issued before a rotation no longer
 * resumes after it, and that client makes one full handshake. Tickets are given a lifetime of one
 * rotation interval (at most a day), so that a client is not told a ticket lasts longer than its key.
 */
import { randomBytes } from 'node:crypto'
import type { SecureContext } from 'node:tls'
import { clock, type Timed } from '../core/clock.js'

/** 16 bytes of name, 16 of HMAC secret, 16 of AES key: what OpenSSL's ticket format takes. */
export const TICKET_KEY_BYTES = 48

/** Holders of contexts made with the keys (certificate stores): told to install new keys. */
export interface TicketKeyUser {
  ticketKeysChanged (key: Buffer): void
}

interface NativeContext { context: { setTicketKeys (key: Buffer): void } }

export class TicketKeys implements Timed {
  #key: Buffer
  readonly #interval: number
  readonly #users = new Set<TicketKeyUser>()
  /** How many times the keys changed (rotations and `set`). */
  rotations = 0
  deadline = 0

  /**
   * @param interval ms between rotations; 0: never
   * @param rotates false: another process rotates them on that schedule and `set`s them here
   *   (workers: the primary), the interval only bounds the tickets' lifetime
   */
  constructor (interval: number, key: Buffer = randomBytes(TICKET_KEY_BYTES), rotates = true) {
    this.#key = checked(key)
    this.#interval = interval
    if (interval > 0 && rotates) {
      this.deadline = clock.after(interval)
      clock.add(this)
    }
  }

  get current (): Buffer { return this.#key }

  /** Seconds a ticket stays valid: one rotation interval, at most a day (OpenSSL's session timeout). */
  get lifetime (): number {
    const day = 86_400
    return this.#interval === 0 ? day : Math.max(1, Math.min(day, Math.floor(this.#interval / 1000)))
  }

  use (user: TicketKeyUser): void { this.#users.add(user) }
  release (user: TicketKeyUser): void { this.#users.delete(user) }

  /** New random keys now (what the schedule does). */
  rotate (): void {
    this.set(randomBytes(TICKET_KEY_BYTES))
  }

  /** These keys from now on (a key shared by another process). */
  set (key: Buffer): void {
    this.#key = checked(key)
    this.rotations++
    for (const user of this.#users) user.ticketKeysChanged(this.#key)
  }

  onTimeout (): void {
    this.rotate()
    this.deadline = clock.after(this.#interval)
  }

  close (): void {
    clock.delete(this)
    this.#users.clear()
  }
}

/** Install `key` in a context made earlier (new handshakes issue and accept tickets under it). */
export function installTicketKey (context: SecureContext, key: Buffer): void {
  (context as unknown as NativeContext).context.setTicketKeys(key)
}

function checked (key: Buffer): Buffer {
  if (key.length !== TICKET_KEY_BYTES) throw new TypeError(`session ticket keys are ${TICKET_KEY_BYTES} bytes, not ${key.length}`)
  return key
}
