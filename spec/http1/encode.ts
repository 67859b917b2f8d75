/**
 * The request and response heads as they leave for the next hop: the checks (http/validate.ts),
 * the forwarding headers (http/forwarding.ts) and the encoding with each hop's framing
 * (http1/encode.ts), exact bytes.
 */
import t from 'tap'
import type { MessageHead } from '../../lib/http1/head.js'
import { encodeRequestHead, encodeResponseHead, frameResponse, keptWhole } from '../../lib/http1/encode.js'
import { errorResponse } from '../../lib/http/errors.js'
import { forwardRequest, forwardResponse, HOST_PLACEHOLDER, type ForwardContext } from '../../lib/http/forwarding.js'
import { FieldBlock, HeaderList } from '../../lib/http/headers.js'
import { RequestHead, ResponseHead } from '../../lib/http/message.js'
import { BodyKind, inspectRequest } from '../../lib/http/validate.js'

const ctx = { clientIp: '192.0.2.7', proto: 'http', via: '1.1 rp4', underscores: false }

function request (headers: string[], extra: Partial<MessageHead> = {}): MessageHead {
  return { method: 'GET', url: '/p?q=1', status: 0, reason: '', versionMajor: 1, versionMinor: 1, headers, keepAlive: true, upgrade: false, ...extra }
}

function response (status: number, headers: string[], reason = 'OK'): MessageHead {
  return { method: '', url: '', status, reason, versionMajor: 1, versionMinor: 1, headers, keepAlive: true, upgrade: false }
}

/** What the upstream hop gets: checked, forwarded, encoded (the whole head as one string). */
function planRequest (message: MessageHead, forward: ForwardContext): { invalid: string, body: BodyKind, needsHost: boolean, upgrade: boolean, head: string } {
  const head = new RequestHead(message.method, message.url, message.versionMajor, message.versionMinor, new HeaderList([...message.headers]), message.keepAlive, message.upgrade)
  const facts = inspectRequest(head)
  forwardRequest(head, forward, facts.needsHost)
  return { invalid: facts.invalid, body: facts.body, needsHost: facts.needsHost, upgrade: head.upgrade, head: encodeRequestHead(head) }
}

/** What the client hop gets of a backend's response head. */
function planResponse (message: MessageHead, method: string, clientHttp11: boolean, keepClient: boolean, untilClose: boolean, via: string): { body: BodyKind, close: boolean, head: string } {
  const head = new ResponseHead(message.status, message.reason, new HeaderList([...message.headers]))
  forwardResponse(head, via)
  const framing = frameResponse(head, method, clientHttp11, keepClient, untilClose)
  return { body: framing.body, close: framing.close, head: encodeResponseHead(head, framing, clientHttp11) }
}

t.test('request: hop-by-hop removed, order and case kept, forwarding headers added', async t => {
  const plan = planRequest(request([
    'hOST', 'example.test',
    'Connection', 'keep-alive, X-Secret',
    'X-Secret', 'do not pass',
    'Keep-Alive', 'timeout=5',
    'Proxy-Connection', 'keep-alive',
    'TE', 'trailers',
    'Trailer', 'X-T',
    'Upgrade', 'websocket',
    'X-Forwarded-Proto', 'https',
    'X-Forwarded-Host', 'spoofed',
    'accept', '*/*',
  ]), ctx)
  t.equal(plan.invalid, '')
  t.equal(plan.body, BodyKind.NONE)
  t.equal(plan.head,
    'GET /p?q=1 HTTP/1.1\r\nhOST: example.test\r\naccept: */*\r\n' +
    'X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: example.test\r\nVia: 1.1 rp4\r\n\r\n')
})

t.test('request: X-Forwarded-For and Via extended in place, framing headers kept', async t => {
  const plan = planRequest(request([
    'Host', 'h',
    'X-Forwarded-For', '203.0.113.1',
    'Via', '1.0 first',
    'Transfer-Encoding', 'chunked',
    'X-Forwarded-For', '203.0.113.2',
  ], { method: 'POST' }), ctx)
  t.equal(plan.body, BodyKind.CHUNKED)
  t.equal(plan.head,
    'POST /p?q=1 HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.1\r\nVia: 1.0 first, 1.1 rp4\r\nTransfer-Encoding: chunked\r\n' +
    'X-Forwarded-For: 203.0.113.2, 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n')
})

t.test('request: Host rules', async t => {
  t.equal(planRequest(request([]), ctx).invalid, 'HTTP/1.1 request without Host')
  t.equal(planRequest(request(['Host', 'a', 'host', 'b']), ctx).invalid, 'several Host headers')
  const http10 = planRequest(request([], { versionMinor: 0 }), ctx)
  t.equal(http10.invalid, '')
  t.equal(http10.needsHost, true, 'an HTTP/1.0 request without Host gets the backend address')
  t.notMatch(http10.head, /X-Forwarded-Host/)
  t.equal(http10.head, `GET /p?q=1 HTTP/1.1\r\nHost: ${HOST_PLACEHOLDER}\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nVia: 1.1 rp4\r\n\r\n`,
    'its place kept for the target\'s authority')
})

t.test('request: upgrade keeps Upgrade and asks for it again', async t => {
  const plan = planRequest(request(['Host', 'h', 'Connection', 'Upgrade', 'Upgrade', 'websocket'], { upgrade: true }), ctx)
  t.equal(plan.upgrade, true)
  t.equal(plan.head,
    'GET /p?q=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n' +
    'X-Forwarded-Host: h\r\nVia: 1.1 rp4\r\nConnection: upgrade\r\n\r\n')
})

t.test('request: header names with an underscore are dropped unless allowed', async t => {
  const head = request(['Host', 'h', 'Transfer_Encoding', 'chunked', 'X_Forwarded_For', '10.0.0.1', 'x-a_b', '1', 'X-Kept', '2'])
  const plan = planRequest(head, ctx)
  t.equal(plan.invalid, '')
  t.equal(plan.body, BodyKind.NONE, 'never taken for framing')
  t.match(plan.head, /^GET \/p\?q=1 HTTP\/1.1\r\nHost: h\r\nX-Kept: 2\r\nX-Forwarded-For: 192.0.2.7\r\n/)
  t.match(planRequest(head, { ...ctx, underscores: true }).head,
    /^GET \/p\?q=1 HTTP\/1.1\r\nHost: h\r\nTransfer_Encoding: chunked\r\nX_Forwarded_For: 10.0.0.1\r\nx-a_b: 1\r\nX-Kept: 2\r\nX-Forwarded-For: 192.0.2.7\r\n/)
})

t.test('request: Transfer-Encoding in an HTTP/1.0 request is refused', async t => {
  const te = planRequest(request(['Host', 'h', 'Transfer-Encoding', 'chunked'], { method: 'POST', versionMinor: 0 }), ctx)
  t.equal(te.invalid, 'Transfer-Encoding in an HTTP/1.0 request')
  t.equal(planRequest(request(['Host', 'h', 'Content-Length', '2'], { method: 'POST', versionMinor: 0 }), ctx).invalid, '', 'Content-Length is fine')
})

t.test('request: h2c and HTTP2-Settings never go upstream', async t => {
  // the parser has decided: h2c alone is no upgrade
  const plain = planRequest(request(['Host', 'h', 'Upgrade', 'h2c', 'HTTP2-Settings', 'AAMA', 'Connection', 'Upgrade, HTTP2-Settings']), ctx)
  t.equal(plain.upgrade, false)
  t.match(plain.head, /^GET \/p\?q=1 HTTP\/1.1\r\nHost: h\r\nX-Forwarded-For/)
  t.notMatch(plain.head, /Connection|HTTP2-Settings|h2c/i)
  const mixed = planRequest(request(['Host', 'h', 'Upgrade', 'websocket, H2C', 'upgrade', 'h2c/1', 'http2-settings', 'AAMA', 'Connection', 'upgrade'], { upgrade: true }), ctx)
  t.equal(mixed.upgrade, true)
  t.match(mixed.head, /^GET \/p\?q=1 HTTP\/1.1\r\nHost: h\r\nUpgrade: websocket\r\nX-Forwarded-For/, 'other protocols kept, the h2c-only line dropped')
  t.match(mixed.head, /Connection: upgrade\r\n\r\n$/)
})

t.test('response: framing per client version', async t => {
  const chunked = response(200, ['Transfer-Encoding', 'chunked', 'Connection', 'close', 'Server', 'x'])
  const to11 = planResponse(chunked, 'GET', true, true, false, '1.1 rp4')
  t.equal(to11.body, BodyKind.CHUNKED)
  t.equal(to11.close, false, 'the backend closing does not close the client')
  t.equal(to11.head, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nServer: x\r\nVia: 1.1 rp4\r\n\r\n')

  const to10 = planResponse(chunked, 'GET', false, true, false, '1.1 rp4')
  t.equal(to10.body, BodyKind.UNTIL_CLOSE)
  t.equal(to10.close, true)
  t.equal(to10.head, 'HTTP/1.1 200 OK\r\nServer: x\r\nVia: 1.1 rp4\r\nConnection: close\r\n\r\n')

  const untilClose = planResponse(response(200, ['Content-Type', 'text/plain']), 'GET', true, true, true, '1.1 rp4')
  t.equal(untilClose.body, BodyKind.CHUNKED, 'close-delimited becomes chunked for HTTP/1.1')
  t.equal(untilClose.head, 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nVia: 1.1 rp4\r\nTransfer-Encoding: chunked\r\n\r\n')

  const keepAlive10 = planResponse(response(200, ['Content-Length', '2']), 'GET', false, true, false, '1.1 rp4')
  t.equal(keepAlive10.head, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 rp4\r\nConnection: keep-alive\r\n\r\n')
})

t.test('response: a Content-Length set by a filter is used only when it is a length', async t => {
  const cases: Array<[string[], number, boolean]> = [
    [['Content-Length', '5'], 5, false],
    [['Content-Length', ' \t5 '], 5, false],
    [['Content-Length', '000000000000007'], 7, false],
    [['Content-Length', '1234567890123456'], -1, true],
    [['Content-Length', '5 5'], -1, true],
    [['Content-Length', '+5'], -1, true],
    [['Content-Length', '0x5'], -1, true],
    [['Content-Length', ''], -1, true],
    [['Content-Length', '5', 'content-length', '5'], 5, false],
    [['Content-Length', '5', 'Content-Length', '6'], -1, true],
  ]
  for (const [headers, length, dropped] of cases) {
    const head = new ResponseHead(200, 'OK', new HeaderList([...headers]))
    const framing = frameResponse(head, 'GET', true, true, false)
    t.equal(framing.length, length, JSON.stringify(headers))
    t.equal(framing.dropContentLength, dropped)
    t.equal(framing.body, dropped ? BodyKind.CHUNKED : BodyKind.LENGTH)
  }
})

t.test('response: no-body rules', async t => {
  for (const [status, method] of [[204, 'GET'], [304, 'GET'], [200, 'HEAD'], [100, 'POST']] as const) {
    const plan = planResponse(response(status, ['Content-Length', '5']), method, true, true, false, '1.1 rp4')
    t.equal(plan.body, BodyKind.NONE, `${status} to ${method}`)
    // RFC 9110 §8.6: a 304's or a HEAD's describes the representation; a 1xx or 204 never has one
    if (status === 204 || status < 200) t.notMatch(plan.head, /Content-Length/i, 'Content-Length never sent with a 1xx or 204')
    else t.match(plan.head, /Content-Length: 5\r\n/, 'Content-Length is metadata here, kept')
  }
})

t.test('rp4\'s own error responses are exact', async t => {
  const encode = (status: number, close: boolean, retryAfter = 0): string => {
    const page = errorResponse(status, retryAfter)
    const framing = frameResponse(page.head, 'GET', true, !close, false)
    return encodeResponseHead(page.head, framing, true) + page.body.toString('latin1')
  }
  t.equal(encode(502, false), 'HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\n\r\n502 Bad Gateway\n')
  t.equal(encode(400, true), 'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n')
  t.equal(encode(429, false, 3), 'HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 22\r\nRetry-After: 3\r\n\r\n429 Too Many Requests\n')
})

t.test('a field block: its kept encoding is used while the list begins with its fields, and any change to them is seen', async t => {
  const fields = ['ETag', '"5f-1a"', 'Cache-Control', 'max-age=60', 'Content-Type', 'text/plain; charset=utf-8']
  const block = new FieldBlock(fields)
  t.equal(block.framing, false)
  /** The head for `list` encoded with the block, and field by field (the same list without it). */
  const both = (list: HeaderList, status = 200): [string, string, number] => {
    const withBlock = new ResponseHead(status, 'OK', list)
    const framing = frameResponse(withBlock, 'GET', true, true, false)
    const covered = framing.covered
    const a = encodeResponseHead(withBlock, framing, true)
    const plain = new ResponseHead(status, 'OK', new HeaderList([...list.raw]))
    const b = encodeResponseHead(plain, frameResponse(plain, 'GET', true, true, false), true)
    return [a, b, covered]
  }
  const expected = 'HTTP/1.1 200 OK\r\nETag: "5f-1a"\r\nCache-Control: max-age=60\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\r\n'

  const list = block.list()
  list.append('Content-Length', '5')
  let [a, b, covered] = both(list)
  t.equal(covered, 6, 'the block covers its three fields')
  t.equal(a, expected)
  t.equal(b, expected)
  t.not(block.encoded, null, 'its encoding kept')
  // a second list from the same block: the kept form again, the same bytes
  const again = block.list()
  again.append('Content-Length', '5')
  ;[a] = both(again)
  t.equal(a, expected)

  // changed through a method: a value, a deletion, a field put before them
  const changed = block.list()
  changed.set('Cache-Control', 'no-store')
  changed.append('Content-Length', '5')
  ;[a, b, covered] = both(changed)
  t.equal(covered, 0)
  t.equal(a, expected.replace('max-age=60', 'no-store'))
  t.equal(a, b)
  const deleted = block.list()
  deleted.delete('etag')
  ;[a, b, covered] = both(deleted)
  t.equal(covered, 0)
  t.equal(a, 'HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Type: text/plain; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n')
  t.equal(a, b)
  // changed behind the methods' back, through `raw`
  const direct = block.list()
  direct.raw[1] = '"other"'
  direct.raw.unshift('X-First', '1')
  direct.append('Content-Length', '5')
  ;[a, b, covered] = both(direct)
  t.equal(covered, 0)
  t.equal(a, 'HTTP/1.1 200 OK\r\nX-First: 1\r\nETag: "other"\r\nCache-Control: max-age=60\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\r\n')
  t.equal(a, b)
  // the same value as a new string is the same bytes: still covered
  const same = block.list()
  same.raw[3] = ['max-age', '60'].join('=')
  same.append('Content-Length', '5')
  ;[a, b, covered] = both(same)
  t.equal(covered, 6)
  t.equal(a, expected)
})

t.test('a field block with framing fields: its framing is still read, and a Content-Length filters broke drops it', async t => {
  const block = new FieldBlock(['Content-Type', 'text/plain', 'Content-Length', '12'])
  t.equal(block.framing, true)
  const head = new ResponseHead(200, 'OK', block.list())
  const framing = frameResponse(head, 'HEAD', true, true, false)
  t.equal(framing.covered, 4)
  t.equal(encodeResponseHead(head, framing, true), 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n')
  // a second Content-Length that differs: the framing drops both, so the kept form cannot serve
  const twice = block.list()
  twice.append('Content-Length', '13')
  const bad = new ResponseHead(200, 'OK', twice)
  const badFraming = frameResponse(bad, 'GET', true, true, false)
  t.equal(badFraming.dropContentLength, true)
  t.equal(encodeResponseHead(bad, badFraming, true), 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n')
  // a Transfer-Encoding in a block is seen too: chunked to a 1.0 client goes
  const chunked = new FieldBlock(['Transfer-Encoding', 'chunked', 'X-A', 'b'])
  const head10 = new ResponseHead(200, 'OK', chunked.list())
  const framing10 = frameResponse(head10, 'GET', false, true, false)
  t.equal(framing10.body, BodyKind.UNTIL_CLOSE)
  t.equal(encodeResponseHead(head10, framing10, false), 'HTTP/1.1 200 OK\r\nX-A: b\r\nConnection: close\r\n\r\n')
})

t.test('status lines: a reason other than the one kept for a status is written as given', async t => {
  const head = (status: number, reason: string): string => {
    const h = new ResponseHead(status, reason, new HeaderList(['Content-Length', '0']))
    return encodeResponseHead(h, frameResponse(h, 'GET', true, true, false), true)
  }
  t.equal(head(200, 'OK'), 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
  t.equal(head(200, 'Fine'), 'HTTP/1.1 200 Fine\r\nContent-Length: 0\r\n\r\n')
  t.equal(head(200, 'OK'), 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
  t.equal(head(599, ''), 'HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n')
})

t.test('a field block\'s kept head: reused only for the same status, reason, following fields and ending, whatever the order', async t => {
  const block = new FieldBlock(['ETag', '"e"', 'Content-Type', 'text/plain'])
  interface Case { status: number, reason: string, tail: string[], method: string, http11: boolean, keep: boolean }
  const cases: Case[] = [
    { status: 200, reason: 'OK', tail: ['Content-Length', '5'], method: 'GET', http11: true, keep: true },
    { status: 200, reason: 'OK', tail: ['Content-Length', '6'], method: 'GET', http11: true, keep: true },
    { status: 200, reason: 'OK', tail: ['Content-Length', '5'], method: 'GET', http11: true, keep: false },
    { status: 200, reason: 'OK', tail: ['Content-Length', '5'], method: 'GET', http11: false, keep: true },
    { status: 200, reason: 'OK', tail: [], method: 'GET', http11: true, keep: true },
    { status: 200, reason: 'OK', tail: [], method: 'GET', http11: false, keep: true },
    { status: 200, reason: 'Fine', tail: ['Content-Length', '5'], method: 'GET', http11: true, keep: true },
    { status: 304, reason: 'Not Modified', tail: [], method: 'GET', http11: true, keep: true },
    { status: 206, reason: 'Partial Content', tail: ['Content-Range', 'bytes 0-1/5', 'Content-Length', '2'], method: 'GET', http11: true, keep: true },
    { status: 200, reason: 'OK', tail: ['Content-Length', '5', 'X-Id', '1'], method: 'GET', http11: true, keep: true },
    { status: 200, reason: 'OK', tail: ['Content-Length', '5', 'X-Id', '2'], method: 'GET', http11: true, keep: true },
    { status: 200, reason: 'OK', tail: ['Content-Length', '5'], method: 'HEAD', http11: true, keep: true },
  ]
  const encode = (c: Case, withBlock: boolean): string => {
    const list = withBlock ? block.list() : new HeaderList([...block.fields])
    for (let i = 0; i < c.tail.length; i += 2) list.append(c.tail[i], c.tail[i + 1])
    const head = new ResponseHead(c.status, c.reason, list)
    return encodeResponseHead(head, frameResponse(head, c.method, c.http11, c.keep, false), c.http11)
  }
  const expected = cases.map(c => encode(c, false))
  t.equal(expected[0], 'HTTP/1.1 200 OK\r\nETag: "e"\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n')
  t.equal(expected[5], 'HTTP/1.1 200 OK\r\nETag: "e"\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n', 'no length for a 1.0 client: the body runs until close')
  let seed = 11
  let mismatches = 0
  for (let i = 0; i < 2000; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    // runs of the same case (the kept head reused), then a change of case
    const k = (seed >> 8) % cases.length
    for (let r = 0; r < 1 + (seed & 3); r++) if (encode(cases[k], true) !== expected[k]) mismatches++
  }
  t.equal(mismatches, 0, 'every head exact, in any order')
})

t.test('keptWhole: the head and an unchanged body joined once they repeat, the head text otherwise', async t => {
  const block = new FieldBlock(['ETag', '"w"', 'Content-Type', 'text/plain'])
  const body = Buffer.from('hello')
  const other = Buffer.from('howdy')
  const whole = (b: Buffer, tail: string[] = ['Content-Length', String(b.length)], http11 = true): Buffer | string => {
    const list = block.list()
    for (let i = 0; i < tail.length; i += 2) list.append(tail[i], tail[i + 1])
    const head = new ResponseHead(200, 'OK', list)
    return keptWhole(head, frameResponse(head, 'GET', http11, true, false), http11, b)
  }
  const text = 'HTTP/1.1 200 OK\r\nETag: "w"\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n'
  const bytes = (out: Buffer | string, b: Buffer): string => typeof out === 'string' ? out + b.toString('latin1') : out.toString('latin1')
  const outs: Array<Buffer | string> = []
  for (const b of [body, body, body, body, other, other, other, body, body, body]) outs.push(whole(b))
  t.same(outs.map((out, i) => bytes(out, [4, 5, 6].includes(i) ? other : body)), outs.map((_, i) => text + ([4, 5, 6].includes(i) ? 'howdy' : 'hello')), 'every response exact')
  t.same(outs.map(out => typeof out), ['string', 'string', 'object', 'object', 'string', 'object', 'object', 'string', 'object', 'object'], 'joined from the third of a run (the second for a new body)')
  t.equal(outs[2], outs[3], 'the same buffer while head and body stay')
  // another length after the block, a 1.0 client: the head changes, nothing joined is reused
  t.equal(typeof whole(body, ['Content-Length', '5', 'X-A', '1']), 'string')
  t.equal(bytes(whole(body, ['Content-Length', '5'], false), body), 'HTTP/1.1 200 OK\r\nETag: "w"\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello')
  t.equal(typeof whole(body), 'string', 'back to the first head: made again before it is joined')
  // a length that is not the body's: never joined
  for (let i = 0; i < 4; i++) t.equal(typeof whole(body, ['Content-Length', '4']), 'string')
})
