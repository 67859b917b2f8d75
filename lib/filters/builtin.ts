/**
 * rp4's own behaviour that is policy rather than protocol, as filters on the same hooks a user's
 * filter gets: the per-client rate limit, the identifying response headers removed, and a
 * backend's 502/503/504 replaced by rp4's page when the route asks for it.
 */
import { ProxyError } from '../core/errors.js'
import { errorResponse } from '../http/errors.js'
import { hideHeaders } from '../http/forwarding.js'
import type { Filter, Verdict } from '../session/filter.js'
import type { Session } from '../session/session.js'
import { RateLimiter } from './rate-limit.js'

/** Requests per client IP (IPv6: per /64) over `rate`/s after `burst`: 429 with Retry-After. */
export function rateLimitFilter (rate: number, burst: number): Filter {
  const limiter = new RateLimiter(rate, burst)
  return {
    name: 'rateLimit',
    onRequest (session): Verdict {
      const retryAfter = limiter.take(session.client.ip)
      if (retryAfter === 0) return 'continue'
      ;(session as Session).refuse(new ProxyError('rate_limited', `over the request rate limit; retry after ${retryAfter}s`, 'downstream', 429), retryAfter)
      return 'responded'
    },
  }
}

/** Response headers that would tell what runs behind rp4 (`Server`, `X-Powered-By`, …), removed. */
export function hideHeadersFilter (names: Iterable<string>): Filter {
  const byLength: string[][] = []
  for (const name of new Set([...names].map(name => name.toLowerCase()))) (byLength[name.length] ??= []).push(name)
  return {
    name: 'hideHeaders',
    onResponse (_session, head): void {
      hideHeaders(head.headers, byLength)
    },
  }
}

/**
 * A backend's 502, 503 or 504 answered with rp4's own page (status kept): a backend's error page
 * may name the backend, its software or a stack trace. Off by default: an API's 503 with a JSON
 * body and Retry-After is the client's business.
 */
export function interceptErrorsFilter (): Filter {
  return {
    name: 'interceptErrors',
    onResponse (session, head): void {
      const status = head.status
      if ((status !== 502 && status !== 503 && status !== 504) || session.request.method === 'HEAD' || session.target === null) return
      const page = errorResponse(status)
      session.respond(status, { 'Content-Type': page.head.headers.get('content-type')! }, page.body)
    },
  }
}
