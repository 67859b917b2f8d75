/**
 * One worker process under a primary (primary.ts; README: Workers): the primary sends it the
 * options it validated, and it serves them with its own `Proxy` on the listeners the primary
 * shares (cluster), answering the primary's requests: reload, drain, metrics, upstreams, ticket
 * keys, reopening the access log. It exits when the primary goes away (cluster does that).
 */
import { randomBytes } from 'node:crypto'
import { describeSystemError } from '../lib/core/errors.js'
import { ConfigError, createProxy, type Proxy, type ProxyOptions } from '../lib/index.js'
import { TICKET_KEY_BYTES, TicketKeys } from '../lib/tls/ticket-keys.js'
import { listenFailure, logProxyEvents } from './report.js'
import { isMessage, type FromWorker, type ReloadReply, type TicketKeyMap, type ToWorker } from './worker-messages.js'

const id = process.env.RP4_WORKER ?? String(process.pid)
let proxy: Proxy | null = null
let quiet = false
/** The keys the primary sent, by listener name, and the objects the listeners use. */
const keys = new Map<string, Buffer>()
const tickets = new Map<string, { interval: number, keys: TicketKeys }>()

function send (message: FromWorker, then?: () => void): void {
  if (process.send === undefined || !process.connected) {
    then?.()
    return
  }
  process.send(message, undefined, {}, () => then?.())
}

function log (line: string): void {
  if (!quiet) process.stderr.write(line + '\n')
}

/** The listener's shared keys: the primary's key for its name, not rotated here (the primary does). */
function ticketKeys (listener: string, interval: number): TicketKeys {
  const known = tickets.get(listener)
  if (known !== undefined && known.interval === interval) return known.keys
  const shared = new TicketKeys(interval, keys.get(listener) ?? randomBytes(TICKET_KEY_BYTES), false)
  tickets.set(listener, { interval, keys: shared })
  return shared
}

function takeKeys (map: TicketKeyMap): void {
  for (const [name, base64] of Object.entries(map)) {
    const key = Buffer.from(base64, 'base64')
    keys.set(name, key)
    tickets.get(name)?.keys.set(key)
  }
}

async function start (options: ProxyOptions): Promise<void> {
  try {
    proxy = createProxy({ ...options, worker: { id, ticketKeys } })
  } catch (err) {
    const lines = err instanceof ConfigError ? [...err.lines] : [(err as Error).message]
    send({ t: 'failed', code: 2, lines }, () => process.exit(2))
    return
  }
  logProxyEvents(proxy, log, `rp4 worker ${id}: `)
  try {
    await proxy.listen()
  } catch (err) {
    const where = listenFailure(err as NodeJS.ErrnoException, String(options.listen ?? '?'))
    send({ t: 'failed', code: 1, lines: [`cannot listen on ${where}: ${describeSystemError(err as Error)}`] }, () => process.exit(1))
    return
  }
  // an admin /drain reaches the primary, never a worker: a worker closes only when told to
  send({ t: 'listening', addresses: proxy.addresses() })
}

let draining = false
function drain (): void {
  if (draining) return
  draining = true
  if (proxy === null) process.exit(0)
  void proxy.drain().then(({ cut }) => {
    if (cut > 0) log(`rp4 worker ${id}: ${cut} connection${cut === 1 ? '' : 's'} still open after the drain timeout: closed`)
    // the channel closing is what the primary waits for: exit now
    process.exit(0)
  })
}

async function reload (options: ProxyOptions): Promise<ReloadReply> {
  if (proxy === null) return { ok: false, problems: ['this worker is not serving yet'] }
  try {
    const { notes } = await proxy.update(options)
    return { ok: true, notes }
  } catch (err) {
    return { ok: false, problems: err instanceof ConfigError ? [...err.lines] : [describeSystemError(err as Error)] }
  }
}

process.on('message', (message: unknown) => {
  if (!isMessage(message)) return
  const m = message as ToWorker
  switch (m.t) {
    case 'start':
      quiet = m.quiet
      takeKeys(m.tickets)
      void start(m.options)
      return
    case 'tickets':
      takeKeys(m.tickets)
      return
    case 'reload':
      void reload(m.options).then(value => send({ t: 'reply', seq: m.seq, value }))
      return
    case 'metrics':
      if (proxy?.metrics == null) send({ t: 'reply', seq: m.seq, value: [] })
      else void proxy.metrics.registry.getMetricsAsJSON().then(value => send({ t: 'reply', seq: m.seq, value }))
      return
    case 'upstreams':
      send({ t: 'reply', seq: m.seq, value: proxy?.upstreams() ?? [] })
      return
    case 'drain':
      drain()
      return
    case 'reopen':
      proxy?.reopenLogs()
  }
})

// the primary passes signals on; a signal sent to the whole group (a terminal's Ctrl-C, systemd's
// KillMode=control-group) reaches the workers too, and means the same
process.on('SIGTERM', drain)
process.on('SIGINT', drain)
// SIGHUP's reload is the primary's to validate and pass on: alone, it would kill a worker
process.on('SIGHUP', () => {})
// without a handler SIGUSR1 would open Node's inspector
process.on('SIGUSR1', () => proxy?.reopenLogs())

send({ t: 'ready' })

process.on('uncaughtException', err => {
  const lines = (err.stack ?? String(err)).split('\n').slice(0, 8)
  process.stderr.write(`rp4 worker ${id}: ${lines.join('\n')}\n`)
  send({ t: 'fatal', lines }, () => process.exit(70))
  // a channel that does not take the message must not keep a broken worker alive
  setTimeout(() => process.exit(70), 1000).unref()
})
