/**
 * Request and response heads as objects, from the moment they are parsed until they are encoded
 * for the next hop: routes match on them, filters rewrite them, the encoder turns them into bytes
 * last. Nothing here is HTTP/1-specific beyond the version numbers.
 */
import { HeaderList, isToken } from './headers.js'

/** A request target as a filter may set it: visible characters, no spaces (they would end the request line). */
const TARGET = /^[\x21-\x7e\x80-\xff]+$/

export class RequestHead {
  #method: string
  /** The request target as sent (origin-form `/a?b`, absolute-form `http://h/a`, `*`), or as a filter rewrote it. */
  #target: string
  versionMajor: number
  versionMinor: number
  readonly headers: HeaderList
  /** The parser's verdict: the client's connection may carry another request after this one. */
  keepAlive: boolean
  /** The parser's verdict: a protocol upgrade is asked for. */
  upgrade: boolean
  #pathEnd = -1
  #pathStart = -1

  constructor (method: string, target: string, versionMajor: number, versionMinor: number, headers: HeaderList, keepAlive = true, upgrade = false) {
    this.#method = method
    this.#target = target
    this.versionMajor = versionMajor
    this.versionMinor = versionMinor
    this.headers = headers
    this.keepAlive = keepAlive
    this.upgrade = upgrade
  }

  get method (): string { return this.#method }
  set method (value: string) {
    if (!isToken(value)) throw new TypeError(`method ${JSON.stringify(value)} is not a token`)
    this.#method = value
  }

  get target (): string { return this.#target }
  set target (value: string) {
    if (!TARGET.test(value)) throw new TypeError(`request target ${JSON.stringify(value)} has a space or a control character`)
    this.#target = value
    this.#pathStart = -1
  }

  /** The path of the target (`/a/b` of `/a/b?x` or `http://h/a/b?x`); `*` for the asterisk form. */
  get path (): string {
    this.#split()
    return this.#target.slice(this.#pathStart, this.#pathEnd)
  }

  /** What follows the path, `?` included, or ''. */
  get query (): string {
    this.#split()
    return this.#target.slice(this.#pathEnd)
  }

  /** Replace the path, keeping the query (and the scheme and authority of an absolute-form target). */
  set path (value: string) {
    this.#split()
    this.target = this.#target.slice(0, this.#pathStart) + value + this.#target.slice(this.#pathEnd)
  }

  /** The host asked for, lowercased, without port or trailing dot: the Host header's, '' without one. */
  get host (): string {
    const value = this.headers.get('host')
    return value === undefined ? '' : hostOf(value)
  }

  /** HTTP/1.1 or later: chunked bodies, interim responses and persistent connections by default. */
  get http11 (): boolean { return this.versionMajor > 1 || this.versionMinor >= 1 }

  #split (): void {
    if (this.#pathStart !== -1) return
    const target = this.#target
    let start = 0
    if (target.charCodeAt(0) !== 47 /* / */) {
      const scheme = target.indexOf('://')
      if (scheme !== -1) {
        // the authority ends at the path, or at the query when there is no path
        start = target.length
        for (let i = scheme + 3; i < target.length; i++) {
          const c = target.charCodeAt(i)
          if (c === 47 /* / */ || c === 63 /* ? */) { start = i; break }
        }
      }
    }
    let end = target.indexOf('?', start)
    if (end === -1) end = target.length
    this.#pathStart = start
    this.#pathEnd = end
  }
}

export class ResponseHead {
  status: number
  reason: string
  versionMajor: number
  versionMinor: number
  readonly headers: HeaderList

  constructor (status: number, reason: string, headers: HeaderList, versionMajor = 1, versionMinor = 1) {
    this.status = status
    this.reason = reason
    this.headers = headers
    this.versionMajor = versionMajor
    this.versionMinor = versionMinor
  }
}

/** `Example.COM:8080` → `example.com`; `[::1]:80` → `[::1]`; `a.test.` → `a.test`. */
export function hostOf (authority: string): string {
  let host = authority.trim()
  if (host.startsWith('[')) {
    const close = host.indexOf(']')
    host = close === -1 ? host : host.slice(0, close + 1)
  } else {
    const colon = host.lastIndexOf(':')
    if (colon !== -1) host = host.slice(0, colon)
  }
  if (host.endsWith('.')) host = host.slice(0, -1)
  return host.toLowerCase()
}
