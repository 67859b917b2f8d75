import { isIP } from 'node:net'

import type { HostPort } from '../model/model.js'

export type { HostPort }

/**
 * Parse `[HOST]:PORT`, `HOST:PORT`, `:PORT` or `PORT`. Returns an error message naming the bad
 * part instead of throwing, so that the CLI and the options validator word errors their own way.
 */
export function parseHostPort (text: string, { hostRequired, portZero }: { hostRequired: boolean, portZero: boolean }): HostPort | string {
  const value = text.trim()
  let host: string
  let portText: string
  if (value.startsWith('[')) {
    const close = value.indexOf(']')
    if (close === -1 || value[close + 1] !== ':') return `"${text}" is not [IPv6]:PORT`
    host = value.slice(1, close)
    portText = value.slice(close + 2)
    if (isIP(host) !== 6) return `"${host}" in "${text}" is not an IPv6 address`
  } else {
    const colon = value.lastIndexOf(':')
    if (colon === -1) {
      if (hostRequired) return `"${text}" is not HOST:PORT`
      host = ''
      portText = value
    } else {
      host = value.slice(0, colon)
      portText = value.slice(colon + 1)
      if (host.includes(':')) return `"${text}": write an IPv6 address in brackets, as [${host}]:${portText}`
    }
    if (host !== '' && isIP(host) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9-]{0,62})?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62})?)*\.?$/.test(host)) {
      return `"${host}" in "${text}" is not a valid host name or IP address`
    }
  }
  if (hostRequired && host === '') return `"${text}" has no host: write HOST:PORT`
  if (!/^\d{1,5}$/.test(portText)) return `"${portText}" in "${text}" is not a port number`
  const port = Number(portText)
  if (port > 65535 || (port === 0 && !portZero)) return `port ${port} in "${text}" is out of range (${portZero ? 0 : 1}-65535)`
  return { host, port }
}

/** `HOST:PORT`, with brackets around an IPv6 address: the form used in Host headers and logs. */
export function formatHostPort (host: string, port: number): string {
  return (host.includes(':') ? '[' + host + ']' : host) + ':' + port
}

/**
 * `HOST:PORT`, `http://HOST[:PORT]` or `https://HOST[:PORT]` (80 and 443 by default). Returns an
 * error message instead of throwing, as `parseHostPort` does.
 */
export function parseTarget (text: string): (HostPort & { secure: boolean, srv?: boolean }) | string {
  const srv = /^srv:\/\/(.*)$/i.exec(text.trim())
  if (srv !== null) {
    // a DNS name (service discovery): its SRV records give hosts, ports and weights
    const name = srv[1].replace(/\.$/, '')
    if (!/^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?)+$/.test(name)) return `"${text}": write srv://_service._proto.example.com`
    return { host: name, port: 0, secure: false, srv: true }
  }
  const scheme = /^(https?):\/\//i.exec(text.trim())
  if (scheme === null) {
    const parsed = parseHostPort(text, { hostRequired: true, portZero: false })
    return typeof parsed === 'string' ? parsed : { ...parsed, secure: false }
  }
  const secure = scheme[1].toLowerCase() === 'https'
  let rest = text.trim().slice(scheme[0].length).replace(/\/$/, '')
  if (rest.includes('/')) return `"${text}": a backend is a scheme, a host and a port, without a path`
  if (!/:\d*$/.test(rest) || rest.endsWith(']')) rest += secure ? ':443' : ':80'
  const parsed = parseHostPort(rest, { hostRequired: true, portZero: false })
  return typeof parsed === 'string' ? parsed : { ...parsed, secure }
}
