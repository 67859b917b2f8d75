import t, { type Test } from 'tap'
import { CB_OK, CB_PAUSE, Errno, HeadersResult, Llhttp, ParserType, skipsBodyCopy } from '../../lib/http1/llhttp.js'
import { HttpParser, LimitError, type MessageSink } from '../../lib/http1/parser.js'
import type { MessageHead } from '../../lib/http1/head.js'

interface Message { head: MessageHead, body: Buffer, complete: boolean }

/** A sink that records every message; `onHeadResult` picks what onHead returns. */
function recorder (onHeadResult: (head: MessageHead) => number = () => HeadersResult.CONTINUE) {
  const messages: Message[] = []
  const sink: MessageSink = {
    onHead (head) {
      // the parser reuses its head object for the next message: a sink copies what it keeps
      messages.push({ head: { ...head }, body: Buffer.alloc(0), complete: false })
      return onHeadResult(head)
    },
    onBody (body) {
      const m = messages[messages.length - 1]
      m.body = Buffer.concat([m.body, body])
      return CB_OK
    },
    onMessageComplete () {
      messages[messages.length - 1].complete = true
      return CB_OK
    },
  }
  return { messages, sink }
}

function feed (parser: HttpParser, bytes: Buffer, cuts: number[]): number {
  let from = 0
  for (const cut of [...cuts, bytes.length]) {
    const ret = parser.execute(bytes.subarray(from, cut))
    if (ret !== Errno.OK) return ret
    from = cut
  }
  return Errno.OK
}

const REQUEST = Buffer.from(
  'POST /upload?x=1 HTTP/1.1\r\nHost: example.test\r\nX-Empty:\r\nContent-Type: text/plain\r\n' +
  'X-Long: ' + 'v'.repeat(300) + '\r\nContent-Length: 11\r\n\r\nhello world')

function checkRequest (t: Test, m: Message | undefined): void {
  t.ok(m, 'one message')
  if (m === undefined) return
  t.equal(m.head.method, 'POST')
  t.equal(m.head.url, '/upload?x=1')
  t.equal(m.head.versionMinor, 1)
  t.same(m.head.headers, ['Host', 'example.test', 'X-Empty', '', 'Content-Type', 'text/plain', 'X-Long', 'v'.repeat(300), 'Content-Length', '11'])
  t.equal(m.body.toString(), 'hello world')
  t.equal(m.complete, true)
}

t.test('a request split at every offset parses the same', async t => {
  for (let cut = 1; cut < REQUEST.length; cut++) {
    const { messages, sink } = recorder()
    const parser = new HttpParser(ParserType.REQUEST, sink, 65536)
    t.equal(feed(parser, REQUEST, [cut]), Errno.OK, `split at ${cut}`)
    if (messages.length !== 1 || !messages[0].complete) t.fail(`split at ${cut}: ${messages.length} messages`)
    parser.destroy()
  }
  const { messages, sink } = recorder()
  const parser = new HttpParser(ParserType.REQUEST, sink, 65536)
  t.equal(feed(parser, REQUEST, [500]), Errno.OK)
  checkRequest(t, messages[0])
})

t.test('a request fed byte by byte parses the same', async t => {
  const { messages, sink } = recorder()
  const parser = new HttpParser(ParserType.REQUEST, sink, 65536)
  const cuts = Array.from({ length: REQUEST.length - 1 }, (_, i) => i + 1)
  t.equal(feed(parser, REQUEST, cuts), Errno.OK)
  t.equal(messages.length, 1)
  checkRequest(t, messages[0])
  parser.destroy()
})

t.test('pipelined requests in one chunk, chunked body de-chunked, trailers dropped', async t => {
  const { messages, sink } = recorder()
  const parser = new HttpParser(ParserType.REQUEST, sink, 65536)
  const bytes = Buffer.from(
    'GET /a HTTP/1.1\r\nHost: h\r\n\r\n' +
    'PUT /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n' +
    'HEAD /c HTTP/1.0\r\n\r\n')
  t.equal(parser.execute(bytes), Errno.OK)
  t.same(messages.map(m => [m.head.method, m.head.url, m.body.toString(), m.complete]),
    [['GET', '/a', '', true], ['PUT', '/b', 'hello world', true], ['HEAD', '/c', '', true]])
  t.same(messages[1].head.headers, ['Host', 'h', 'Transfer-Encoding', 'chunked'], 'trailer fields are not part of the head')
  t.equal(messages[2].head.versionMinor, 0)
  t.equal(messages[2].head.keepAlive, false, 'HTTP/1.0 without keep-alive')
  parser.destroy()
})

t.test('ambiguous or malformed requests are errors (lenient flags off)', async t => {
  const bad: Array<[string, string]> = [
    ['Content-Length with Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['duplicate Content-Length', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd'],
    ['Transfer-Encoding not ending in chunked', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n'],
    ['space before colon', 'GET / HTTP/1.1\r\nHost : h\r\n\r\n'],
    ['bare LF line ending', 'GET / HTTP/1.1\nHost: h\n\n'],
    ['invalid chunk size', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'],
    ['control character in a header value', 'GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n'],
    ['invalid method', 'G@T / HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['invalid version', 'GET / HTTP/9.7\r\nHost: h\r\n\r\n'],
  ]
  for (const [name, text] of bad) {
    const { sink } = recorder()
    const parser = new HttpParser(ParserType.REQUEST, sink, 65536)
    const ret = parser.execute(Buffer.from(text))
    t.not(ret, Errno.OK, name)
    t.not(ret, Errno.PAUSED, name)
    t.ok(parser.describeError(ret).length > 0, `${name}: ${parser.describeError(ret)}`)
    parser.destroy()
  }
})

t.test('a head over the limit stops the parser with a limit error', async t => {
  const { messages, sink } = recorder()
  const parser = new HttpParser(ParserType.REQUEST, sink, 1024)
  const ret = parser.execute(Buffer.from('GET / HTTP/1.1\r\nHost: h\r\nX-Big: ' + 'a'.repeat(2000) + '\r\n\r\n'))
  t.not(ret, Errno.OK)
  t.equal(parser.limitError, LimitError.HEAD_TOO_LARGE)
  t.match(parser.describeError(ret), /larger than 1024/)
  t.equal(messages.length, 0, 'no head was handed over')
  parser.destroy()
})

t.test('responses: HEAD has no body, 1xx before the final one, close-delimited ends at finish', async t => {
  const { messages, sink } = recorder(head => head.status === 200 && head.headers.includes('X-Head') ? HeadersResult.SKIP_BODY : HeadersResult.CONTINUE)
  const parser = new HttpParser(ParserType.RESPONSE, sink, 65536)
  const bytes = Buffer.from(
    'HTTP/1.1 200 OK\r\nX-Head: 1\r\nContent-Length: 5\r\n\r\n' + // answer to HEAD: no body follows
    'HTTP/1.1 100 Continue\r\n\r\n' +
    'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' +
    'HTTP/1.1 200 OK\r\n\r\nuntil close')
  t.equal(parser.execute(bytes), Errno.OK)
  t.equal(parser.needsEof, true, 'the last body runs until the connection closes')
  t.equal(parser.finish(), Errno.OK)
  t.same(messages.map(m => [m.head.status, m.head.reason, m.body.toString(), m.complete]),
    [[200, 'OK', '', true], [100, 'Continue', '', true], [201, 'Created', 'abc', true], [200, 'OK', 'until close', true]])
  parser.destroy()
})

t.test('a truncated Content-Length response is an error at finish', async t => {
  const { messages, sink } = recorder()
  const parser = new HttpParser(ParserType.RESPONSE, sink, 65536)
  t.equal(parser.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc')), Errno.OK)
  t.not(parser.finish(), Errno.OK)
  t.equal(messages[0].complete, false)
  parser.destroy()
})

t.test('an upgrade to h2c alone is no upgrade: parsing goes on in HTTP/1.1, split anywhere', async t => {
  const h2c = 'GET /a HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n'
  const bytes = Buffer.from(h2c + 'POST /b HTTP/1.1\r\nHost: h\r\nUpgrade: H2C\r\nConnection: upgrade\r\nContent-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\nHost: h\r\n\r\n')
  for (let cut = 0; cut < bytes.length; cut++) {
    const { messages, sink } = recorder()
    const parser = new HttpParser(ParserType.REQUEST, sink, 65536)
    const ret = feed(parser, bytes, cut === 0 ? [] : [cut])
    const seen = messages.map(m => `${m.head.method} ${m.head.url} upgrade=${String(m.head.upgrade)} ${m.body.toString()} ${String(m.complete)}`)
    if (ret !== Errno.OK || seen.join() !== 'GET /a upgrade=false  true,POST /b upgrade=false hi true,GET /c upgrade=false  true') {
      t.fail(`split at ${cut}: ${Llhttp.errorName(ret)} ${JSON.stringify(seen)}`)
    }
    parser.destroy()
  }
  t.pass('every split')
})

t.test('h2c alone, paused at its end: the next request follows the resume', async t => {
  const messages: string[] = []
  const sink: MessageSink = {
    onHead (head) { messages.push(`${head.url} upgrade=${String(head.upgrade)}`); return HeadersResult.CONTINUE },
    onBody () { return CB_OK },
    onMessageComplete () { return messages.length === 1 ? CB_PAUSE : CB_OK },
  }
  const parser = new HttpParser(ParserType.REQUEST, sink, 65536)
  const bytes = Buffer.from('GET /a HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n')
  t.equal(parser.execute(bytes), Errno.PAUSED)
  const rest = bytes.subarray(parser.errorOffset())
  t.equal(rest.toString(), 'GET /b HTTP/1.1\r\nHost: h\r\n\r\n')
  parser.resume()
  t.equal(parser.execute(rest), Errno.OK)
  t.same(messages, ['/a upgrade=false', '/b upgrade=false'])
  parser.destroy()
})

t.test('an upgrade naming another protocol beside h2c stops the parser, the offset within the chunk given', async t => {
  const { messages, sink } = recorder()
  const parser = new HttpParser(ParserType.REQUEST, sink, 65536)
  const first = 'GET /a HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n'
  const second = 'GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: h2c, websocket\r\nConnection: Upgrade\r\n\r\n'
  const bytes = Buffer.from(first + second + '\x81\x00tunnel', 'latin1')
  t.equal(parser.execute(bytes), Errno.PAUSED_UPGRADE)
  t.equal(bytes.subarray(parser.errorOffset()).toString('latin1'), '\x81\x00tunnel', 'what follows the upgrade request')
  t.same(messages.map(m => `${m.head.url} ${String(m.head.upgrade)}`), ['/a false', '/ws true'])
  parser.destroy()
})

t.test('partialHead: a request refused before its head completed, as far as it was parsed', async t => {
  const partial = (text: string, maxUrl = 65536): { method: string, url: string } => {
    const { sink } = recorder()
    const parser = new HttpParser(ParserType.REQUEST, sink, 65536, maxUrl)
    parser.execute(Buffer.from(text))
    const { method, url } = parser.partialHead()
    parser.destroy()
    return { method, url }
  }
  t.same(partial('DELETE /items/7?x'), { method: 'DELETE', url: '/items/7?x' }, 'a head still arriving')
  t.same(partial('PATCH /a HTTP/1.1\r\nBad Header\r\n\r\n'), { method: 'PATCH', url: '/a' }, 'an error in the header fields')
  t.same(partial('FOO / HTTP/1.1\r\n\r\n'), { method: '-', url: '-' }, 'an unknown method: nothing parsed')
  t.same(partial('GE'), { method: '-', url: '-' }, 'the method not complete yet')
  t.same(partial(`DELETE /${'a'.repeat(9000)} HTTP/1.1\r\n\r\n`, 8192), { method: 'DELETE', url: '/' + 'a'.repeat(255) + '...' },
    'a target over the limit: its beginning, marked as cut')
  t.same(partial('GET /done HTTP/1.1\r\nHost: h\r\n\r\n'), { method: '-', url: '-' }, 'no head under way')
})

t.test('parsing goes on after WASM memory grows: many parsers allocated, then a chunk larger than any before', async t => {
  const { messages, sink } = recorder()
  const parser = new HttpParser(ParserType.REQUEST, sink, 65536)
  t.equal(parser.execute(REQUEST), Errno.OK)
  // each llhttp_alloc takes memory; thousands of them grow WASM memory, detaching its old buffer
  const others: HttpParser[] = []
  for (let i = 0; i < 5000; i++) others.push(new HttpParser(ParserType.REQUEST, recorder().sink, 65536))
  t.equal(parser.execute(REQUEST), Errno.OK)
  const body = Buffer.alloc(3 * 1024 * 1024, 'z')
  const big = Buffer.concat([Buffer.from(`PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`), body])
  t.equal(parser.execute(big), Errno.OK, 'a 3 MiB chunk: the copy buffer grows too')
  t.equal(parser.execute(REQUEST), Errno.OK)
  for (const other of others) other.destroy()
  t.equal(messages.length, 4)
  checkRequest(t, messages[0])
  checkRequest(t, messages[1])
  t.equal(messages[2].head.url, '/big')
  t.ok(messages[2].body.equals(body), 'the large body arrived intact')
  checkRequest(t, messages[3])
})

t.test('heads larger than the text window: every name and value exact, in one chunk and split anywhere', async t => {
  // values of every length around the 2048-byte window, one longer than the window, bytes above 127
  const fields: string[] = []
  for (let i = 0; i < 60; i++) fields.push(`X-F${i}`, 'v'.repeat(i * 37) + '\u00e9' + i)
  fields.push('X-Huge', 'h'.repeat(5000))
  let text = 'GET /' + 'p'.repeat(3000) + ' HTTP/1.1\r\nHost: a\r\n'
  for (let i = 0; i < fields.length; i += 2) text += `${fields[i]}: ${fields[i + 1]}\r\n`
  const bytes = Buffer.from(text + '\r\n', 'latin1')
  const expected = ['Host', 'a', ...fields]
  let state = 7
  const cuts = [[] as number[]]
  for (let n = 0; n < 40; n++) {
    state = (state * 1103515245 + 12345) >>> 0
    const a = state % bytes.length
    state = (state * 1103515245 + 12345) >>> 0
    const b = state % bytes.length
    cuts.push([Math.min(a, b), Math.max(a, b)].filter((c, i, all) => c > 0 && all.indexOf(c) === i))
  }
  for (const cut of cuts) {
    const { messages, sink } = recorder()
    const parser = new HttpParser(ParserType.REQUEST, sink, 1 << 20, 1 << 20)
    t.equal(feed(parser, bytes, cut), Errno.OK, `cuts ${cut.join(',') || 'none'}`)
    t.equal(messages[0]?.head.url, '/' + 'p'.repeat(3000))
    t.same(messages[0]?.head.headers, expected, `cuts ${cut.join(',') || 'none'}: headers exact`)
  }
})

t.test('body bytes of known length cross the parser without a copy, exact whatever the cuts, pauses and other parsers between', async t => {
  t.equal(skipsBodyCopy, true, 'the check at load found llhttp\'s state and offsets (another llhttp build: look at llhttp.ts)')
  // bodies that look like requests: llhttp must never read them, and must read what follows them
  const evil = 'GET /evil HTTP/1.1\r\nHost: evil\r\n\r\n'
  const lengthBody = Buffer.from((evil + 'x'.repeat(37)).repeat(300))
  const chunkData = Buffer.from(evil.repeat(200))
  const stream = Buffer.concat([
    Buffer.from(`POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: ${lengthBody.length}\r\n\r\n`), lengthBody,
    Buffer.from(`POST /two HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${chunkData.length.toString(16)}\r\n`), chunkData,
    Buffer.from('\r\n5\r\nhello\r\n0\r\n\r\n'),
    Buffer.from('GET /three HTTP/1.1\r\nHost: a\r\n\r\n'),
  ])
  const check = (messages: Message[], label: string): void => {
    t.same(messages.map(m => m.head.url), ['/one', '/two', '/three'], `${label}: three messages, none from a body`)
    t.ok(messages[0].body.equals(lengthBody), `${label}: the Content-Length body exact`)
    t.equal(messages[1].body.toString(), chunkData.toString() + 'hello', `${label}: the chunked body exact`)
    t.equal(messages[2].body.length, 0)
    t.ok(messages.every(m => m.complete), `${label}: all complete`)
  }
  let seed = 7
  const random = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n }
  for (let round = 0; round < 40; round++) {
    const { messages, sink } = recorder()
    const parser = new HttpParser(ParserType.REQUEST, sink, 65536)
    // another parser between each of this one's chunks writes its own bytes into the shared WASM buffer
    const other = recorder()
    const otherParser = new HttpParser(ParserType.REQUEST, other.sink, 65536)
    const cuts = new Set<number>()
    for (let i = random(12); i > 0; i--) cuts.add(1 + random(stream.length - 1))
    let from = 0
    for (const cut of [...[...cuts].sort((a, b) => a - b), stream.length]) {
      t.equal(parser.execute(stream.subarray(from, cut)), Errno.OK)
      t.equal(otherParser.execute(Buffer.from(evil)), Errno.OK)
      from = cut
    }
    check(messages, `round ${round}`)
    t.equal(other.messages.length, cuts.size + 1)
    parser.destroy()
    otherParser.destroy()
  }
  // paused inside the body: the rest of the chunk parsed after the resume
  const paused = recorder()
  let pauses = 0
  const pausing: MessageSink = {
    onHead: head => paused.sink.onHead(head),
    onBody (body) {
      paused.sink.onBody(body)
      return pauses++ < 3 ? CB_PAUSE : CB_OK
    },
    onMessageComplete: () => paused.sink.onMessageComplete(),
  }
  const parser = new HttpParser(ParserType.REQUEST, pausing, 65536)
  const pieces = [stream.subarray(0, 100), stream.subarray(100, 5000), stream.subarray(5000)]
  for (let piece of pieces) {
    for (;;) {
      const ret = parser.execute(piece)
      if (ret === Errno.OK) break
      t.equal(ret, Errno.PAUSED)
      piece = piece.subarray(parser.errorOffset())
      parser.resume()
    }
  }
  check(paused.messages, 'paused in the body')
})

t.test('a response without a body despite its Content-Length (HEAD, 304) is not passed over: the next response is read', async t => {
  const stream = Buffer.from(
    'HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n' +
    'HTTP/1.1 304 Not Modified\r\nContent-Length: 40\r\n\r\n' +
    'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello')
  for (let cut = 1; cut < stream.length; cut += 3) {
    let n = 0
    // the first answers a HEAD: its Content-Length describes a body that is not there
    const { messages, sink } = recorder(() => n++ === 0 ? HeadersResult.SKIP_BODY : HeadersResult.CONTINUE)
    const parser = new HttpParser(ParserType.RESPONSE, sink, 65536)
    t.equal(feed(parser, stream, [cut]), Errno.OK)
    t.same(messages.map(m => [m.head.status, m.body.toString()]), [[200, ''], [304, ''], [200, 'hello']], `cut at ${cut}`)
    parser.destroy()
  }
})
