/**
 * Prometheus metrics, exposed with prom-client (the maintained Node client; its text format is
 * what every Prometheus scrapes). Two kinds:
 *
 * - Per request, told by the proxy's core (`request`, with the session's own figures: no event
 *   record is built for it) and from the `tcpSession` event: request counts by route, method
 *   and status class, latency histograms (whole request, upstream first byte, upstream connect),
 *   body bytes both ways, retries. They are plain numbers in cells looked up once per distinct
 *   label set (series.ts), so a request costs a Map lookup and a few additions; prom-client reads
 *   them at scrape time (its own Counter and Histogram hash their labels on every update: +39%
 *   CPU per small request, measured with `node dist/perf/run.js --metrics-cost 3`).
 * - At scrape time, from the proxy's own counters (`collect`): connections open on both sides,
 *   idle and open upstream connections and pool waits per target, target health, refusals and
 *   failures by error code (rate limits, access lists, caps, TLS handshakes among them), access
 *   log lines dropped, TLS handshakes by version and resumption and their failures by reason,
 *   retry budgets and circuit breakers per group, cache sizes, the TLS session caches; and the process (event-loop lag, heap, RSS, open fds) from prom-client's
 *   default metrics.
 *
 * Under workers (bin/primary.ts) every worker keeps its own registry, and the primary sums them
 * at scrape time (prom-client's `AggregatorRegistry.aggregate`): counters and histograms are
 * rp4's totals; gauges of connections and pool waits are summed too (what is open in all),
 * `rp4_ready` and `rp4_upstream_up` take the minimum (ready only when every worker is; a target
 * counts as up only where every worker's checks say so), weights the maximum. The process
 * metrics (heap, RSS, event-loop lag, fds) carry a `worker` label: a sum of event-loop lags
 * means nothing, and one worker stalling must show. `rp4_worker_requests_total{worker}` says how
 * requests spread over the workers.
 */
import { createRequire } from 'node:module'
import type client from 'prom-client'
import { CounterFamily, HistogramFamily, MAX_SERIES, type CounterCell, type HistogramCell } from './series.js'
import type { RequestFigures, RequestMeter, TargetHealthEvent, TcpSessionInfo } from '../core/events.js'

/** What the metrics read at scrape time: the proxy's `stats()` and more. */
export interface MetricsSource {
  stats (): {
    connections: number
    clients: number
    parked: number
    tcp: number
    errors: Record<string, number>
    accessLog: { written: number, dropped: number } | null
    tlsSessions: Array<{ listener: string, entries: number, bytes: number, stored: number, hits: number, misses: number }>
    groups: Array<{ group: string, retries: number, budgetExhausted: number, circuitOpen: number }>
    caches: Array<{ route: string, entries: number, bytes: number }>
    tls: { handshakes: Array<{ listener: string, version: string, resumed: boolean, count: number }>, failures: Array<{ listener: string, reason: string, count: number }> }
  }
  upstreams (): Array<{ group: string, target: string, weight: number, open: number, idle: number, waiting: number, waits: number, up: boolean }>
  readonly ready: boolean
}

/** Seconds: from a fast local hop to a slow backend's minute. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

const CLASSES = ['0xx', '1xx', '2xx', '3xx', '4xx', '5xx']

function statusClass (status: number): string {
  return CLASSES[Math.min(5, Math.floor(status / 100))] ?? '0xx'
}

/** A route's series for one method and status class, and the route's own. */
interface RouteCells {
  requests: CounterCell
  latency: HistogramCell
  bytesIn: CounterCell
  bytesOut: CounterCell
  /** The requests family's generation the cells belong to: after it started again empty, they are looked up anew. */
  generation: number
}

interface TargetCells {
  firstByte: HistogramCell
  connect: HistogramCell
  retries: CounterCell
}

const require = createRequire(import.meta.url)

/**
 * prom-client, loaded by the first Metrics made: a process without the admin endpoint or workers
 * never holds it (about 13 MiB of RSS, measured by importing it into a bare Node).
 */
let promClient: typeof client | null = null
function loadClient (): typeof client {
  return (promClient ??= require('prom-client') as typeof client)
}

export class Metrics implements RequestMeter {
  readonly registry: client.Registry
  readonly #requests: CounterFamily
  readonly #latency: HistogramFamily
  readonly #firstByte: HistogramFamily
  readonly #connect: HistogramFamily
  readonly #bytesIn: CounterFamily
  readonly #bytesOut: CounterFamily
  readonly #retries: CounterFamily
  readonly #tcpSessions: client.Counter<'listener'>
  /** What a response adds to: by route, then the request's method as parsed, then status class (0 to 5). */
  readonly #routeCells = new Map<string, Map<string, Array<RouteCells | undefined>>>()
  readonly #targetCells = new Map<string, TargetCells>()

  readonly #workerRequests: CounterCell | null = null
  readonly #cache: CounterFamily
  /** By route, then what the cache did: found without a key string built per request. */
  readonly #cacheCells = new Map<string, Map<string, CounterCell>>()
  readonly #health: client.Counter<'group' | 'target' | 'state' | 'reason'>

  /** @param worker this process's worker number under workers (a label on process metrics); null: a single process */
  constructor (source: MetricsSource, worker: string | null = null) {
    const client = loadClient()
    this.registry = new client.Registry()
    const registers = [this.registry]
    const registry = this.registry
    this.#requests = new CounterFamily('rp4_requests_total', 'HTTP requests answered, by route, method and status class', registry)
    this.#latency = new HistogramFamily('rp4_request_duration_seconds', 'from the request head to the end of the response', registry, LATENCY_BUCKETS)
    this.#firstByte = new HistogramFamily('rp4_upstream_first_byte_seconds', 'from the request dispatched to the backend\'s response head', registry, LATENCY_BUCKETS)
    this.#connect = new HistogramFamily('rp4_upstream_connect_seconds', 'from the request dispatched to a backend connection ready for it (pool wait and connect)', registry, LATENCY_BUCKETS)
    this.#bytesIn = new CounterFamily('rp4_request_body_bytes_total', 'request body bytes read from clients', registry)
    this.#bytesOut = new CounterFamily('rp4_response_body_bytes_total', 'response body bytes sent to clients', registry)
    this.#retries = new CounterFamily('rp4_upstream_retries_total', 'tries beyond the first (failover, retry on a fresh connection), by the target that answered', registry)
    this.#cache = new CounterFamily('rp4_cache_requests_total', 'requests through a route\'s cache, by what it did: hit, stale (served stale), revalidated (a 304 from the backend refreshed it), miss', registry)
    this.#health = new client.Counter({ name: 'rp4_upstream_health_changes_total', help: 'targets taken out of rotation (state down) and put back (up), by reason: connect_failed, check_failed, outlier ejections, ...', labelNames: ['group', 'target', 'state', 'reason'], registers })
    this.#tcpSessions = new client.Counter({ name: 'rp4_tcp_sessions_total', help: 'relayed TCP connections closed, by listener', labelNames: ['listener'], registers })

    const gauge = (name: string, help: string, labelNames: string[], collect: (g: client.Gauge) => void, aggregator: client.Aggregator = 'sum'): void => {
      // eslint-disable-next-line no-new
      new client.Gauge({ name, help, labelNames, registers, aggregator, collect () { this.reset(); collect(this) } })
    }
    gauge('rp4_client_connections', 'open client connections: all (as the caps count them), HTTP, of those the idle ones parked (timeouts.clientPark), relayed TCP', ['kind'], g => {
      const s = source.stats()
      g.set({ kind: 'all' }, s.connections)
      g.set({ kind: 'http' }, s.clients)
      g.set({ kind: 'parked' }, s.parked)
      g.set({ kind: 'tcp' }, s.tcp)
    })
    gauge('rp4_upstream_connections', 'backend connections per target, open and idle (pooled)', ['group', 'target', 'state'], g => {
      for (const u of source.upstreams()) {
        g.set({ group: u.group, target: u.target, state: 'open' }, u.open)
        g.set({ group: u.group, target: u.target, state: 'idle' }, u.idle)
      }
    })
    gauge('rp4_upstream_pool_waiting', 'requests waiting for a backend connection, per target', ['group', 'target'], g => {
      for (const u of source.upstreams()) g.set({ group: u.group, target: u.target }, u.waiting)
    })
    // eslint-disable-next-line no-new
    new client.Counter({
      name: 'rp4_upstream_pool_waits_total',
      help: 'requests that waited in a target\'s queue for a backend connection (all its connections busy, at upstream.maxConnections)',
      labelNames: ['group', 'target'],
      registers,
      collect () {
        this.reset()
        for (const u of source.upstreams()) this.inc({ group: u.group, target: u.target }, u.waits)
      },
    })
    gauge('rp4_upstream_up', 'a target is tried (1) or skipped after a failed connect (0)', ['group', 'target'], g => {
      for (const u of source.upstreams()) g.set({ group: u.group, target: u.target }, u.up ? 1 : 0)
    }, 'min')
    gauge('rp4_upstream_weight', 'a target\'s configured weight', ['group', 'target'], g => {
      for (const u of source.upstreams()) g.set({ group: u.group, target: u.target }, u.weight)
    }, 'max')
    gauge('rp4_ready', '1 while accepting traffic, 0 from the first moment of a drain', [], g => g.set(source.ready ? 1 : 0), 'min')
    // counters that live in the proxy already: exposed as counters, read at scrape time
    // eslint-disable-next-line no-new
    new client.Counter({
      name: 'rp4_errors_total',
      help: 'failures and refusals by code: rate_limited, access_denied, too_many_connections, tls_handshake_failed, connect_failed, ...',
      labelNames: ['code'],
      registers,
      collect () {
        this.reset()
        for (const [code, n] of Object.entries(source.stats().errors)) this.inc({ code }, n)
      },
    })
    const counter = (name: string, help: string, labelNames: string[], collect: (c: client.Counter) => void): void => {
      // eslint-disable-next-line no-new
      new client.Counter({ name, help, labelNames, registers, collect () { this.reset(); collect(this) } })
    }
    counter('rp4_tls_handshakes_total', 'TLS handshakes rp4 completed, by listener, protocol version and session (full, or resumed from a ticket)', ['listener', 'version', 'session'], c => {
      for (const h of source.stats().tls.handshakes) c.inc({ listener: h.listener, version: h.version, session: h.resumed ? 'resumed' : 'full' }, h.count)
    })
    counter('rp4_tls_handshake_failures_total', 'TLS handshakes that failed, by listener and reason: OpenSSL\'s (no_shared_cipher, unsupported_protocol, an alert from the client...), timeout, aborted', ['listener', 'reason'], c => {
      for (const f of source.stats().tls.failures) c.inc({ listener: f.listener, reason: f.reason }, f.count)
    })
    counter('rp4_upstream_group_events_total', 'per upstream group: retries sent, retries the retry budget refused (budget_exhausted), requests the circuit breaker answered with 503 (circuit_open)', ['group', 'event'], c => {
      for (const g of source.stats().groups) {
        c.inc({ group: g.group, event: 'retries' }, g.retries)
        c.inc({ group: g.group, event: 'budget_exhausted' }, g.budgetExhausted)
        c.inc({ group: g.group, event: 'circuit_open' }, g.circuitOpen)
      }
    })
    gauge('rp4_cache_entries', 'responses a route\'s cache holds in memory', ['route'], g => {
      for (const c of source.stats().caches) g.set({ route: c.route }, c.entries)
    })
    gauge('rp4_cache_bytes', 'bytes a route\'s cache holds in memory', ['route'], g => {
      for (const c of source.stats().caches) g.set({ route: c.route }, c.bytes)
    })
    // eslint-disable-next-line no-new
    new client.Counter({
      name: 'rp4_access_log_lines_total',
      help: 'access log lines written, and dropped because the disk fell behind',
      labelNames: ['result'],
      registers,
      collect () {
        this.reset()
        const log = source.stats().accessLog
        if (log === null) return
        this.inc({ result: 'written' }, log.written)
        this.inc({ result: 'dropped' }, log.dropped)
      },
    })
    gauge('rp4_tls_session_cache', 'the TLS 1.2 session-ID cache per listener: sessions held and their bytes', ['listener', 'measure'], g => {
      for (const c of source.stats().tlsSessions) {
        g.set({ listener: c.listener, measure: 'entries' }, c.entries)
        g.set({ listener: c.listener, measure: 'bytes' }, c.bytes)
      }
    })
    // eslint-disable-next-line no-new
    new client.Counter({
      name: 'rp4_tls_session_cache_lookups_total',
      help: 'session IDs clients offered, found (resumed) or not, per listener',
      labelNames: ['listener', 'result'],
      registers,
      collect () {
        this.reset()
        for (const c of source.stats().tlsSessions) {
          this.inc({ listener: c.listener, result: 'hit' }, c.hits)
          this.inc({ listener: c.listener, result: 'miss' }, c.misses)
        }
      },
    })
    client.collectDefaultMetrics({ register: this.registry, prefix: 'rp4_', labels: worker === null ? undefined : { worker } })
    if (worker !== null) {
      this.#workerRequests = new CounterFamily('rp4_worker_requests_total', 'HTTP requests answered, by worker process: how the workers share the traffic', registry).cell(worker, { worker })
    }
  }

  /** A finished request, told by the proxy's core (RequestMeter): its figures read in place. */
  request (info: RequestFigures, requestMethod: string, durationMs: number, cache: string): void {
    const route = info.route === '' ? '-' : info.route
    const status = Math.min(5, Math.floor(info.status / 100))
    // route, then method as the parser gave it (one of llhttp's few dozen), then status class:
    // found without building a key string or a label per request
    let byMethod = this.#routeCells.get(route)
    if (byMethod === undefined) {
      // bounded: a client choosing methods must not grow this without end (the families are too)
      if (this.#routeCells.size >= MAX_SERIES) this.#routeCells.clear()
      this.#routeCells.set(route, byMethod = new Map())
    }
    let byStatus = byMethod.get(requestMethod)
    if (byStatus === undefined) byMethod.set(requestMethod, byStatus = [])
    let cells = byStatus[status]
    if (cells === undefined || cells.generation !== this.#requests.generation) {
      const method = methodLabel(requestMethod)
      const key = route + '\0' + method + '\0' + String(status)
      const labels = { route }
      cells = {
        requests: this.#requests.cell(key, { route, method, status: statusClass(info.status) }),
        latency: this.#latency.cell(route, labels),
        bytesIn: this.#bytesIn.cell(route, labels),
        bytesOut: this.#bytesOut.cell(route, labels),
        generation: this.#requests.generation,
      }
      byStatus[status] = cells
    }
    cells.requests.value++
    if (this.#workerRequests !== null) this.#workerRequests.value++
    this.#latency.observe(cells.latency, durationMs / 1000)
    if (cache !== '') {
      let byResult = this.#cacheCells.get(route)
      if (byResult === undefined) {
        if (this.#cacheCells.size >= MAX_SERIES) this.#cacheCells.clear()
        this.#cacheCells.set(route, byResult = new Map())
      }
      let c = byResult.get(cache)
      if (c === undefined) byResult.set(cache, c = this.#cache.cell(route + '\0' + cache, { route, result: cache }))
      c.value++
    }
    cells.bytesIn.value += info.bytesIn
    cells.bytesOut.value += info.bytesOut
    // a target chosen but never answering before the connection closed (status 0) counts as none, as in the access log
    const target = info.status === 0 ? null : info.target
    if (target !== null) {
      let t = this.#targetCells.get(target)
      if (t === undefined) {
        if (this.#targetCells.size >= MAX_SERIES) this.#targetCells.clear()
        const labels = { target }
        t = { firstByte: this.#firstByte.cell(target, labels), connect: this.#connect.cell(target, labels), retries: this.#retries.cell(target, labels) }
        this.#targetCells.set(target, t)
      }
      if (info.upstreamFirstByte >= 0) this.#firstByte.observe(t.firstByte, info.upstreamFirstByte / 1000)
      if (info.upstreamConnect >= 0) this.#connect.observe(t.connect, info.upstreamConnect / 1000)
      t.retries.value += info.retries
    }
  }

  readonly targetHealth = (event: TargetHealthEvent): void => {
    this.#health.inc({ group: event.group, target: event.target, state: event.up ? 'up' : 'down', reason: event.reason })
  }

  readonly tcpSession = (info: TcpSessionInfo): void => {
    this.#tcpSessions.inc({ listener: info.listener })
  }

  /** The text a Prometheus scrape reads. */
  async text (): Promise<{ contentType: string, body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'CONNECT'])

/** Methods beyond the standard ones are one label: a client must not invent series. */
function methodLabel (method: string): string {
  return METHODS.has(method) ? method : 'other'
}
