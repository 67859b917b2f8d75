/**
 * A parsed HTTP/1.x message head, as the parser hands it over: the parser reuses the object for
 * its next message, so a sink copies what it keeps (the `headers` array is its own to keep).
 */
export interface MessageHead {
  /** Request method (requests only). */
  method: string
  /** Request target exactly as sent (requests only). */
  url: string
  /** Status code (responses only). */
  status: number
  /** Reason phrase exactly as sent (responses only). */
  reason: string
  versionMajor: number
  versionMinor: number
  /** Flat `[name, value, name, value, ...]`, names with the sender's case, in the sender's order. */
  headers: string[]
  /** llhttp's verdict: the connection may carry another message after this one. */
  keepAlive: boolean
  /** llhttp's verdict: an upgrade (or CONNECT) was asked for, or a 101 was answered. */
  upgrade: boolean
}
