/**
 * Active health checks: one scheduler for every checked target of a proxy (one timer, armed for
 * the earliest check due, never a timer per target), each check on a connection of its own (never
 * one of the pool's request connections: a check must neither wait behind requests nor take a
 * connection a request could use). An HTTP check sends one request and reads the response with
 * the same llhttp parser as the proxy; a TCP check connects, optionally completes a TLS handshake.
 * `rise` successes in a row put a failing target back, `fall` failures in a row take it out.
 */
import net, { type Socket } from 'node:net'
import tls, { type ConnectionOptions } from 'node:tls'
import { clock, type Timed } from '../../core/clock.js'
import { kOwner } from '../../core/symbols.js'
import { CB_OK, HeadersResult, ParserType } from '../../http1/llhttp.js'
import { HttpParser, type MessageSink } from '../../http1/parser.js'
import type { MessageHead } from '../../http1/head.js'
import type { HealthCheckModel } from '../../model/model.js'

/** What the scheduler checks: one target of a group, and where the verdicts go. */
export interface CheckedTarget {
  readonly authority: string
  readonly config: Readonly<{ host: string, port: number, tls: Readonly<ConnectionOptions> | null }>
  readonly check: HealthCheckModel
  /** Gone from its group (service discovery): not checked while gone. */
  readonly removed: boolean
  /** `rise` or `fall` was reached: the target is in or out of rotation. */
  checked (passing: boolean, detail: string): void
}

/** Most bytes of a check's response that are read (the body match looks at these). */
const MAX_RESPONSE = 64 * 1024
/** Largest response head a check accepts. */
const MAX_HEAD = 16 * 1024

class Entry {
  readonly target: CheckedTarget
  due = 0
  /** Results in a row: positive successes, negative failures. */
  streak = 0
  /** The verdict in force: targets start in rotation (a restart must not empty a group). */
  passing = true
  running: Probe | null = null

  constructor (target: CheckedTarget) { this.target = target }
}

export class HealthScheduler {
  readonly #entries: Entry[] = []
  #timer: NodeJS.Timeout | null = null
  #armedFor = 0
  #closed = false
  readonly #random: () => number

  /** @param random jitter source in [0, 1) (fixed in specs) */
  constructor (random: () => number = Math.random) {
    this.#random = random
  }

  /** Check `target` from now on; its first check runs within a jittered fraction of the interval. */
  add (target: CheckedTarget): void {
    const entry = new Entry(target)
    // spread the first checks of many targets instead of sending them all at once
    entry.due = clock.refresh() + Math.floor(this.#random() * Math.min(target.check.interval, 1000))
    this.#entries.push(entry)
    this.#arm()
  }

  get size (): number { return this.#entries.length }

  /** Stop checking; probes in flight are dropped. */
  close (): void {
    this.#closed = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    for (const entry of this.#entries) entry.running?.abort()
  }

  #arm (): void {
    if (this.#closed) return
    let next = Infinity
    for (const entry of this.#entries) if (entry.running === null && entry.due < next) next = entry.due
    if (next === Infinity) return
    if (this.#timer !== null && this.#armedFor <= next) return
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#armedFor = next
    this.#timer = setTimeout(this.#fire, Math.max(0, next - clock.refresh()))
    this.#timer.unref()
  }

  readonly #fire = (): void => {
    this.#timer = null
    const now = clock.refresh()
    for (const entry of this.#entries) {
      if (entry.running !== null || entry.due > now) continue
      if (entry.target.removed) entry.due = now + entry.target.check.interval
      else entry.running = new Probe(this, entry)
    }
    this.#arm()
  }

  /** A probe ended: count it, maybe flip the verdict, and schedule the next one. */
  done (entry: Entry, ok: boolean, detail: string): void {
    entry.running = null
    if (this.#closed) return
    const check = entry.target.check
    entry.streak = ok ? Math.max(1, entry.streak + 1) : Math.min(-1, entry.streak - 1)
    if (entry.passing && -entry.streak >= check.fall) {
      entry.passing = false
      entry.target.checked(false, detail)
    } else if (!entry.passing && entry.streak >= check.rise) {
      entry.passing = true
      entry.target.checked(true, detail)
    }
    const spread = check.interval * check.jitter
    entry.due = clock.refresh() + check.interval + Math.floor((this.#random() * 2 - 1) * spread)
    this.#arm()
  }
}

interface OwnedSocket extends Socket { [kOwner]: Probe }

const enum ProbeState { CONNECTING, WAITING, DONE }

/** One check of one target. */
class Probe implements Timed, MessageSink {
  readonly #scheduler: HealthScheduler
  readonly #entry: Entry
  readonly #socket: OwnedSocket
  #parser: HttpParser | null = null
  #state = ProbeState.CONNECTING
  #status = 0
  #body = ''
  #read = 0
  #error = ''
  deadline: number

  constructor (scheduler: HealthScheduler, entry: Entry) {
    this.#scheduler = scheduler
    this.#entry = entry
    const { config, check } = entry.target
    const secure = check.tls ?? config.tls !== null
    // a raw TCP target has no TLS settings: the handshake is what is checked, not whom it is with
    const options = { ...(config.tls ?? { rejectUnauthorized: false }), host: config.host, port: config.port }
    const socket = (secure
      ? tls.connect(options as tls.ConnectionOptions)
      : net.connect({ host: config.host, port: config.port })) as OwnedSocket
    socket[kOwner] = this
    socket.on(secure ? 'secureConnect' : 'connect', onProbeConnect)
    socket.on('data', onProbeData)
    socket.on('end', onProbeEnd)
    socket.on('error', onProbeError)
    socket.on('close', onProbeClose)
    this.#socket = socket
    this.deadline = clock.after(check.timeout)
    clock.add(this)
  }

  onConnect (): void {
    const { check, authority } = this.#entry.target
    if (check.kind === 'tcp') {
      this.#finish(true, 'connected')
      return
    }
    this.#state = ProbeState.WAITING
    this.#parser = new HttpParser(ParserType.RESPONSE, this, MAX_HEAD, MAX_HEAD, 100)
    this.#socket.write(`${check.method} ${check.path} HTTP/1.1\r\nHost: ${check.host ?? authority}\r\nUser-Agent: rp4-health-check\r\nConnection: close\r\n\r\n`)
  }

  onData (chunk: Buffer): void {
    if (this.#parser === null || this.#state === ProbeState.DONE) return
    const ret = this.#parser.execute(chunk)
    // a callback may have finished the probe meanwhile
    if (ret !== 0 && (this.#state as ProbeState) !== ProbeState.DONE) this.#finish(false, 'malformed response')
  }

  onEnd (): void {
    if (this.#parser !== null && this.#state === ProbeState.WAITING) {
      // a body that ends with the connection
      this.#parser.finish()
      if ((this.#state as ProbeState) === ProbeState.WAITING) this.#complete()
    }
  }

  onError (err: Error): void {
    this.#error ||= (err as NodeJS.ErrnoException).code ?? err.message
  }

  onClose (): void {
    if (this.#state !== ProbeState.DONE) this.#finish(false, this.#error || (this.#state === ProbeState.CONNECTING ? 'connection closed' : 'closed before a response'))
  }

  onTimeout (): void {
    this.#finish(false, 'timed out')
  }

  // ---- the response ----

  onHead (head: MessageHead): number {
    if (head.status < 200) return HeadersResult.CONTINUE
    this.#status = head.status
    const check = this.#entry.target.check
    if (check.body === null) {
      this.#complete()
      return HeadersResult.SKIP_BODY
    }
    return HeadersResult.CONTINUE
  }

  onBody (body: Buffer): number {
    if (this.#read < MAX_RESPONSE) {
      const room = MAX_RESPONSE - this.#read
      this.#body += body.subarray(0, room).toString('latin1')
      this.#read += Math.min(room, body.length)
    }
    return CB_OK
  }

  onMessageComplete (): number {
    if (this.#status !== 0 && this.#state === ProbeState.WAITING) this.#complete()
    return CB_OK
  }

  #complete (): void {
    const check = this.#entry.target.check
    const status = this.#status
    if (!check.statuses.some(([low, high]) => status >= low && status <= high)) {
      this.#finish(false, `status ${status}`)
    } else if (check.body !== null && !this.#body.includes(check.body)) {
      this.#finish(false, `status ${status}, body without "${check.body}"`)
    } else {
      this.#finish(true, `status ${status}`)
    }
  }

  abort (): void {
    this.#state = ProbeState.DONE
    this.#cleanup()
  }

  #finish (ok: boolean, detail: string): void {
    if (this.#state === ProbeState.DONE) return
    this.#state = ProbeState.DONE
    this.#cleanup()
    this.#scheduler.done(this.#entry, ok, detail)
  }

  #cleanup (): void {
    clock.delete(this)
    this.deadline = 0
    this.#socket.destroy()
    // the parser is released on the next turn: this may run inside one of its callbacks
    const parser = this.#parser
    this.#parser = null
    if (parser !== null) process.nextTick(destroyParser, parser)
  }
}

function destroyParser (parser: HttpParser): void { parser.destroy() }

function onProbeConnect (this: OwnedSocket): void { this[kOwner].onConnect() }
function onProbeData (this: OwnedSocket, chunk: Buffer): void { this[kOwner].onData(chunk) }
function onProbeEnd (this: OwnedSocket): void { this[kOwner].onEnd() }
function onProbeError (this: OwnedSocket, err: Error): void { this[kOwner].onError(err) }
function onProbeClose (this: OwnedSocket): void { this[kOwner].onClose() }
