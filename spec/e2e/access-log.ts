/**
 * The access log: one line per request and per TCP session, in combined and JSON, written to a
 * file without blocking; a log that cannot be written (a stalled disk, here a pipe nobody reads)
 * drops lines and counts them while traffic goes on.
 */
import { execFileSync } from 'node:child_process'
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import https from 'node:https'
import t, { type Test } from 'tap'
import { clfTime, formatCombined, quoted } from '../../lib/observe/access-log.js'
import { createProxy, type ProxyOptions, type ResponseInfo } from '../../lib/index.js'
import { RawClient, exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import { connectRaw, startTcpBackend, echo } from '../helpers/tls-backends.js'
import { makeCertificates } from '../helpers/tls-certs.js'
import { within } from '../helpers/wait.js'

function tempDir (t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-log-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function lines (file: string): string[] {
  return readFileSync(file, 'utf8').split('\n').filter(line => line !== '')
}

t.test('combined: the request line, status, body bytes, referer, agent, then rp4\'s fields; exact bytes', async t => {
  const info: ResponseInfo = {
    id: 1, method: 'GET', url: '/a?b=1', client: '[2001:db8::1]:5555', status: 200, target: '127.0.0.1:3000', duration: 12.345,
    time: Date.UTC(2026, 0, 2, 3, 4, 5), protocol: 'HTTP/1.1', host: 'h', referer: 'http://r/', userAgent: 'curl/8 "x"\n',
    route: 'api', bytesIn: 7, bytesOut: 2, upstreamConnect: 0.51, upstreamFirstByte: 3.25, retries: 1, cache: '', tls: 'TLSv1.3', sni: 'h.example',
  }
  t.equal(formatCombined(info),
    '2001:db8::1 - - [02/Jan/2026:03:04:05 +0000] "GET /a?b=1 HTTP/1.1" 200 2 "http://r/" "curl/8 \\"x\\"\\x0A"' +
    ' client=[2001:db8::1]:5555 route=api target=127.0.0.1:3000 in=7 time=12.3 connect=0.5 first_byte=3.3 retries=1 cache=- tls=TLSv1.3 sni=h.example\n')
  t.equal(clfTime(Date.UTC(2026, 10, 29, 23, 59, 59)), '29/Nov/2026:23:59:59 +0000')
  t.equal(quoted(''), '"-"')
  t.equal(quoted('é\u2028'), '"\\xE9\\u2028"', 'no byte of a client ends or forges a line')
})

t.test('JSON lines to a file: every field of a proxied request, a refused one, and a TCP session', async t => {
  const dir = tempDir(t)
  const file = path.join(dir, 'access.log')
  const origin = await startOrigin(t, req => req.url === '/slow' ? { bytes: ok('slow'), delay: 50 } : ok('hello'))
  const { port, proxy } = await startProxy(t, { targets: [origin.target], accessLog: { file, format: 'json' } })
  const res = await exchange(port, 'POST /slow HTTP/1.1\r\nHost: h\r\nUser-Agent: ua\r\nReferer: http://r/\r\nContent-Length: 5\r\n\r\nabcde', { responses: 1 })
  t.equal(res.responses[0]?.head.line[1], '200')
  await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n', { responses: 1 })
  await proxy.close()
  const [first, second] = lines(file).map(line => JSON.parse(line) as Record<string, unknown>)
  t.match(first, {
    type: 'http', method: 'POST', url: '/slow', protocol: 'HTTP/1.1', host: 'h', status: 200, route: 'default', target: origin.target,
    bytesIn: 5, bytesOut: 4, retries: 0, cache: null, tls: null, sni: null, referer: 'http://r/', userAgent: 'ua',
  })
  t.match(first.client, /^127\.0\.0\.1:\d+$/)
  t.match(first.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  t.ok((first.upstreamConnect as number) >= 0 && (first.upstreamConnect as number) <= (first.upstreamFirstByte as number), 'connect ≤ first byte')
  t.ok((first.upstreamFirstByte as number) >= 40, 'the first byte waited for the slow origin')
  t.ok((first.duration as number) >= (first.upstreamFirstByte as number), 'total ≥ first byte')
  t.match(second, { status: 400, target: '', upstreamConnect: null, upstreamFirstByte: null, bytesIn: 0 }, 'a refused request: no upstream timings')
  t.equal(proxy.stats().accessLog?.dropped, 0)
})

t.test('combined to a file: a TLS request shows its version and SNI; a TCP relay gets its own line', async t => {
  const dir = tempDir(t)
  const file = path.join(dir, 'access.log')
  const certs = await makeCertificates(t)
  const pair = await certs.issue('site', ['site.test'])
  const origin = await startOrigin(t, () => ok('tls'))
  const backend = await startTcpBackend(t, echo)
  const { port, proxy } = await startProxy(t, {
    targets: [origin.target], tls: { certificates: [pair] }, tcpFallback: [backend.target], timeouts: { detect: 30_000 }, accessLog: { file },
  })
  const body = await new Promise<string>((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/t', servername: 'site.test', ca: readFileSync(certs.ca.cert), headers: { host: 'site.test' }, agent: false }, res => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d.toString() })
      res.on('end', () => resolve(text))
    })
    req.on('error', reject)
  })
  t.equal(body, 'tls')
  const { socket, conn, watch } = await connectRaw(port)
  const localPort = socket.localPort
  socket.write('\x00\x01binary protocol')
  await watch.until(() => conn.data.length === 17, 5000, 'the echo')
  socket.end()
  await watch.until(() => conn.closed, 5000, 'the relay to close')
  await proxy.close()
  const [tlsLine, tcpLine] = lines(file)
  t.match(tlsLine, /^127\.0\.0\.1 - - \[\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET \/t HTTP\/1\.1" 200 3 "-" "-" client=127\.0\.0\.1:\d+ route=default target=127\.0\.0\.1:\d+ in=0 time=\d+\.\d connect=\d+\.\d first_byte=\d+\.\d retries=0 cache=- tls=TLSv1\.3 sni=site\.test$/)
  t.match(tcpLine, new RegExp(`^127\\.0\\.0\\.1 - - \\[[^\\]]+\\] "TCP default" 0 17 "-" "-" client=127\\.0\\.0\\.1:${localPort} route=- target=${backend.target} in=17 time=\\d+\\.\\d connect=- first_byte=- retries=0 cache=- tls=- sni=-$`))
})

t.test('a stalled log (a pipe nobody reads) drops lines and counts them; traffic is not held up', async t => {
  const dir = tempDir(t)
  const fifo = path.join(dir, 'stalled')
  execFileSync('mkfifo', [fifo])
  // a reader that never reads: writes block once the pipe's buffer is full, as on a stalled disk
  const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK)
  let drained = false
  const drain = (): void => {
    if (drained) return
    drained = true
    const buf = Buffer.alloc(65536)
    // bounded: the proxy wrote at most its buffer plus one pipe's worth
    for (let i = 0; i < 10_000; i++) {
      try {
        if (readSync(reader, buf) === 0) break
      } catch { break }
    }
  }
  t.teardown(() => { drain(); closeSync(reader) })
  const origin = await startOrigin(t, () => ok('x'))
  const { port, proxy } = await startProxy(t, { targets: [origin.target], accessLog: { file: fifo, buffer: '4k' } })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  const long = '/' + 'p'.repeat(2000)
  const requests = 100
  for (let i = 0; i < requests; i++) await client.write(`GET ${long}?${i} HTTP/1.1\r\nHost: h\r\n\r\n`)
  await within(client.waitResponses(requests), 10_000, `${requests} responses while the log is stalled`)
  t.equal(client.responses.filter(r => r.head.line[1] === '200').length, requests, 'every request answered')
  const { accessLog } = proxy.stats()
  t.ok(accessLog !== null && accessLog.dropped > 0, `lines dropped (${JSON.stringify(accessLog)})`)
  t.ok(accessLog !== null && accessLog.written + accessLog.dropped === requests, 'each line written or counted as dropped')
  // a reader again: what waited is written, and close() can finish
  const closing = proxy.close()
  drain()
  drained = false
  await within(closing, 5000, 'close once the pipe is read')
})

t.test('a log file that cannot be written: an error naming accessLog.file, before anything listens', async t => {
  t.throws(() => startProxySync({ targets: ['127.0.0.1:1'], accessLog: { file: '/nonexistent-dir/a.log' } }), /accessLog\.file.*cannot create "\/nonexistent-dir\/a\.log": ENOENT/)
  t.throws(() => startProxySync({ targets: ['127.0.0.1:1'], accessLog: { file: 'a.log', format: 'apache' as 'json' } }), /accessLog\.format.*must be one of combined, json/)
})

function startProxySync (options: ProxyOptions): void {
  createProxy({ listen: '127.0.0.1:0', ...options })
}

t.test('the cache\'s part in each line: miss, then hit', async t => {
  const dir = tempDir(t)
  const file = path.join(dir, 'access.log')
  const origin = await startOrigin(t, () => ok('cached', ['Cache-Control: max-age=60']))
  const { port, proxy } = await startProxy(t, { targets: [origin.target], cache: { size: '1m' }, accessLog: { file, format: 'json' } })
  for (let i = 0; i < 2; i++) await exchange(port, 'GET /c HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 1 })
  await proxy.close()
  t.same(lines(file).map(line => (JSON.parse(line) as { cache: string | null }).cache), ['miss', 'hit'])
  t.equal(origin.requests.length, 1, 'the second came from the cache')
})

t.test('bytesOut counts what went to the client: the compressed body, not the backend\'s (nginx\'s $body_bytes_sent)', async t => {
  const dir = tempDir(t)
  const file = path.join(dir, 'access.log')
  const text = 'all work and no play makes a compressible body. '.repeat(400)
  const origin = await startOrigin(t, () => ok(text, ['Content-Type: text/plain']))
  const { port, proxy } = await startProxy(t, { targets: [origin.target], compress: true, accessLog: { file, format: 'json' } })
  const gzipped = (await exchange(port, 'GET /z HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n', { responses: 1 })).responses[0]
  const plain = (await exchange(port, 'GET /p HTTP/1.1\r\nHost: h\r\nAccept-Encoding: identity\r\n\r\n', { responses: 1 })).responses[0]
  const head = (await exchange(port, 'HEAD /h HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n', { responses: 1 })).responses[0]
  await proxy.close()
  t.equal(gzipped.head.line[1], '200')
  t.ok(gzipped.bodyLength > 0 && gzipped.bodyLength < text.length / 4, `compressed: ${gzipped.bodyLength} bytes of ${text.length}`)
  t.equal(plain.bodyLength, text.length)
  t.equal(head.bodyLength, 0)
  const logged = lines(file).map(line => JSON.parse(line) as { url: string, bytesOut: number })
  t.same(logged.map(l => [l.url, l.bytesOut]), [['/z', gzipped.bodyLength], ['/p', text.length], ['/h', 0]], 'each line: the body bytes the client got')
})
