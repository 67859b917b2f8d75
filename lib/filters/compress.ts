/**
 * Response compression: gzip and brotli from Node's zlib, as a body transform (session/body.ts),
 * so the body is compressed chunk by chunk with backpressure both ways, and a slow client never
 * makes rp4 hold a whole response. zlib's work runs on libuv's thread pool: a large body being
 * compressed does not stall the event loop for other connections.
 *
 * A response whose length is unknown (chunked, until close: server-sent events, streamed JSON) is
 * flushed after every piece the backend sends (Z_SYNC_FLUSH, BROTLI_OPERATION_FLUSH), so it
 * reaches the client as it is produced; one with a Content-Length is compressed without flushes
 * (the best ratio), the end flushes it.
 *
 * Sent as it is: HEAD, 1xx/204/206/304, a request with Range (the ranges name bytes of the
 * uncompressed body), a response already encoded, `Cache-Control: no-transform`, a type not in
 * the list, a Content-Length under the minimum, or a client that accepts neither coding.
 */
import { constants, createBrotliCompress, createGzip, type BrotliCompress, type Gzip } from 'node:zlib'
import { hasDirective, MediaTypes, negotiateCoding, varyWith, weakETag, type Coding } from '../http/content-coding.js'
import type { ResponseHead } from '../http/message.js'
import type { CompressModel } from '../model/model.js'
import type { Filter, FilterSession } from '../session/filter.js'

export function compressFilter (model: CompressModel): Filter {
  const types = new MediaTypes(model.types)
  const encodings = model.encodings
  const minSize = model.minSize
  const gzipLevel = model.gzipLevel
  const brotliLevel = model.brotliLevel
  return {
    name: 'compress',
    onResponse (session: FilterSession, head: ResponseHead): void {
      const coding = decide(session, head, types, encodings, minSize)
      if (coding === null) return
      const headers = head.headers
      const length = headers.get('content-length')
      const streamed = length === undefined
      headers.delete('Content-Length')
      headers.set('Content-Encoding', coding)
      // a byte range of the compressed body means nothing to anyone
      headers.delete('Accept-Ranges')
      const etag = headers.get('etag')
      if (etag !== undefined) headers.set('ETag', weakETag(etag))
      session.transformBody(coding === 'br' ? brotli(brotliLevel, streamed, length) : gzip(gzipLevel, streamed))
    },
  }
}

/**
 * The coding for this response, or null to send it as it is. Vary: Accept-Encoding is added
 * whenever the answer depended on the client's Accept-Encoding, compressed or not, so that a
 * cache downstream keeps the variants apart.
 */
function decide (session: FilterSession, head: ResponseHead, types: MediaTypes, encodings: readonly Coding[], minSize: number): Coding | null {
  const status = head.status
  const request = session.request
  if (status < 200 || status === 204 || status === 206 || status === 304) return null
  const headers = head.headers
  const encoded = headers.get('content-encoding')
  if (encoded !== undefined && encoded.trim().toLowerCase() !== 'identity') return null
  if (!types.has(headers.get('content-type'))) return null
  if (hasDirective(headers.get('cache-control'), 'no-transform')) return null
  const length = headers.get('content-length')
  if (length !== undefined && Number(length) < minSize) return null
  // from here the answer depends on who asks
  headers.set('Vary', varyWith(headers.getAll('vary').join(', ') || undefined, 'Accept-Encoding'))
  if (request.method === 'HEAD' || request.headers.get('range') !== undefined) return null
  return negotiateCoding(request.headers.getAll('accept-encoding').join(', ') || undefined, encodings)
}

function gzip (level: number, streamed: boolean): Gzip {
  return createGzip({ level, flush: streamed ? constants.Z_SYNC_FLUSH : constants.Z_NO_FLUSH })
}

function brotli (quality: number, streamed: boolean, length: string | undefined): BrotliCompress {
  const params: Record<number, number> = {
    [constants.BROTLI_PARAM_QUALITY]: quality,
    [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
  }
  // a known size lets brotli pick its window and buffers for it
  if (length !== undefined && Number.isSafeInteger(Number(length))) params[constants.BROTLI_PARAM_SIZE_HINT] = Number(length)
  return createBrotliCompress({ params, flush: streamed ? constants.BROTLI_OPERATION_FLUSH : constants.BROTLI_OPERATION_PROCESS })
}
