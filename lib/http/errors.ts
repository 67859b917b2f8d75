/**
 * rp4's own responses: for requests it refuses or cannot get answered, and for fixed responses of
 * routes. Small, plain text, nothing of a backend in them.
 */
import { HeaderList } from './headers.js'
import { ResponseHead } from './message.js'

export const REASONS: Readonly<Record<number, string>> = {
  200: 'OK',
  204: 'No Content',
  301: 'Moved Permanently',
  302: 'Found',
  303: 'See Other',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  421: 'Misdirected Request',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
}

export function reasonOf (status: number): string {
  return REASONS[status] ?? (status < 400 ? 'OK' : 'Error')
}

export interface LocalResponse {
  head: ResponseHead
  body: Buffer
}

/** rp4's page for `status`: `STATUS REASON\n` as text/plain, with Retry-After for a 429 or 503 when given. */
export function errorResponse (status: number, retryAfter = 0): LocalResponse {
  const reason = reasonOf(status)
  const body = Buffer.from(status + ' ' + reason + '\n', 'latin1')
  const raw = ['Content-Type', 'text/plain; charset=utf-8', 'Content-Length', String(body.length)]
  if (retryAfter > 0) raw.push('Retry-After', String(retryAfter))
  return { head: new ResponseHead(status, reason, new HeaderList(raw)), body }
}
