/**
 * The primary of workers (README: Workers): with `workers` above 1, the process `rp4 run` or
 * `rp4 listen` starts serves nothing itself. It starts N workers (worker.ts) with Node's cluster,
 * which shares each listening socket with them: `round-robin`, the primary accepts and hands each
 * connection to the next worker (cluster's SCHED_RR), or `kernel`, every worker accepts on the
 * shared socket (SCHED_NONE); perf/README.md: Workers has the measurement.
 *
 * What the primary does:
 * - validates the configuration once, and every reload once, before a worker sees it;
 * - restarts a worker that dies, after 100 ms doubling to 5 s; 5 deaths within 30 s is a crash
 *   loop: rp4 stops (exit 1) naming the last death's exit code or signal and its error lines.
 *   A worker that cannot start (a file it cannot use, an address it cannot listen on) stops rp4
 *   at once with its message: a restart would fail the same way;
 * - passes signals on: SIGHUP reloads every worker (a bad file changes nothing), SIGTERM/SIGINT
 *   drain every worker then exit (a second one exits at once), SIGUSR1 reopens their access logs;
 * - serves the admin endpoint (one per rp4, not one per worker), whose /metrics sums the
 *   workers' metrics and whose /upstreams merges their views;
 * - makes the TLS session ticket keys, one per listener, rotated on the listener's schedule and
 *   sent to every worker, so that a ticket resumes whichever worker the client reaches next.
 */
import cluster, { type Worker } from 'node:cluster'
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import client from 'prom-client'
import { AdminEndpoint, type AdminSubject, type UpstreamState } from '../lib/admin/admin.js'
import { describeSystemError } from '../lib/core/errors.js'
import { ConfigError, loadConfig, type Model, type ProxyOptions } from '../lib/index.js'
import { TICKET_KEY_BYTES } from '../lib/tls/ticket-keys.js'
import { hostPort, listenFailure, startup } from './report.js'
import { isMessage, type FromWorker, type ReloadReply, type TicketKeyMap, type ToWorker } from './worker-messages.js'

/** Deaths within CRASH_WINDOW ms that make a crash loop. */
export const CRASH_LIMIT = 5
export const CRASH_WINDOW = 30_000
const BACKOFF_FIRST = 100
const BACKOFF_CAP = 5_000
/** How long a worker may take to answer a scrape or an /upstreams: one that does not is left out. */
const ASK_TIMEOUT = 2_000
/** A reload may open listeners and read certificates. */
const RELOAD_TIMEOUT = 30_000

interface Slot {
  /** 1 to N: the `worker` label; a restarted worker takes its predecessor's slot. */
  readonly id: number
  worker: Worker | null
  listening: boolean
  addresses: Array<{ name: string, address: AddressInfo | null }>
  /** Error lines the worker sent before dying, if any. */
  lines: string[]
  restart: NodeJS.Timeout | null
}

export interface PrimaryOptions {
  options: ProxyOptions
  model: Model
  quiet: boolean
  file: string | null
  version: string
}

export function runPrimary (settings: PrimaryOptions): Promise<number> {
  return new Primary(settings).run()
}

class Primary implements AdminSubject {
  model: Model
  #options: ProxyOptions
  readonly #quiet: boolean
  readonly #file: string | null
  readonly #version: string
  readonly #slots: Slot[] = []
  readonly #deaths: number[] = []
  #restarts = 0
  #stopping = false
  #started = false
  #finish: (code: number) => void = () => {}
  #admin: AdminEndpoint | null = null
  #seq = 0
  readonly #pending = new Map<number, { resolve: (value: unknown) => void, timer: NodeJS.Timeout }>()
  readonly #keys = new Map<string, { key: Buffer, interval: number, timer: NodeJS.Timeout | null }>()
  readonly #registry = new client.Registry()

  constructor (settings: PrimaryOptions) {
    this.model = settings.model
    this.#options = settings.options
    this.#quiet = settings.quiet
    this.#file = settings.file
    this.#version = settings.version
    for (let i = 1; i <= settings.model.workers; i++) this.#slots.push({ id: i, worker: null, listening: false, addresses: [], lines: [], restart: null })
    const slots = this.#slots
    const registers = [this.#registry]
    // eslint-disable-next-line no-new
    new client.Gauge({ name: 'rp4_workers', help: 'worker processes: configured, and serving now', labelNames: ['state'], registers, collect () {
      this.set({ state: 'configured' }, slots.length)
      this.set({ state: 'serving' }, slots.filter(s => s.listening).length)
    } })
    const primary = this
    // eslint-disable-next-line no-new
    new client.Counter({ name: 'rp4_worker_restarts_total', help: 'workers started again after one died', registers, collect () {
      this.reset()
      this.inc(primary.#restarts)
    } })
    this.#syncKeys(settings.model)
  }

  #log (line: string): void {
    if (!this.#quiet) process.stderr.write(line + '\n')
  }

  run (): Promise<number> {
    const done = new Promise<number>(resolve => { this.#finish = resolve })
    cluster.schedulingPolicy = this.model.workerScheduling === 'kernel' ? cluster.SCHED_NONE : cluster.SCHED_RR
    cluster.setupPrimary({ exec: fileURLToPath(new URL('./worker.js', import.meta.url)), args: [] })
    for (const slot of this.#slots) this.#fork(slot)
    process.on('SIGHUP', () => {
      if (this.reload === null) this.#log('rp4: SIGHUP: rp4 listen has no file to read again (rp4 run FILE reloads FILE)')
      else void this.reload()
    })
    process.on('SIGUSR1', () => this.#broadcast({ t: 'reopen' }))
    process.on('SIGINT', () => this.#signal('SIGINT'))
    process.on('SIGTERM', () => this.#signal('SIGTERM'))
    return done
  }

  #fork (slot: Slot): void {
    slot.restart = null
    slot.lines = []
    slot.listening = false
    const worker = slot.worker = cluster.fork({ RP4_WORKER: String(slot.id) })
    worker.on('message', (message: unknown) => { if (isMessage(message)) this.#message(slot, worker, message as FromWorker) })
    worker.on('exit', (code, signal) => this.#exited(slot, worker, code, signal))
  }

  #message (slot: Slot, worker: Worker, message: FromWorker): void {
    switch (message.t) {
      case 'ready':
        if (!this.#stopping) this.#send(worker, { t: 'start', options: this.#options, quiet: this.#quiet, tickets: this.#ticketMap() })
        return
      case 'listening':
        slot.listening = true
        slot.addresses = message.addresses
        if (!this.#started && this.#slots.every(s => s.listening)) void this.#allListening()
        return
      case 'failed':
        // it would fail the same way again: no restart
        slot.lines = message.lines
        this.#stop(message.code, [`worker ${slot.id} could not start:`, ...message.lines])
        return
      case 'fatal':
        slot.lines = message.lines
        return
      case 'reply': {
        const pending = this.#pending.get(message.seq)
        if (pending === undefined) return
        this.#pending.delete(message.seq)
        clearTimeout(pending.timer)
        pending.resolve(message.value)
      }
    }
  }

  async #allListening (): Promise<void> {
    this.#started = true
    const admin = this.model.admin
    if (admin !== null) {
      this.#admin = new AdminEndpoint(this, admin, { text: () => this.#metrics() })
      try {
        await this.#admin.listen()
      } catch (err) {
        const where = listenFailure(err as NodeJS.ErrnoException, `${admin.listen.host}:${admin.listen.port}`)
        this.#admin = null
        this.#stop(1, [`cannot listen on ${where}: ${describeSystemError(err as Error)}`])
        return
      }
    }
    if (this.#stopping) return
    const address = this.#admin?.address() ?? null
    const policy = this.model.workerScheduling === 'kernel' ? 'the kernel spreading connections' : 'round-robin'
    this.#log(`rp4 ${this.#version} listening on ${startup(this.model, this.#slots[0].addresses)}; ${this.#slots.length} workers (${policy})${address === null ? '' : `; admin endpoint on ${hostPort(address)}`}`)
  }

  #exited (slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return
    slot.worker = null
    slot.listening = false
    if (this.#stopping) {
      if (this.#slots.every(s => s.worker === null)) void this.#closed()
      return
    }
    const how = signal !== null ? `signal ${signal}` : `exit code ${code ?? '?'}`
    const lines = slot.lines.length > 0 ? slot.lines : []
    if (!this.#started) {
      this.#stop(1, [`worker ${slot.id} died before it was serving (${how})${lines.length > 0 ? ':' : ''}`, ...lines])
      return
    }
    const now = Date.now()
    this.#deaths.push(now)
    while (this.#deaths.length > 0 && this.#deaths[0] <= now - CRASH_WINDOW) this.#deaths.shift()
    if (this.#deaths.length >= CRASH_LIMIT) {
      this.#stop(1, [`workers died ${this.#deaths.length} times within ${CRASH_WINDOW / 1000}s, stopping rather than restarting them in a loop; the last, worker ${slot.id}, ended with ${how}${lines.length > 0 ? ':' : ''}`, ...lines])
      return
    }
    const delay = Math.min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (this.#deaths.length - 1))
    this.#log(`rp4: worker ${slot.id} ended with ${how}${lines.length > 0 ? `: ${lines[0]}` : ''}; starting it again in ${delay} ms`)
    slot.restart = setTimeout(() => {
      if (this.#stopping) return
      this.#restarts++
      this.#fork(slot)
    }, delay)
  }

  #send (worker: Worker, message: ToWorker): void {
    if (worker.isConnected()) worker.send(message, undefined, () => {})
  }

  #broadcast (message: ToWorker): void {
    for (const slot of this.#slots) if (slot.worker !== null) this.#send(slot.worker, message)
  }

  /** `message` to every serving worker; each answer (undefined for one that did not answer in time). */
  #ask (make: (seq: number) => ToWorker, timeout = ASK_TIMEOUT): Promise<unknown[]> {
    return Promise.all(this.#slots.filter(s => s.listening && s.worker !== null).map(slot => new Promise<unknown>(resolve => {
      const seq = ++this.#seq
      const timer = setTimeout(() => {
        this.#pending.delete(seq)
        resolve(undefined)
      }, timeout)
      this.#pending.set(seq, { resolve, timer })
      this.#send(slot.worker!, make(seq))
    })))
  }

  async #metrics (): Promise<{ contentType: string, body: string }> {
    const answers = await this.#ask(seq => ({ t: 'metrics', seq }))
    const sets = answers.filter((a): a is client.MetricObjectWithValues<client.MetricValue<string>>[] => Array.isArray(a))
    const sum = client.AggregatorRegistry.aggregate(sets)
    return { contentType: this.#registry.contentType, body: await sum.metrics() + await this.#registry.metrics() }
  }

  // ── AdminSubject ──

  /** Serving while any worker serves: one being started again does not make the whole rp4 unready. */
  get ready (): boolean {
    return this.#started && !this.#stopping && this.#slots.some(s => s.listening)
  }

  get draining (): boolean {
    return this.#stopping
  }

  /** Every worker's view merged: connections summed, up only where every worker has it up. */
  async upstreams (): Promise<UpstreamState[]> {
    const merged = new Map<string, UpstreamState>()
    for (const answer of await this.#ask(seq => ({ t: 'upstreams', seq }))) {
      if (!Array.isArray(answer)) continue
      for (const u of answer as UpstreamState[]) {
        const key = `${u.group}\0${u.target}`
        const seen = merged.get(key)
        if (seen === undefined) merged.set(key, { ...u })
        else {
          seen.open += u.open
          seen.idle += u.idle
          seen.waiting += u.waiting
          seen.up &&= u.up
        }
      }
    }
    return [...merged.values()]
  }

  drain (): Promise<{ cut: number }> {
    this.#stop(0, [])
    return Promise.resolve({ cut: 0 })
  }

  get reload (): (() => Promise<{ ok: true } | { ok: false, problems: string[] }>) | null {
    const file = this.#file
    return file === null ? null : async () => await this.#reload(file)
  }

  async #reload (file: string): Promise<{ ok: true } | { ok: false, problems: string[] }> {
    const refuse = (problems: string[]): { ok: false, problems: string[] } => {
      this.#log(`rp4: ${file} not reloaded, the running configuration stays:`)
      for (const problem of problems) this.#log(`rp4:   ${problem}`)
      return { ok: false, problems }
    }
    if (this.#stopping) return refuse(['rp4 is draining: nothing to reload'])
    let loaded: { options: ProxyOptions, model: Model }
    try {
      loaded = loadConfig(file)
    } catch (err) {
      return refuse(err instanceof ConfigError ? [...err.lines] : [describeSystemError(err as Error)])
    }
    const replies = (await this.#ask(seq => ({ t: 'reload', seq, options: loaded.options }), RELOAD_TIMEOUT)) as Array<ReloadReply | undefined>
    const problems = [...new Set(replies.flatMap(r => r === undefined ? [`a worker did not answer within ${RELOAD_TIMEOUT / 1000}s`] : r.ok ? [] : r.problems))]
    if (problems.length > 0) {
      const some = replies.some(r => r?.ok === true)
      return refuse(some ? ['some workers reloaded and others did not; send SIGHUP again once this is fixed:', ...problems] : problems)
    }
    const notes = [...new Set(replies.flatMap(r => r?.ok === true ? r.notes : []))]
    if (loaded.model.workers !== this.model.workers || loaded.model.workerScheduling !== this.model.workerScheduling) notes.push('workers, workerScheduling: apply when rp4 restarts')
    if (JSON.stringify(loaded.model.admin) !== JSON.stringify(this.model.admin)) notes.push('admin: the admin endpoint keeps its settings until rp4 restarts')
    this.#options = loaded.options
    // what a restarted worker needs to know, and the endpoint's /config
    this.model = Object.freeze({ ...loaded.model, workers: this.model.workers, workerScheduling: this.model.workerScheduling, admin: this.model.admin })
    this.#syncKeys(loaded.model)
    this.#log(`rp4: ${file} reloaded${[...new Set(notes)].map(note => `; ${note}`).join('')}`)
    return { ok: true }
  }

  // ── session ticket keys ──

  /** A key per TLS-terminating listener: kept for names that stay, rotated on each one's schedule. */
  #syncKeys (model: Model): void {
    const names = new Set<string>()
    for (const listener of model.listeners) {
      const tls = listener.tls
      if (tls === null || (tls.certificates.length === 0 && tls.acme === null)) continue
      names.add(listener.name)
      const known = this.#keys.get(listener.name)
      if (known !== undefined && known.interval === tls.ticketKeyRotation) continue
      if (known?.timer != null) clearInterval(known.timer)
      const entry = { key: known?.key ?? randomBytes(TICKET_KEY_BYTES), interval: tls.ticketKeyRotation, timer: null as NodeJS.Timeout | null }
      if (entry.interval > 0) {
        entry.timer = setInterval(() => {
          entry.key = randomBytes(TICKET_KEY_BYTES)
          this.#broadcast({ t: 'tickets', tickets: this.#ticketMap() })
        }, entry.interval).unref()
      }
      this.#keys.set(listener.name, entry)
    }
    for (const [name, entry] of this.#keys) {
      if (names.has(name)) continue
      if (entry.timer !== null) clearInterval(entry.timer)
      this.#keys.delete(name)
    }
    this.#broadcast({ t: 'tickets', tickets: this.#ticketMap() })
  }

  #ticketMap (): TicketKeyMap {
    const map: TicketKeyMap = {}
    for (const [name, { key }] of this.#keys) map[name] = key.toString('base64')
    return map
  }

  // ── stopping ──

  #signal (signal: string): void {
    if (this.#stopping) {
      // a second signal: do not wait any longer
      for (const slot of this.#slots) slot.worker?.process.kill('SIGKILL')
      this.#finish(130)
      return
    }
    const seconds = this.model.drainTimeout / 1000
    this.#log(`rp4: ${signal}: draining ${this.#slots.length} workers: not accepting, waiting up to ${seconds}s for requests in flight (a second ${signal} exits at once)`)
    this.#stop(0, [])
  }

  #code = 0

  /** Drain every worker, then exit with `code`, saying `lines` first (the reason). */
  #stop (code: number, lines: string[]): void {
    for (const line of lines) process.stderr.write(`rp4: ${line}\n`)
    if (this.#stopping) return
    this.#stopping = true
    this.#code = code
    for (const slot of this.#slots) {
      if (slot.restart !== null) clearTimeout(slot.restart)
      slot.restart = null
    }
    for (const entry of this.#keys.values()) if (entry.timer !== null) clearInterval(entry.timer)
    this.#broadcast({ t: 'drain' })
    if (this.#slots.every(s => s.worker === null)) {
      void this.#closed()
      return
    }
    // a worker that does not finish its drain in time (plus a margin) is killed
    setTimeout(() => {
      for (const slot of this.#slots) slot.worker?.process.kill('SIGKILL')
    }, this.model.drainDelay + this.model.drainTimeout + 5_000).unref()
  }

  async #closed (): Promise<void> {
    await this.#admin?.close()
    this.#finish(this.#code)
  }
}
