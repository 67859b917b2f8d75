/**
 * Client pipelining: several requests written before any answer, answered in request order even
 * when the origin finishes them in another order, bounded by maxPipelinedRequests.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { RawClient, exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import { seeded } from '../helpers/random.js'
import type { ProxyOptions } from '../../lib/index.js'

const get = (path: string, ...extra: string[]): string =>
  [`GET ${path} HTTP/1.1`, 'Host: h', ...extra].map(x => x + '\r\n').join('') + '\r\n'

t.test('five requests in one write: five answers in order', async t => {
  const origin = await startOrigin(t, req => ok(`body of ${req.url}`))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const paths = ['/1', '/2', '/3', '/4', '/5']
  const res = await exchange(port, paths.map(p => get(p)).join(''), { responses: 5 })
  t.same(res.responses.map(r => r.body.toString()), paths.map(p => `body of ${p}`))
  t.equal(res.raw.length, res.responses.reduce((n, r) => n + r.raw.length, 0), 'nothing else on the wire')
})

t.test('a later response ready first still waits for the earlier one', async t => {
  const answered: string[] = []
  const origin = await startOrigin(t, async req => {
    if (req.url === '/slow') {
      // the slow answer is held until the origin has answered the fast one: the order is forced
      await origin.until(() => answered.includes('/fast'), 5000, 'the fast request to be answered')
    }
    answered.push(req.url)
    return ok(`${req.url} done`)
  })
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, get('/slow') + get('/fast'), { responses: 2 })
  t.same(answered, ['/fast', '/slow'], 'the origin answered fast first')
  t.same(res.responses.map(r => r.body.toString()), ['/slow done', '/fast done'], 'the client got them in request order')
  t.equal(origin.connections.length, 2, 'on two upstream connections')
})

t.test('HEAD, 204 and 304 in a pipeline: no body where there is none', async t => {
  const origin = await startOrigin(t, req => {
    switch (req.url) {
      case '/head': return 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n'
      case '/204': return 'HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n'
      case '/304': return 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 55\r\n\r\n'
      default: return ok('tail')
    }
  })
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, get('/head').replace('GET', 'HEAD') + get('/204') + get('/304') + get('/last'), { responses: 4 })
  t.equal(res.text,
    'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nVia: 1.1 rp4\r\n\r\n' +
    'HTTP/1.1 204 No Content\r\nX-A: 1\r\nVia: 1.1 rp4\r\n\r\n' +
    'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 55\r\nVia: 1.1 rp4\r\n\r\n' +
    'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nVia: 1.1 rp4\r\n\r\ntail')
})

t.test('maxPipelinedRequests bounds the requests in flight; all are still answered', async t => {
  let inflight = 0
  let peak = 0
  const origin = await startOrigin(t, async req => {
    inflight++
    peak = Math.max(peak, inflight)
    await new Promise(resolve => setTimeout(resolve, 20))
    inflight--
    return ok(req.url)
  })
  const { port } = await startProxy(t, { targets: [origin.target], maxPipelinedRequests: 2 })
  const paths = Array.from({ length: 8 }, (_, i) => `/p${i}`)
  const res = await exchange(port, paths.map(p => get(p)).join(''), { responses: 8 })
  t.same(res.responses.map(r => r.body.toString()), paths)
  t.ok(peak <= 2, `at most 2 requests at the origin at once (saw ${peak})`)
})

t.test('a pipeline beyond maxPipelinedRequests, then the client\'s FIN: every request sent before it answered, in order, then the close', async t => {
  const origin = await startOrigin(t, async req => {
    await new Promise(resolve => setTimeout(resolve, 5))
    return ok(`${req.method} ${req.url} ${req.body.length}`)
  })
  const { port } = await startProxy(t, { targets: [origin.target], maxPipelinedRequests: 2 })
  const paths = Array.from({ length: 8 }, (_, i) => `/p${i}`)
  const whole = await RawClient.connect(port)
  await whole.write(paths.map(p => get(p)).join('') + 'POST /last HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello')
  whole.end()
  await whole.waitClose()
  t.same(whole.responses.map(r => r.body.toString()), [...paths.map(p => `GET ${p} 0`), 'POST /last 5'], 'nine answers, the body read from what was held back')
  // the same bytes cut at random places, some reads held back while others arrive, then the FIN
  const random = seeded(9112)
  const bytes = paths.map(p => get(p)).join('') + 'POST /last HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello'
  for (let round = 0; round < 6; round++) {
    const cuts = [...new Set(Array.from({ length: 12 }, () => 1 + Math.floor(random() * (bytes.length - 1))))].sort((a, b) => a - b)
    const split = await RawClient.connect(port)
    await split.writeSplit(bytes, cuts)
    split.end()
    await split.waitClose()
    t.same(split.responses.map(r => r.body.toString()), [...paths.map(p => `GET ${p} 0`), 'POST /last 5'], `cut at ${cuts.join(',')}: nine answers`)
  }
  // a body the FIN cuts short: what came before it is answered, the cut request never reaches the origin whole
  const cut = await RawClient.connect(port)
  await cut.write(paths.slice(0, 4).map(p => get(p)).join('') + 'POST /cut HTTP/1.1\r\nHost: h\r\nContent-Length: 50\r\n\r\nhalf')
  cut.end()
  await cut.waitClose()
  t.same(cut.responses.map(r => r.body.toString()), paths.slice(0, 4).map(p => `GET ${p} 0`))
  t.notOk(origin.requests.some(r => r.url === '/cut'), 'the cut request was not completed at the origin')
})

t.test('requests held behind an answer of rp4\'s own at work (static files), then the FIN: all answered', async t => {
  const root = mkdtempSync(path.join(tmpdir(), 'rp4-pipeline-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  writeFileSync(path.join(root, 'here.txt'), 'from a file')
  const origin = await startOrigin(t, req => ok(`origin ${req.url}`))
  const { port } = await startProxy(t, { targets: [origin.target], static: { root, fallback: 'default' } })
  // each miss asks the file system (asynchronous): the requests behind it wait in the stash
  const paths = Array.from({ length: 40 }, (_, i) => i % 4 === 0 ? '/here.txt' : `/app${i}`)
  const client = await RawClient.connect(port)
  await client.write(paths.map(p => get(p)).join(''))
  client.end()
  await client.waitClose(10_000)
  t.same(client.responses.map(r => r.body.toString()), paths.map(p => p === '/here.txt' ? 'from a file' : `origin ${p}`))
})

t.test('Connection: close in the middle of a pipeline: later requests are not forwarded', async t => {
  const origin = await startOrigin(t, req => ok(req.url))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const res = await exchange(port, get('/1') + get('/2', 'Connection: close') + get('/3'))
  t.same(res.responses.map(r => r.body.toString()), ['/1', '/2'])
  t.equal(res.closed, true)
  t.match(res.responses[1]?.head.text, /\r\nConnection: close\r\n\r\n$/)
  t.notOk(origin.requests.some(r => r.url === '/3'), '/3 never reached the origin')
})

t.test('a pipeline written one byte at a time', async t => {
  const origin = await startOrigin(t, req => ok(req.url + ':' + req.body.toString()))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  const post = 'POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n'
  await client.writeBytewise(get('/a') + post + get('/c'))
  const res = await client.waitResponses(3)
  t.same(res.map(r => r.body.toString()), ['/a:', '/b:xy', '/c:'])
})

t.test('answers of rp4\'s own in a pipeline, among proxied ones: every one in order, a close in the middle ends it there', async t => {
  const origin = await startOrigin(t, req => ok(`origin ${req.url}`))
  const { port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0', timeouts: { detect: '30s' } }],
    routes: [
      { match: { pathExact: '/here' }, respond: { status: 200, body: 'here' } },
      { match: { path: '/moved' }, redirect: { to: '/new', status: 308 } },
      { proxy: 'app' },
    ],
    upstreams: { app: { targets: [origin.target] } },
  } as ProxyOptions)
  // local answers complete while their request is parsed: the parser must go on to the next in the same chunk
  const paths = ['/here', '/here', '/a', '/moved', '/here', '/b', '/here', '/moved', '/here']
  for (let n = 0; n < 3; n++) paths.push(...paths.slice(0, 9))
  const res = await exchange(port, paths.map(p => get(p)).join(''), { responses: paths.length })
  t.equal(res.responses.length, paths.length, `${paths.length} answers`)
  const seen = res.responses.map(r => r.head.line[1] === '308' ? 'moved' : r.body.toString())
  t.same(seen, paths.map(p => p === '/here' ? 'here' : p === '/moved' ? 'moved' : `origin ${p}`), 'each answer where its request was')
  t.equal(res.raw.length, res.responses.reduce((n, r) => n + r.raw.length, 0), 'nothing else on the wire')

  const closing = await exchange(port, get('/here') + get('/here', 'Connection: close') + get('/here') + get('/c'))
  t.same(closing.responses.map(r => r.body.toString()), ['here', 'here'], 'nothing answered after the close')
  t.equal(closing.closed, true)
  t.notOk(origin.requests.some(r => r.url === '/c'), '/c never reached the origin')
})

t.test('a pipelined client that stops reading: the origin is asked a bounded part while it reads nothing, then every answer arrives whole and in order once it reads', async t => {
  // 256 KiB answers: after the first read of each, its body leaves rp4 in writes straight to the
  // socket's handle (core/direct-write.ts); 60 of them, 15 MB, are more than loopback's socket
  // buffers hold, so one of those writes waits in the kernel's queue and the backpressure must
  // come from it
  const SIZE = 256 * 1024
  const count = 60
  const body = (i: number): Buffer => {
    const b = Buffer.alloc(SIZE, 0x61 + (i % 26))
    b.write(`answer ${i} `, 0, 'latin1')
    return b
  }
  const origin = await startOrigin(t, req => ok(body(Number(req.url.slice(1)))))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port, { keep: 32 << 20 })
  t.teardown(() => client.destroy())
  client.socket.pause()
  await client.write(Array.from({ length: count }, (_, i) => get(`/${i}`)).join(''))
  // the origin's answers stop growing: checked every 50 ms, at most 10 s
  let answered = -1
  for (let i = 0; i < 200 && origin.requests.length !== answered; i++) {
    answered = origin.requests.length
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  t.ok(answered < count, `while the client read nothing, the origin was asked ${answered} of ${count}`)
  client.socket.resume()
  await client.waitResponses(count, 30_000)
  let intact = 0
  for (let i = 0; i < count; i++) if (client.responses[i].body.equals(body(i))) intact++
  t.equal(intact, count, 'each body byte for byte, in request order')
  t.equal(origin.requests.length, count, 'each request reached the origin once')
})
