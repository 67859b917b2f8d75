import { getSystemErrorMap } from 'node:util'

/** Where a failure came from: the client side, a backend, or rp4 itself. */
export type ErrorSource = 'downstream' | 'upstream' | 'internal'

/**
 * The one error type of the engine. `code` is stable and machine-readable; `status` is what the
 * client is answered with when nothing of the response has been sent yet (0: close, answer nothing).
 */
export class ProxyError extends Error {
  readonly code: string
  readonly source: ErrorSource
  readonly status: number
  /** The request may be sent again on another connection: nothing reached the backend's application. */
  readonly retryable: boolean

  constructor (code: string, message: string, source: ErrorSource, status: number, retryable = false, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause })
    this.name = 'ProxyError'
    this.code = code
    this.source = source
    this.status = status
    this.retryable = retryable
  }
}

/**
 * A system call's error as a person reads it: `address already in use (EADDRINUSE)`, instead of
 * Node's `listen EADDRINUSE: address already in use 127.0.0.1:8080`, which repeats what the
 * caller already says. Other errors keep their message.
 */
export function describeSystemError (err: Error): string {
  const { code, errno } = err as NodeJS.ErrnoException
  if (code === 'ENOTFOUND') return `host name not found (${code})`
  const known = typeof errno === 'number' ? getSystemErrorMap().get(errno) : undefined
  if (known !== undefined && known[0] === code) return `${known[1]} (${code})`
  return err.message
}
