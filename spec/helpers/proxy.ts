/**
 * The proxy under test, started on port 0 and closed with the test, with its events recorded; and
 * the few things about the machine a test needs (a port nobody listens on, the built files).
 */
import net from 'node:net'
import { existsSync, statSync, readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import type { Test } from 'tap'
import { createProxy, type ProxyOptions, type Proxy, type ResponseInfo, type RequestInfo, type ProxyError } from '../../lib/index.js'
import { Observable, within } from './wait.js'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

export interface StartedProxy {
  proxy: Proxy
  port: number
  /** Everything the proxy emitted, in order of arrival. */
  events: ProxyEventLog
}

export class ProxyEventLog extends Observable {
  readonly requests: RequestInfo[] = []
  readonly responses: ResponseInfo[] = []
  readonly upstreamErrors: Array<{ error: ProxyError, target: string }> = []
  readonly clientErrors: Array<{ error: ProxyError, client: string }> = []
  readonly proxyErrors: ProxyError[] = []
  closed = 0

  constructor (proxy: Proxy) {
    super()
    this.setMaxListeners(0)
    proxy.on('request', info => { this.requests.push(info); this.changed() })
    proxy.on('response', info => { this.responses.push(info); this.changed() })
    proxy.on('upstreamError', (error, target) => { this.upstreamErrors.push({ error, target }); this.changed() })
    proxy.on('clientError', (error, client) => { this.clientErrors.push({ error, client }); this.changed() })
    proxy.on('proxyError', error => { this.proxyErrors.push(error); this.changed() })
    proxy.on('close', () => { this.closed++; this.changed() })
  }
}

export type TestProxyOptions = Omit<ProxyOptions, 'listen'> & { listen?: string | number }

/** A proxy on 127.0.0.1:0 (unless `listen` says otherwise), closed when the test ends. */
export async function startProxy (t: Test, options: TestProxyOptions): Promise<StartedProxy> {
  // a loaded machine can delay a client's first bytes past the default detect wait, which would
  // hand an HTTP spec's client to the silent-client TCP fallback: specs of that fallback set it
  // the full form (listeners, routes, upstreams) sets its listeners' timeouts itself
  const proxy = createProxy('listeners' in options && options.listeners !== undefined
    ? options as ProxyOptions
    : { listen: '127.0.0.1:0', ...options, timeouts: { detect: 30_000, ...options.timeouts } })
  const events = new ProxyEventLog(proxy)
  const address = await proxy.listen()
  t.teardown(async () => {
    // a proxy that cannot close would keep the file alive until tap's timeout: say so instead
    await within(proxy.close(), 2000, 'proxy.close() in teardown').catch((err: Error) => {
      process.stderr.write(`# ${t.fullname}: ${err.message}\n`)
    })
  })
  return { proxy, port: address.port, events }
}

/** A port on which nothing listens: bound, then released. */
export async function unusedPort (host = '127.0.0.1'): Promise<number> {
  // Below the kernel's ephemeral range (32768-60999 on Linux): a port another spec running at
  // the same time gets from listen(0), or a client socket gets as its own, is never one of these,
  // so a port that refuses connections now keeps refusing them until this spec listens there.
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    const server = net.createServer()
    const free = await new Promise<boolean>(resolve => {
      server.once('error', () => resolve(false))
      server.listen(port, host, () => resolve(true))
    })
    if (!free) continue
    await new Promise<void>(resolve => server.close(() => resolve()))
    return port
  }
  throw new Error(`no free port from 20000 to 31999 on ${host}`)
}

/** Whether this machine can bind ::1 (containers without IPv6 cannot). */
export async function hasIPv6 (): Promise<boolean> {
  const server = net.createServer()
  return await new Promise<boolean>(resolve => {
    server.once('error', () => resolve(false))
    server.listen(0, '::1', () => server.close(() => resolve(true)))
  })
}

function newestSource (dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name)
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(file))
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(file).mtimeMs)
  }
  return newest
}

/**
 * Specs that run the built files (the CLI, the child-process proxy) need `npm run build` first;
 * `npm test` does it. Fails the test with that instruction rather than testing stale code.
 */
export function checkBuilt (t: Test, relative: string): boolean {
  const file = path.join(ROOT, relative)
  if (!existsSync(file)) {
    t.fail(`${relative} is missing: run "npm run build" (npm test builds first)`)
    return false
  }
  const built = statSync(file).mtimeMs
  const source = Math.max(newestSource(path.join(ROOT, 'lib')), newestSource(path.join(ROOT, 'bin')))
  if (source > built) {
    t.fail(`${relative} is older than the sources in lib/ or bin/: run "npm run build" (npm test builds first)`)
    return false
  }
  return true
}
