/**
 * Real clients through the proxy: curl (keep-alive across URLs, uploads, downloads, HTTP/1.0) and
 * Node's own fetch (undici). Pipelining is left to the raw-client specs: neither client does it.
 */
import { execFile } from 'node:child_process'
import { writeFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { chunked, randomBody, sha256 } from '../helpers/bodies.js'
import { header } from '../helpers/framing.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'

interface CurlResult { code: number, stdout: Buffer, stderr: string }

function curl (args: string[]): Promise<CurlResult> {
  return new Promise(resolve => {
    execFile('curl', ['-sS', '--max-time', '20', ...args], { encoding: 'buffer', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      // execFile reports curl's exit status as a numeric `code` on the error
      const status = (err as { code?: unknown } | null)?.code
      const code = err === null ? 0 : typeof status === 'number' ? status : 1
      resolve({ code, stdout, stderr: stderr.toString() })
    })
  })
}

/** The origin: /echo returns the body's hash, /bytes/N returns N random bytes (chunked) with their hash. */
async function testOrigin (t: Test) {
  return await startOrigin(t, req => {
    if (req.url.startsWith('/bytes/')) {
      const body = randomBody(Number(req.url.slice(7)))
      return Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nX-Sha256: ${sha256(body)}\r\nTransfer-Encoding: chunked\r\n\r\n`), chunked(body, 100_000)])
    }
    if (req.url === '/echo') return ok(`${req.bodyLength} ${req.sha256}`)
    return ok(req.url.slice(1), ['Content-Type: text/plain', 'X-Origin: yes'])
  }, { interim: req => header(req, 'expect') === '100-continue' ? 'HTTP/1.1 100 Continue\r\n\r\n' : undefined })
}

t.test('curl: GET with the response head', async t => {
  const origin = await testOrigin(t)
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await curl(['-i', `http://127.0.0.1:${port}/hello`])
  t.equal(res.code, 0, res.stderr)
  t.equal(res.stdout.toString(), 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Origin: yes\r\nContent-Length: 5\r\nVia: 1.1 rp4\r\n\r\nhello')
  const sent = origin.requests[0]!
  t.equal(header(sent, 'host'), `127.0.0.1:${port}`)
  t.equal(header(sent, 'x-forwarded-host'), `127.0.0.1:${port}`)
  t.match(header(sent, 'user-agent'), /^curl\//)
})

t.test('curl: two URLs in one invocation share one client connection', async t => {
  const origin = await testOrigin(t)
  const { port, events } = await startProxy(t, { targets: [origin.target] })
  const res = await curl([`http://127.0.0.1:${port}/one`, `http://127.0.0.1:${port}/two`])
  t.equal(res.code, 0, res.stderr)
  t.equal(res.stdout.toString(), 'onetwo')
  t.equal(events.requests.length, 2)
  t.equal(events.requests[0]?.client, events.requests[1]?.client, 'same client address and port: the connection was kept')
  t.equal(origin.connections.length, 1)
})

t.test('curl: upload and download of random bodies', async t => {
  const origin = await testOrigin(t)
  const { port } = await startProxy(t, { targets: [origin.target] })
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-curl-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const body = randomBody(3 << 20)
  writeFileSync(path.join(dir, 'up.bin'), body)
  const up = await curl(['--data-binary', '@' + path.join(dir, 'up.bin'), `http://127.0.0.1:${port}/echo`])
  t.equal(up.code, 0, up.stderr)
  t.equal(up.stdout.toString(), `${body.length} ${sha256(body)}`, 'upload (Content-Length, Expect: 100-continue) intact')
  const chunkedUp = await curl(['-H', 'Transfer-Encoding: chunked', '--data-binary', '@' + path.join(dir, 'up.bin'), `http://127.0.0.1:${port}/echo`])
  t.equal(chunkedUp.stdout.toString(), `${body.length} ${sha256(body)}`, 'chunked upload intact')
  const down = await curl(['-D', path.join(dir, 'head.txt'), `http://127.0.0.1:${port}/bytes/${5 << 20}`])
  t.equal(down.code, 0, down.stderr)
  t.equal(down.stdout.length, 5 << 20)
  const headTxt = readFileSync(path.join(dir, 'head.txt'), 'latin1')
  t.match(headTxt, `\r\nX-Sha256: ${sha256(down.stdout)}\r\n`, 'download intact')
})

t.test('curl: HTTP/1.0', async t => {
  const origin = await testOrigin(t)
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await curl(['-0', '-i', `http://127.0.0.1:${port}/old`])
  t.equal(res.code, 0, res.stderr)
  t.equal(res.stdout.toString(), 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Origin: yes\r\nContent-Length: 3\r\nVia: 1.1 rp4\r\nConnection: close\r\n\r\nold')
  const big = await curl(['-0', `http://127.0.0.1:${port}/bytes/300000`])
  t.equal(big.stdout.length, 300000, 'a chunked body reaches an HTTP/1.0 client de-chunked')
})

t.test('fetch: GET, POST, HEAD and a streamed download', async t => {
  const origin = await testOrigin(t)
  const { port } = await startProxy(t, { targets: [origin.target] })
  const base = `http://127.0.0.1:${port}`

  const get = await fetch(`${base}/fetched`)
  t.equal(get.status, 200)
  t.equal(get.headers.get('via'), '1.1 rp4')
  t.equal(await get.text(), 'fetched')

  const body = randomBody(1 << 20)
  const post = await fetch(`${base}/echo`, { method: 'POST', body })
  t.equal(await post.text(), `${body.length} ${sha256(body)}`)

  const head = await fetch(`${base}/fetched`, { method: 'HEAD' })
  t.equal(head.headers.get('content-length'), '7')
  t.equal((await head.arrayBuffer()).byteLength, 0)

  const down = await fetch(`${base}/bytes/${4 << 20}`)
  const bytes = Buffer.from(await down.arrayBuffer())
  t.equal(sha256(bytes), down.headers.get('x-sha256'))
})

t.test('fetch: a streamed upload (chunked request body)', async t => {
  const origin = await testOrigin(t)
  const { port } = await startProxy(t, { targets: [origin.target] })
  const parts = [randomBody(100_000), randomBody(1), randomBody(500_000)]
  const stream = new ReadableStream<Uint8Array>({
    start (controller) {
      for (const p of parts) controller.enqueue(p)
      controller.close()
    },
  })
  const res = await fetch(`http://127.0.0.1:${port}/echo`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit)
  const all = Buffer.concat(parts)
  t.equal(await res.text(), `${all.length} ${sha256(all)}`)
  t.equal(origin.requests[0]?.framing, 'chunked')
})
