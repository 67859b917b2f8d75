/**
 * rp4's own responses: for requests it refuses or cannot get answered, and for fixed responses of
 * routes. Small, plain text, nothing of a backend in them.
 */
import { HeaderList } from './headers.js'
import { ResponseHead } from './message.js'

export const REASONS: Readonly<Record<number, string>> = {
  100: 'Continue', 101: 'Switching Protocols', 103: 'Early Hints',
  200: 'OK', 201: 'Created', 202: 'Accepted', 203: 'Non-Authoritative Information', 204: 'No Content', 205: 'Reset Content', 206: 'Partial Content',
  300: 'Multiple Choices', 301: 'Moved Permanently', 302: 'Found', 303: 'See Other', 304: 'Not Modified', 307: 'Temporary Redirect', 308: 'Permanent Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
  406: 'Not Acceptable', 407: 'Proxy Authentication Required', 408: 'Request Timeout', 409: 'Conflict', 410: 'Gone', 411: 'Length Required',
  412: 'Precondition Failed', 413: 'Content Too Large', 414: 'URI Too Long', 415: 'Unsupported Media Type', 416: 'Range Not Satisfiable',
  417: 'Expectation Failed', 421: 'Misdirected Request', 422: 'Unprocessable Content', 425: 'Too Early', 426: 'Upgrade Required',
  428: 'Precondition Required', 429: 'Too Many Requests', 431: 'Request Header Fields Too Large', 451: 'Unavailable For Legal Reasons',
  500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported', 507: 'Insufficient Storage', 508: 'Loop Detected', 511: 'Network Authentication Required',
}

/** The reason phrase of `status` (RFC 9110's), or one of its class for a status it does not name. */
export function reasonOf (status: number): string {
  return REASONS[status] ?? CLASS_REASONS[Math.floor(status / 100)] ?? 'Unknown'
}

const CLASS_REASONS: Readonly<Record<number, string>> = { 1: 'Informational', 2: 'Success', 3: 'Redirection', 4: 'Client Error', 5: 'Server Error' }

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
