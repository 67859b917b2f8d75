/**
 * The keys that encrypt session tickets (resumption without a full handshake, RFC 5077 and TLS 1.3
 * PSK tickets), rotated on a schedule: a ticket key that never changes turns into a long-term
 * secret, and whoever steals it can decrypt every recorded session resumed with it (no forward
 * secrecy). Mozilla's guidance: rotate at least daily.
 *
 * One object holds them for every certificate context of a listener, so that a ticket resumes
 * whichever certificate issued it and after a reload; it is also the one thing to share when
 * several worker processes must accept each other's tickets. For that, the keys can come from
 * outside: `TicketKeys.following(source)` makes no keys and runs no schedule of its own, it takes
 * the source's key and each one it sends later (a primary process rotating one key for all its
 * workers; the library's `ticketKeys` option). A TicketKeys that rotates is itself such a
 * source, so a primary can hold one and forward what it `subscribe`s to.
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

/**
 * Keys given from outside. `current` is the key to use now; `subscribe` calls `onKey` with every
 * later key, in order, until the function it returns is called. Keys are TICKET_KEY_BYTES long.
 */
export interface TicketKeySource {
  readonly current: Buffer
  subscribe (onKey: (key: Buffer) => void): () => void
}

/** Holders of contexts made with the keys (certificate stores): told to install new keys. */
export interface TicketKeyUser {
  ticketKeysChanged (key: Buffer): void
}

interface NativeContext { context: { setTicketKeys (key: Buffer): void } }

export class TicketKeys implements Timed, TicketKeySource {
  #key: Buffer
  readonly #interval: number
  readonly #users = new Set<TicketKeyUser>()
  readonly #subscribers = new Set<(key: Buffer) => void>()
  /** Stops following a source (`following`); null: the keys are made here. */
  #unsubscribe: (() => void) | null = null
  /** How many times the keys changed (rotations and `set`). */
  rotations = 0
  deadline = 0

  /**
   * @param interval ms between rotations; 0: never
   * @param scheduled false: `interval` only sets the tickets' lifetime, keys change by `set` alone
   *   (another process rotates them on that schedule: with workers, the primary)
   */
  constructor (interval: number, key: Buffer = randomBytes(TICKET_KEY_BYTES), scheduled = true) {
    this.#key = checked(key)
    this.#interval = interval
    if (interval > 0 && scheduled) {
      this.deadline = clock.after(interval)
      clock.add(this)
    }
  }

  /**
   * Keys that follow `source`: its current key now, each new one as it comes; nothing rotates
   * here. Throws a TypeError when a key is not TICKET_KEY_BYTES long (a later one: not taken,
   * reported through `onError`, the previous key stays).
   * @param interval how often the source rotates, ms (the tickets' lifetime); 0: unknown (a day)
   */
  static following (source: TicketKeySource, interval = 0, onError: (error: Error) => void = () => {}): TicketKeys {
    if (!Buffer.isBuffer(source.current)) throw new TypeError(`session ticket keys must be a Buffer of ${TICKET_KEY_BYTES} bytes`)
    const keys = new TicketKeys(interval, checked(Buffer.from(source.current)), false)
    keys.#unsubscribe = source.subscribe(key => {
      try {
        keys.set(Buffer.from(key))
      } catch (err) {
        onError(err as Error)
      }
    })
    return keys
  }

  get current (): Buffer { return this.#key }

  /** ms between rotations (here, or of the source followed); 0: never, or unknown. */
  get interval (): number { return this.#interval }

  /** Whether the keys come from a source (`following`) rather than a schedule here. */
  get followed (): boolean { return this.#unsubscribe !== null }

  subscribe (onKey: (key: Buffer) => void): () => void {
    this.#subscribers.add(onKey)
    return () => { this.#subscribers.delete(onKey) }
  }

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
    for (const onKey of this.#subscribers) onKey(this.#key)
  }

  onTimeout (): void {
    this.rotate()
    this.deadline = clock.after(this.#interval)
  }

  close (): void {
    clock.delete(this)
    this.#users.clear()
    this.#subscribers.clear()
    this.#unsubscribe?.()
    this.#unsubscribe = null
  }
}

/** Install `key` in a context made earlier (new handshakes issue and accept tickets under it). */
export function installTicketKey (context: SecureContext, key: Buffer): void {
  (context as unknown as NativeContext).context.setTicketKeys(key)
}

function checked (key: Buffer): Buffer {
  if (!Buffer.isBuffer(key)) throw new TypeError(`session ticket keys must be a Buffer of ${TICKET_KEY_BYTES} bytes`)
  if (key.length !== TICKET_KEY_BYTES) throw new TypeError(`session ticket keys are ${TICKET_KEY_BYTES} bytes, not ${key.length}`)
  return key
}
