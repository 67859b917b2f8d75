/**
 * The messages between the primary (primary.ts) and its workers (worker.ts), over cluster's IPC
 * channel (JSON). Requests that want an answer carry a `seq` the reply repeats.
 */
import type { AddressInfo } from 'node:net'
import type { ProxyOptions } from '../lib/index.js'

/** Listener name → its 48-byte session ticket key, base64. */
export type TicketKeyMap = Record<string, string>

export type ToWorker =
  | { t: 'start', options: ProxyOptions, quiet: boolean, tickets: TicketKeyMap }
  | { t: 'reload', seq: number, options: ProxyOptions }
  | { t: 'metrics', seq: number }
  | { t: 'upstreams', seq: number }
  | { t: 'tickets', tickets: TicketKeyMap }
  | { t: 'drain' }
  | { t: 'reopen' }

export type FromWorker =
  /** Listening for the primary's messages (one sent before would be lost): send `start`. */
  | { t: 'ready' }
  | { t: 'listening', addresses: Array<{ name: string, address: AddressInfo | null }> }
  /** Could not start: a configuration problem (code 2) or an address it cannot listen on (1). */
  | { t: 'failed', code: number, lines: string[] }
  /** About to die of an error nobody caught: what the primary reports if it stops for it. */
  | { t: 'fatal', lines: string[] }
  | { t: 'reply', seq: number, value: unknown }

/** A worker's answer to `reload`. */
export type ReloadReply = { ok: true, notes: string[] } | { ok: false, problems: string[] }

/** Messages of rp4's own (prom-client's and cluster's internal ones go by too). */
export function isMessage (message: unknown): message is { t: string } {
  return typeof message === 'object' && message !== null && typeof (message as { t?: unknown }).t === 'string'
}
