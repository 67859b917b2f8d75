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
