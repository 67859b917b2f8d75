/**
 * Options in, one frozen and validated config out. Everything that can be decided at startup is
 * decided here, so that the hot path reads plain fields.
 */
import { parseHostPort, formatHostPort, type HostPort } from './address.js'
import type { ProxyOptions, TimeoutOptions, UpstreamOptions } from './options.js'

export interface TargetConfig extends HostPort {
  /** `HOST:PORT` as shown in logs and events, and sent as Host to HTTP/1.0 requests without one. */
  authority: string
}

export interface Config {
  listen: HostPort
  targets: readonly TargetConfig[]
  timeouts: Readonly<TimeoutOptions>
  upstream: Readonly<UpstreamOptions>
  maxPipelinedRequests: number
  maxHeaderSize: number
  /** The value rp4 adds as its hop to Via, e.g. `1.1 rp4`. */
  via: string
}

export const DEFAULT_TIMEOUTS: Readonly<TimeoutOptions> = Object.freeze({
  connect: 5_000,
  response: 60_000,
  clientIdle: 60_000,
  requestHead: 10_000,
  upstreamIdle: 30_000,
  failedTarget: 10_000,
})

export const DEFAULT_UPSTREAM: Readonly<UpstreamOptions> = Object.freeze({
  maxConnections: 256,
  maxQueue: 4096,
  pipelining: 1,
})

export const DEFAULTS = Object.freeze({
  maxPipelinedRequests: 32,
  maxHeaderSize: 65_536,
  via: 'rp4',
})

const TOP_KEYS = new Set(['listen', 'targets', 'timeouts', 'upstream', 'maxPipelinedRequests', 'maxHeaderSize', 'via'])

function fail (message: string): never {
  throw new TypeError(message)
}

function checkKeys (value: object, allowed: Iterable<string>, where: string): void {
  const known = new Set(allowed)
  for (const key of Object.keys(value)) {
    if (!known.has(key)) fail(`unknown option ${where}${key}`)
  }
}

function integer (value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(`option ${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`)
  }
  return value
}

function section<T extends object> (input: unknown, defaults: Readonly<T>, name: string, min: number, max: number): Readonly<T> {
  if (input === undefined) return defaults
  if (typeof input !== 'object' || input === null) fail(`option ${name} must be an object`)
  checkKeys(input, Object.keys(defaults), name + '.')
  const out: Record<string, number> = { ...(defaults as Record<string, number>) }
  for (const [key, value] of Object.entries(input)) {
    if (value !== undefined) out[key] = integer(value, `${name}.${key}`, min, max)
  }
  return Object.freeze(out) as unknown as Readonly<T>
}

export function resolveConfig (options: ProxyOptions): Config {
  if (typeof options !== 'object' || options === null) fail('options must be an object')
  checkKeys(options, TOP_KEYS, '')
  if (typeof options.listen !== 'string') fail('option listen must be a string "[HOST]:PORT"')
  const listen = parseHostPort(options.listen, { hostRequired: false, portZero: true })
  if (typeof listen === 'string') fail(`option listen: ${listen}`)

  if (!Array.isArray(options.targets) || options.targets.length === 0) fail('option targets must be a non-empty array of "HOST:PORT"')
  const targets = options.targets.map((text, i): TargetConfig => {
    if (typeof text !== 'string') fail(`option targets[${i}] must be a string "HOST:PORT"`)
    const parsed = parseHostPort(text, { hostRequired: true, portZero: false })
    if (typeof parsed === 'string') fail(`option targets[${i}]: ${parsed}`)
    return Object.freeze({ ...parsed, authority: formatHostPort(parsed.host, parsed.port) })
  })

  const timeouts = section(options.timeouts, DEFAULT_TIMEOUTS, 'timeouts', 1, 86_400_000)
  const upstream = section(options.upstream, DEFAULT_UPSTREAM, 'upstream', 0, 1_000_000)
  integer(upstream.maxConnections, 'upstream.maxConnections', 1, 1_000_000)
  integer(upstream.pipelining, 'upstream.pipelining', 1, 1024)

  const via = options.via ?? DEFAULTS.via
  if (typeof via !== 'string' || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(via)) fail('option via must be an HTTP token, e.g. "rp4"')

  return Object.freeze({
    listen: Object.freeze(listen),
    targets: Object.freeze(targets),
    timeouts,
    upstream,
    maxPipelinedRequests: options.maxPipelinedRequests === undefined
      ? DEFAULTS.maxPipelinedRequests
      : integer(options.maxPipelinedRequests, 'maxPipelinedRequests', 1, 1024),
    maxHeaderSize: options.maxHeaderSize === undefined
      ? DEFAULTS.maxHeaderSize
      : integer(options.maxHeaderSize, 'maxHeaderSize', 256, 1_048_576),
    via: '1.1 ' + via,
  })
}
