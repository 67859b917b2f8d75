#!/usr/bin/env node
/**
 * The rp4 command: argv → the same validated options object `createProxy` takes → a running
 * proxy. Nothing here knows HTTP; it maps flags, reports errors on stderr and sets exit codes.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { runDemo } from './demo.js'
import { describeSystemError } from '../lib/core/errors.js'
import { createProxy, parseCidr, parseHostPort, parseTarget, DEFAULT_TIMEOUTS, DEFAULT_UPSTREAM, DEFAULT_LIMITS, DEFAULTS, type ProxyOptions, type Proxy } from '../lib/index.js'

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

const USAGE = `rp4 ${VERSION} - reverse proxy, HTTP/1.1 and TCP

Usage:
  rp4 listen [HOST]:PORT --to HOST:PORT [--to HOST:PORT ...] [options]
  rp4 listen [HOST]:PORT --to HOST:PORT --tcp [options]      raw TCP relay
  rp4 demo [[HOST]:PORT]      a demo origin with rp4 in front (default 127.0.0.1:8080)
  rp4 --help | --version

  [HOST]:PORT        where to accept connections; ":8080" or "8080" = every
                     interface (IPv4 and IPv6); "[::1]:8080" for an IPv6 address

  On one port rp4 tells protocols apart by the first bytes of each connection:
  HTTP/1.x is proxied; TLS is terminated (with --cert) or relayed untouched
  (by --sni). Anything else is closed, unless --tcp-to names where to relay it
  as TCP: then also TLS without a certificate, and a client silent for
  --detect-timeout (the server speaks first), go there.

Options:
  --to HOST:PORT              backend; repeat for several (round robin, failover
                              to the next one when a connect fails);
                              https://HOST[:PORT] speaks TLS to it
  --tcp                       relay every connection as raw TCP to the --to
                              backends (no HTTP, no detection)
  --tcp-idle-timeout DUR      a relayed TCP connection with no traffic either
                              way is closed (default ${ms(DEFAULT_TIMEOUTS.tcpIdle)})
  --tcp-to HOST:PORT          relay connections that are neither HTTP nor TLS
                              there as raw TCP; repeat for several (default:
                              none, such connections are closed)
  --detect-timeout DUR        with --tcp-to: a client silent this long is relayed
                              (default ${ms(DEFAULT_TIMEOUTS.detect)}); without: it is served HTTP
  --no-tcp-fallback           no --tcp-to (the default; accepted for old command lines)
  --cert FILE --key FILE      terminate TLS with this PEM certificate and key;
                              repeat for several (chosen by SNI, the first is
                              the default); reloaded when the files change
  --sni NAME=HOST:PORT        relay TLS for server name NAME (or *.domain)
                              untouched to HOST:PORT; repeat for several
  --tls-handshake-timeout DUR completing a TLS handshake (default ${ms(DEFAULT_TIMEOUTS.tlsHandshake)})
  --ca FILE                   trust this CA (PEM) for https:// backends instead
                              of the bundled roots; repeat for several
  --insecure-upstream         do not verify https:// backends' certificates
  --connect-timeout DUR       opening a backend connection (default ${ms(DEFAULT_TIMEOUTS.connect)})
  --timeout DUR               waiting for a response head, then 504 (default ${ms(DEFAULT_TIMEOUTS.response)})
  --client-idle-timeout DUR   idle keep-alive client connections (default ${ms(DEFAULT_TIMEOUTS.clientIdle)})
  --request-head-timeout DUR  receiving a complete request head, then 408 (default ${ms(DEFAULT_TIMEOUTS.requestHead)})
  --request-body-timeout DUR  a pause inside a request body, then 408 (default ${ms(DEFAULT_TIMEOUTS.requestBody)})
  --response-total-timeout DUR  a whole response, from the request sent to its last byte; 0 = no
                              limit (default 0: streams and large downloads have no natural end)
  --upstream-idle-timeout DUR idle pooled backend connections (default ${ms(DEFAULT_TIMEOUTS.upstreamIdle)})
  --failed-target-timeout DUR how long a backend that refused is skipped (default ${ms(DEFAULT_TIMEOUTS.failedTarget)})
  --max-conns N               connections per backend (default ${DEFAULT_UPSTREAM.maxConnections})
  --max-queue N               requests waiting for a backend connection, then 503 (default ${DEFAULT_UPSTREAM.maxQueue})
  --pipelining N              requests in flight per backend connection; 1 = off (default ${DEFAULT_UPSTREAM.pipelining})
  --max-pipelined N           requests in flight per client connection (default ${DEFAULTS.maxPipelinedRequests})
  --max-header-size BYTES     largest request or response head, then 431 (default ${DEFAULTS.maxHeaderSize})
  --max-request-line BYTES    longest request target, then 414 (default ${DEFAULTS.maxRequestLine})
  --max-headers N             most header fields in a head, then 431 (default ${DEFAULTS.maxHeaders})
  --max-body-size BYTES       largest request body, then 413; 0 = no limit (default ${DEFAULTS.maxBodySize})
  --min-data-rate BYTES       a request head or body slower than this per second, after 2s,
                              gets 408; 0 = no minimum (default ${DEFAULTS.minDataRate})
  --hide-header NAME          response header to remove; repeat (default: ${DEFAULTS.hideHeaders.join(', ')})
  --no-hide-headers           remove no identifying response header
  --intercept-errors          answer a backend's 502/503/504 with rp4's own page
                              (status kept) instead of passing the backend's response
  --backend-error-pages       pass a backend's 502/503/504 response as it is: the
                              default; accepted so that existing command lines work
  --allow-underscores-in-headers
                              pass request headers whose name contains "_" (by
                              default dropped: many backends read Transfer_Encoding
                              as Transfer-Encoding)
  --rate-limit RATE           requests per second per client IP (IPv6: per /64), then 429
                              with Retry-After (default: no limit)
  --rate-burst N              requests a client may send at once before the rate applies
                              (default: RATE rounded up)
  --allow CIDR                only clients in these IPs or ranges may connect;
                              repeat for several (10.0.0.0/8, 2001:db8::/32)
  --deny CIDR                 clients in these IPs or ranges may not connect,
                              whatever --allow says; repeat for several
  --access-file FILE          "allow CIDR" / "deny CIDR" lines (# comments), added
                              to --allow/--deny; re-read when it changes
  --max-connections N         open client connections in all; a new one over it
                              is closed at once (default and maximum: what the
                              open-file limit allows, 2 descriptors per connection;
                              here ${DEFAULT_LIMITS.maxConnections})
  --max-connections-per-ip N  open connections per client IP (IPv6: per /64); a new
                              one over it is closed at once; 0 = no cap (default 0)
  --access-log                one line per response on stderr
  -q, --quiet                 no startup line, no error lines
  -h, --help                  this help
  -v, --version               the version

  DUR is a number with a unit: 500ms, 5s, 2m (a bare number means milliseconds).

Exit status:
  0    stopped by SIGTERM or SIGINT, after requests in flight finished;
       --help, --version
  1    a runtime failure: the address cannot be listened on (in use, not
       permitted), or rp4 demo could not start
  2    a usage or configuration error: a bad flag, value or address, a
       certificate or access file that cannot be used
  130  a second SIGTERM or SIGINT cut that wait short

Examples:
  rp4 listen :8080 --to 127.0.0.1:3000
  rp4 listen 127.0.0.1:8080 --to 10.0.0.5:80 --to 10.0.0.6:80 --timeout 30s
  rp4 listen :5432 --to 10.0.0.7:5432 --tcp
  rp4 listen :443 --to 127.0.0.1:3000 --cert site.pem --key site.key
  rp4 listen :443 --to 10.0.0.5:443 --sni db.example.com=10.0.0.9:443
  rp4 listen :8080 --to 127.0.0.1:3000 --tcp-to 127.0.0.1:22
  rp4 listen :8080 --to https://api.internal:8443 --ca internal-ca.pem
  rp4 listen :8080 --to 127.0.0.1:3000 --allow 10.0.0.0/8 --deny 10.0.9.0/24
`

function ms (value: number): string {
  return value % 1000 === 0 ? value / 1000 + 's' : value + 'ms'
}

class UsageError extends Error {}

function duration (flag: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim())
  if (match === null) throw new UsageError(`${flag}: "${text}" is not a duration (e.g. 500ms, 5s, 2m)`)
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h']
  const value = Math.round(Number(match[1]) * factor)
  if (value < 1) throw new UsageError(`${flag}: "${text}" must be at least 1ms`)
  return value
}

function count (flag: string, text: string, min: number): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < min) throw new UsageError(`${flag}: "${text}" must be an integer of at least ${min}`)
  return Number(text)
}

interface Cli {
  options: ProxyOptions
  accessLog: boolean
  quiet: boolean
}

const FLAGS = {
  to: { type: 'string', multiple: true },
  'connect-timeout': { type: 'string' },
  timeout: { type: 'string' },
  'client-idle-timeout': { type: 'string' },
  'request-head-timeout': { type: 'string' },
  'request-body-timeout': { type: 'string' },
  'response-total-timeout': { type: 'string' },
  'upstream-idle-timeout': { type: 'string' },
  'failed-target-timeout': { type: 'string' },
  'max-conns': { type: 'string' },
  'max-queue': { type: 'string' },
  pipelining: { type: 'string' },
  'max-pipelined': { type: 'string' },
  'max-header-size': { type: 'string' },
  'max-request-line': { type: 'string' },
  'max-headers': { type: 'string' },
  'max-body-size': { type: 'string' },
  'min-data-rate': { type: 'string' },
  'hide-header': { type: 'string', multiple: true },
  'no-hide-headers': { type: 'boolean' },
  'intercept-errors': { type: 'boolean' },
  'backend-error-pages': { type: 'boolean' },
  'allow-underscores-in-headers': { type: 'boolean' },
  'rate-limit': { type: 'string' },
  'rate-burst': { type: 'string' },
  tcp: { type: 'boolean' },
  'tcp-idle-timeout': { type: 'string' },
  'detect-timeout': { type: 'string' },
  'tcp-to': { type: 'string', multiple: true },
  'no-tcp-fallback': { type: 'boolean' },
  cert: { type: 'string', multiple: true },
  key: { type: 'string', multiple: true },
  sni: { type: 'string', multiple: true },
  'tls-handshake-timeout': { type: 'string' },
  ca: { type: 'string', multiple: true },
  'insecure-upstream': { type: 'boolean' },
  allow: { type: 'string', multiple: true },
  deny: { type: 'string', multiple: true },
  'access-file': { type: 'string' },
  'max-connections': { type: 'string' },
  'max-connections-per-ip': { type: 'string' },
  'access-log': { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const

/** argv (without node and the script) → options; throws UsageError naming what is wrong. */
function parseCli (argv: string[]): Cli | 'help' | 'version' | { demo: string } {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: FLAGS, allowPositionals: true, strict: true })
  } catch (err) {
    // parseArgs names the flag: "Unknown option '--bogus'", "Option '--to <value>' argument missing"
    throw new UsageError((err as Error).message)
  }
  const { values, positionals } = parsed
  if (values.help === true) return 'help'
  if (values.version === true) return 'version'
  if (positionals.length === 0) throw new UsageError('missing command: rp4 listen [HOST]:PORT --to HOST:PORT')
  if (positionals[0] === 'demo') {
    const listen = positionals[1] ?? '127.0.0.1:8080'
    const check = parseHostPort(listen, { hostRequired: false, portZero: true })
    if (typeof check === 'string') throw new UsageError(`demo address: ${check}`)
    return { demo: listen }
  }
  if (positionals[0] !== 'listen') throw new UsageError(`unknown command "${positionals[0]}" (the command is "listen")`)
  if (positionals.length < 2) throw new UsageError('listen: missing address [HOST]:PORT')
  if (positionals.length > 2) throw new UsageError(`unexpected argument "${positionals[2]}"`)
  const listen = positionals[1]
  const listenCheck = parseHostPort(listen, { hostRequired: false, portZero: true })
  if (typeof listenCheck === 'string') throw new UsageError(`listen address: ${listenCheck}`)
  const targets = values.to ?? []
  if (targets.length === 0) throw new UsageError('missing --to HOST:PORT (the backend to forward to)')
  for (const target of targets) {
    const check = parseTarget(target)
    if (typeof check === 'string') throw new UsageError(`--to: ${check}`)
  }

  const timeouts: ProxyOptions['timeouts'] = {}
  if (values['connect-timeout'] !== undefined) timeouts.connect = duration('--connect-timeout', values['connect-timeout'])
  if (values.timeout !== undefined) timeouts.response = duration('--timeout', values.timeout)
  if (values['client-idle-timeout'] !== undefined) timeouts.clientIdle = duration('--client-idle-timeout', values['client-idle-timeout'])
  if (values['request-head-timeout'] !== undefined) timeouts.requestHead = duration('--request-head-timeout', values['request-head-timeout'])
  if (values['response-total-timeout'] !== undefined) {
    timeouts.responseTotal = values['response-total-timeout'] === '0' ? 0 : duration('--response-total-timeout', values['response-total-timeout'])
  }
  if (values['request-body-timeout'] !== undefined) timeouts.requestBody = duration('--request-body-timeout', values['request-body-timeout'])
  if (values['upstream-idle-timeout'] !== undefined) timeouts.upstreamIdle = duration('--upstream-idle-timeout', values['upstream-idle-timeout'])
  if (values['failed-target-timeout'] !== undefined) timeouts.failedTarget = duration('--failed-target-timeout', values['failed-target-timeout'])
  const upstream: ProxyOptions['upstream'] = {}
  if (values['max-conns'] !== undefined) upstream.maxConnections = count('--max-conns', values['max-conns'], 1)
  if (values['max-queue'] !== undefined) upstream.maxQueue = count('--max-queue', values['max-queue'], 0)
  if (values.pipelining !== undefined) upstream.pipelining = count('--pipelining', values.pipelining, 1)

  if (values['tcp-idle-timeout'] !== undefined) timeouts.tcpIdle = duration('--tcp-idle-timeout', values['tcp-idle-timeout'])
  if (values['detect-timeout'] !== undefined) timeouts.detect = duration('--detect-timeout', values['detect-timeout'])
  if (values['tls-handshake-timeout'] !== undefined) timeouts.tlsHandshake = duration('--tls-handshake-timeout', values['tls-handshake-timeout'])

  const options: ProxyOptions = { listen, targets, timeouts, upstream }
  Object.assign(options, tcpOptions(values), tlsOptions(values), accessOptions(values))
  if (values['max-pipelined'] !== undefined) options.maxPipelinedRequests = count('--max-pipelined', values['max-pipelined'], 1)
  if (values['max-header-size'] !== undefined) options.maxHeaderSize = count('--max-header-size', values['max-header-size'], 256)
  if (values['max-request-line'] !== undefined) options.maxRequestLine = count('--max-request-line', values['max-request-line'], 16)
  if (values['max-headers'] !== undefined) options.maxHeaders = count('--max-headers', values['max-headers'], 1)
  if (values['max-body-size'] !== undefined) options.maxBodySize = count('--max-body-size', values['max-body-size'], 0)
  if (values['min-data-rate'] !== undefined) options.minDataRate = count('--min-data-rate', values['min-data-rate'], 0)
  if (values['no-hide-headers'] === true) {
    if (values['hide-header'] !== undefined) throw new UsageError('--hide-header and --no-hide-headers contradict each other')
    options.hideHeaders = []
  } else if (values['hide-header'] !== undefined) {
    options.hideHeaders = values['hide-header']
  }
  if (values['intercept-errors'] === true) {
    if (values['backend-error-pages'] === true) throw new UsageError('--intercept-errors and --backend-error-pages contradict each other')
    options.interceptErrors = true
  }
  if (values['allow-underscores-in-headers'] === true) options.allowUnderscoresInHeaders = true
  if (values['rate-limit'] !== undefined) {
    const rate = Number(values['rate-limit'])
    if (!/^\d+(\.\d+)?$/.test(values['rate-limit']) || !(rate > 0)) throw new UsageError(`--rate-limit: "${values['rate-limit']}" must be a number of requests per second above 0`)
    options.rateLimit = { rate }
    if (values['rate-burst'] !== undefined) options.rateLimit.burst = count('--rate-burst', values['rate-burst'], 1)
  } else if (values['rate-burst'] !== undefined) {
    throw new UsageError('--rate-burst needs --rate-limit')
  }
  return { options, accessLog: values['access-log'] === true, quiet: values.quiet === true }
}

type Values = ReturnType<typeof parseArgs<{ options: typeof FLAGS, allowPositionals: true, strict: true }>>['values']

function tcpOptions (values: Values): Partial<ProxyOptions> {
  const out: Partial<ProxyOptions> = {}
  if (values.tcp === true) out.tcp = true
  const fallback = values['tcp-to']
  if (values['no-tcp-fallback'] === true) {
    if (fallback !== undefined) throw new UsageError('--tcp-to and --no-tcp-fallback contradict each other')
    if (values.tcp === true) throw new UsageError('--no-tcp-fallback and --tcp contradict each other')
    out.tcpFallback = false
  } else if (fallback !== undefined) {
    for (const target of fallback) {
      const check = parseHostPort(target, { hostRequired: true, portZero: false })
      if (typeof check === 'string') throw new UsageError(`--tcp-to: ${check}`)
    }
    out.tcpFallback = fallback
  }
  return out
}

function accessOptions (values: Values): Partial<ProxyOptions> {
  const out: Partial<ProxyOptions> = {}
  for (const [flag, list] of [['--allow', values.allow], ['--deny', values.deny]] as const) {
    for (const text of list ?? []) {
      const check = parseCidr(text)
      if (typeof check === 'string') throw new UsageError(`${flag}: ${check}`)
    }
  }
  if (values.allow !== undefined || values.deny !== undefined || values['access-file'] !== undefined) {
    out.access = {}
    if (values.allow !== undefined) out.access.allow = values.allow
    if (values.deny !== undefined) out.access.deny = values.deny
    if (values['access-file'] !== undefined) out.access.file = values['access-file']
  }
  const limits: ProxyOptions['limits'] = {}
  if (values['max-connections'] !== undefined) limits.maxConnections = count('--max-connections', values['max-connections'], 1)
  if (values['max-connections-per-ip'] !== undefined) limits.maxConnectionsPerIp = count('--max-connections-per-ip', values['max-connections-per-ip'], 0)
  if (Object.keys(limits).length > 0) out.limits = limits
  return out
}

function tlsOptions (values: Values): Partial<ProxyOptions> {
  const out: Partial<ProxyOptions> = {}
  const certs = values.cert ?? []
  const keys = values.key ?? []
  if (certs.length !== keys.length) throw new UsageError(`${certs.length} --cert but ${keys.length} --key: give them in pairs, --cert FILE --key FILE`)
  const passthrough: Record<string, string> = {}
  for (const route of values.sni ?? []) {
    const eq = route.indexOf('=')
    if (eq < 1) throw new UsageError(`--sni: "${route}" is not NAME=HOST:PORT`)
    const check = parseHostPort(route.slice(eq + 1), { hostRequired: true, portZero: false })
    if (typeof check === 'string') throw new UsageError(`--sni: ${check}`)
    passthrough[route.slice(0, eq)] = route.slice(eq + 1)
  }
  if (values.tcp === true && (certs.length > 0 || Object.keys(passthrough).length > 0)) {
    throw new UsageError('--tcp relays raw bytes: --cert, --key and --sni do not apply')
  }
  if (certs.length > 0 || Object.keys(passthrough).length > 0) {
    out.tls = { certificates: certs.map((cert, i) => ({ cert, key: keys[i] })), passthrough }
  }
  if (values.ca !== undefined || values['insecure-upstream'] === true) {
    out.upstreamTls = { ca: values.ca, verify: values['insecure-upstream'] !== true }
  }
  return out
}

async function main (): Promise<number> {
  let cli: ReturnType<typeof parseCli>
  try {
    cli = parseCli(process.argv.slice(2))
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`rp4: ${err.message}\nTry "rp4 --help".\n`)
      return 2
    }
    throw err
  }
  if (cli === 'help') {
    process.stdout.write(USAGE)
    return 0
  }
  if (cli === 'version') {
    process.stdout.write(VERSION + '\n')
    return 0
  }
  if ('demo' in cli) {
    try {
      await runDemo(cli.demo)
    } catch (err) {
      process.stderr.write(`rp4 demo: ${(err as Error).message}\n`)
      return 1
    }
    return 0
  }

  let proxy: Proxy
  try {
    proxy = createProxy(cli.options)
  } catch (err) {
    // the options validator names the option; the CLI flags map onto it one to one
    process.stderr.write(`rp4: ${(err as Error).message}\n`)
    return 2
  }
  const log = (line: string): void => { if (!cli.quiet) process.stderr.write(line + '\n') }
  proxy.on('upstreamError', (err, target) => log(`rp4: upstream ${target}: ${err.code}: ${err.message}`))
  proxy.on('clientError', (err, client) => log(`rp4: client ${client}: ${err.code}: ${err.message}`))
  proxy.on('proxyError', err => log(`rp4: ${err.message}`))
  proxy.on('certificates', names => log(`rp4: certificates reloaded: ${names.join(', ')}`))
  if (cli.accessLog) {
    proxy.on('response', info => process.stderr.write(
      `${info.client} "${info.method} ${info.url}" ${info.status} ${info.target || '-'} ${info.duration.toFixed(1)}ms\n`))
  }

  try {
    const address = await proxy.listen()
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
    const model = proxy.model
    const listener = model.listeners[0]
    const tcp = listener.protocol === 'tcp'
    const terminates = listener.tls !== null && listener.tls.certificates.length > 0
    const mode = tcp ? 'relaying TCP to' : terminates ? 'terminating TLS, forwarding to' : 'forwarding to'
    const targets = (name: string | null): string => (name === null ? [] : model.upstreams.get(name)?.targets ?? [])
      .map(t => (t.tls !== null && !tcp ? 'https://' : '') + t.authority).join(', ')
    const route = model.routes[0]
    const main = tcp ? listener.upstream : route?.action.kind === 'proxy' ? route.action.upstream : null
    const { requested, maxConnections, openFiles } = model.limits
    const lowered = requested > 0 ? `; --max-connections ${requested} limited to ${maxConnections} by the open-file limit (ulimit -n ${openFiles ?? '?'})` : ''
    const others = listener.tcpFallback === null ? '' : `, other protocols relayed to ${targets(listener.tcpFallback)}`
    log(`rp4 ${VERSION} listening on ${host}:${address.port}, ${mode} ${targets(main)}${others}${lowered}`)
  } catch (err) {
    process.stderr.write(`rp4: cannot listen on ${cli.options.listen}: ${describeSystemError(err as Error)}\n`)
    return 1 // not a usage error: the same command works once the address is free
  }

  return await new Promise<number>(resolve => {
    let stopping = false
    const stop = (signal: string): void => {
      if (stopping) {
        resolve(130) // a second signal: do not wait any longer
        return
      }
      stopping = true
      log(`rp4: ${signal}: closing, waiting for requests in flight`)
      const force = setTimeout(() => {
        log('rp4: connections still open after 10s: closing them')
        resolve(0)
      }, 10_000)
      force.unref()
      void proxy.close().then(() => resolve(0))
    }
    process.on('SIGINT', () => stop('SIGINT'))
    process.on('SIGTERM', () => stop('SIGTERM'))
  })
}

main().then(code => process.exit(code), (err: unknown) => {
  process.stderr.write(`rp4: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
