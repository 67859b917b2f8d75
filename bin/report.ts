/**
 * What the serving command says on stderr, shared by the single process (cli.ts), the primary
 * of workers (primary.ts) and each worker (worker.ts): the startup line and the proxy's events
 * as log lines.
 */
import type { AddressInfo } from 'node:net'
import type { Model, Proxy } from '../lib/index.js'

export function hostPort (address: AddressInfo | null): string {
  if (address === null) return '?'
  return `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
}

/**
 * What the startup line says after "listening on": for one listener, where it is and where it
 * sends what (`[::]:8080, forwarding to 127.0.0.1:3000`); for several, each address and name.
 */
export function startup (model: Model, addresses: ReadonlyArray<{ name: string, address: AddressInfo | null }>): string {
  const { requested, maxConnections, openFiles } = model.limits
  const lowered = requested > 0 ? `; --max-connections ${requested} limited to ${maxConnections} by the open-file limit (ulimit -n ${openFiles ?? '?'})` : ''
  if (model.listeners.length > 1) {
    return addresses.map(({ name, address }) => `${hostPort(address)} (${name})`).join(', ') + lowered
  }
  const listener = model.listeners[0]
  const tcp = listener.protocol === 'tcp'
  const terminates = listener.tls !== null && (listener.tls.certificates.length > 0 || listener.tls.acme !== null)
  const targets = (name: string | null): string => (name === null ? [] : model.upstreams.get(name)?.targets ?? [])
    .map(t => (t.tls !== null && !tcp ? 'https://' : '') + t.authority).join(', ')
  const others = listener.tcpFallback === null ? '' : `, other protocols relayed to ${targets(listener.tcpFallback)}`
  const where = hostPort(addresses[0]?.address ?? null)
  if (tcp) return `${where}, relaying TCP to ${targets(listener.upstream)}${others}${lowered}`
  // what the routes do: files served from where, requests forwarded to whom (a files route's fallback too)
  const roots = [...new Set(model.routes.flatMap(r => r.action.kind === 'static' ? [r.action.root] : []))]
  const proxied = [...new Set(model.routes.flatMap(r => r.action.kind === 'proxy' ? [r.action.upstream] : r.action.kind === 'static' && r.action.fallback !== null ? [r.action.fallback] : []))]
  const sent = proxied.map(targets).filter(text => text !== '').join(', ')
  const jobs = [...(terminates ? ['terminating TLS'] : []), ...(roots.length > 0 ? [`serving files from ${roots.join(', ')}`] : []), ...(sent !== '' ? [`forwarding to ${sent}`] : [])]
  if (roots.length === 0 && sent === '') jobs.push('answering from its routes')
  return `${where}, ${jobs.join(', ')}${others}${lowered}`
}

/** The proxy's events as log lines, each starting with `prefix` (`rp4: `). */
export function logProxyEvents (proxy: Proxy, log: (line: string) => void, prefix: string): void {
  proxy.on('upstreamError', (err, target) => log(`${prefix}upstream ${target}: ${err.code}: ${err.message}`))
  proxy.on('clientError', (err, client) => log(`${prefix}client ${client}: ${err.code}: ${err.message}`))
  proxy.on('proxyError', err => log(`${prefix}${err.message}`))
  proxy.on('discovery', e => log(e.error === undefined
    ? `${prefix}upstream ${e.group}: ${e.name} resolved to ${e.targets.join(', ') || 'nothing'}`
    : `${prefix}upstream ${e.group}: ${e.name} does not resolve (${e.error}); ${e.stale === true ? `keeping its last answer: ${e.targets.join(', ')}` : 'no targets from it'}`))
  proxy.on('targetHealth', e => log(`${prefix}upstream ${e.group} ${e.target}: ${e.up ? 'up' : 'down'} (${e.reason}${e.detail !== undefined ? ': ' + e.detail : ''})`))
  proxy.on('certificates', names => log(`${prefix}certificates reloaded: ${names.join(', ')}`))
  proxy.on('acme', message => log(`${prefix}${message}`))
}

/** Where a listen() failed, as the system reports it (the admin endpoint's address may be the one). */
export function listenFailure (err: NodeJS.ErrnoException & { address?: string, port?: number }, fallback: string): string {
  const { address, port } = err
  return address !== undefined && port !== undefined ? `${address.includes(':') ? `[${address}]` : address}:${port}` : fallback
}
