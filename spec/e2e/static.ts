/**
 * Static files end to end: headers, conditional requests, ranges (one, several, If-Range),
 * precompressed siblings, index files and listings, the fallback to a backend, and every way a
 * request might try to leave the root.
 */
import { createHash, randomBytes } from 'node:crypto'
import { execFile, execFileSync } from 'node:child_process'
import { closeSync, mkdirSync, mkdtempSync, openSync, read, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { brotliCompressSync, gzipSync } from 'node:zlib'
import t, { type Test } from 'tap'
import { RawClient, exchange } from '../helpers/client.js'
import { header, type Message } from '../helpers/framing.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'
import { poll } from '../helpers/wait.js'
import type { Filter } from '../../lib/index.js'
import { undated } from '../helpers/dates.js'

const INDEX = '<!doctype html><title>home</title>\n'
const APP_JS = 'console.log("app");\n'.repeat(50)
const BIG = randomBytes(3 << 20)
const DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz'
const MTIME = new Date('2024-05-01T12:00:00Z')

function tree (t: Test): { root: string, outside: string } {
  const base = mkdtempSync(path.join(os.tmpdir(), 'rp4-static-'))
  t.teardown(() => rmSync(base, { recursive: true, force: true }))
  const root = path.join(base, 'www')
  const outside = path.join(base, 'secret.txt')
  writeFileSync(outside, 'SECRET OUTSIDE THE ROOT')
  mkdirSync(root)
  const files: Record<string, string | Buffer> = {
    'index.html': INDEX,
    'app.js': APP_JS,
    'app.js.br': brotliCompressSync(APP_JS),
    'app.js.gz': gzipSync(APP_JS),
    'digits.txt': DIGITS,
    'big.bin': BIG,
    'empty.txt': '',
    'data.json': '{"a":1}',
    'space name.txt': 'spaced',
    '.env': 'PASSWORD=hunter2',
    'sub/index.html': 'sub index',
    'plain/a.txt': 'a',
    'plain/.hidden': 'h',
    '.well-known/security.txt': 'from the file system',
  }
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(root, name)
    mkdirSync(path.dirname(file), { recursive: true })
    writeFileSync(file, content)
    utimesSync(file, MTIME, MTIME)
  }
  symlinkSync(outside, path.join(root, 'link-out'))
  symlinkSync(path.join(root, 'digits.txt'), path.join(root, 'link-in'))
  symlinkSync(base, path.join(root, 'dir-out'))
  return { root, outside }
}

function get (target: string, ...extra: string[]): string {
  return [`GET ${target} HTTP/1.1`, 'Host: h', ...extra].map(x => x + '\r\n').join('') + '\r\n'
}

async function one (port: number, request: string): Promise<Message> {
  return (await exchange(port, request, { responses: 1, ms: 20_000 })).responses[0]
}

t.test('a file: its type, validators, caching headers, exact bytes; HEAD; an empty file', async t => {
  const { root } = tree(t)
  const { port } = await startProxy(t, { static: root })
  const res = await exchange(port, get('/index.html'), { responses: 1 })
  const etag = header(res.responses[0], 'etag')!
  t.match(etag, /^"[0-9a-f]+-[0-9a-f]+"$/, 'a strong ETag')
  const date = res.text.match(/\r\nDate: ([^\r]+)\r\n/)?.[1]
  t.equal(res.text, 'HTTP/1.1 200 OK\r\n' +
    `ETag: ${etag}\r\nLast-Modified: Wed, 01 May 2024 12:00:00 GMT\r\nCache-Control: public, max-age=0, must-revalidate\r\nAccept-Ranges: bytes\r\n` +
    `Content-Type: text/html; charset=utf-8\r\nContent-Length: ${INDEX.length}\r\n${date === undefined ? '' : `Date: ${date}\r\n`}\r\n${INDEX}`, 'exact bytes')
  t.equal(header(await one(port, get('/app.js', 'Accept-Encoding: identity')), 'content-type'), 'text/javascript; charset=utf-8')
  t.equal(header(await one(port, get('/data.json')), 'content-type'), 'application/json; charset=utf-8')
  t.equal(header(await one(port, get('/big.bin')), 'content-type'), 'application/octet-stream')
  const head = await one(port, `HEAD /digits.txt HTTP/1.1\r\nHost: h\r\n\r\n`)
  t.equal(head.head.line[1], '200')
  t.equal(header(head, 'content-length'), String(DIGITS.length), 'HEAD: the length of the body it would have')
  t.equal(head.bodyLength, 0)
  const empty = await one(port, get('/empty.txt'))
  t.equal(header(empty, 'content-length'), '0')
  t.equal((await one(port, get('/space%20name.txt'))).body.toString(), 'spaced', 'percent-encoded names')
  const root1 = await one(port, get('/'))
  t.equal(root1.body.toString(), INDEX, 'the index file for /')
})

t.test('conditional requests: 304 and 412 by ETag and date', async t => {
  const { root } = tree(t)
  const { port } = await startProxy(t, { static: root })
  const etag = header(await one(port, get('/digits.txt')), 'etag')!
  const status = async (...extra: string[]): Promise<string> => (await one(port, get('/digits.txt', ...extra))).head.line[1]
  const nm = await one(port, get('/digits.txt', `If-None-Match: ${etag}`))
  t.equal(nm.head.line[1], '304')
  t.equal(nm.bodyLength, 0)
  t.equal(header(nm, 'etag'), etag, '304 carries the ETag')
  t.equal(header(nm, 'content-length'), undefined, '304: no Content-Length invented')
  t.equal(await status(`If-None-Match: W/${etag}`), '304', 'If-None-Match compares weakly')
  t.equal(await status(`If-None-Match: "other", ${etag}`), '304', 'one of a list')
  t.equal(await status('If-None-Match: *'), '304')
  t.equal(await status('If-None-Match: "other"'), '200')
  t.equal(await status('If-Modified-Since: Wed, 01 May 2024 12:00:00 GMT'), '304')
  t.equal(await status('If-Modified-Since: Wed, 01 May 2024 11:59:59 GMT'), '200', 'modified since')
  t.equal(await status('If-Modified-Since: not a date'), '200', 'an invalid date is ignored')
  t.equal(await status('If-None-Match: "other"', 'If-Modified-Since: Wed, 01 May 2024 12:00:00 GMT'), '200', 'If-None-Match wins over If-Modified-Since')
  t.equal(await status('If-Match: "other"'), '412')
  t.equal(await status(`If-Match: ${etag}`), '200')
  t.equal(await status(`If-Match: W/${etag}`), '412', 'If-Match compares strongly')
  t.equal(await status('If-Unmodified-Since: Wed, 01 May 2024 11:00:00 GMT'), '412')
  t.equal(await status('If-Unmodified-Since: Wed, 01 May 2024 12:00:00 GMT'), '200')
})

// every form of a range, from a file kept in memory and from one read for each request
for (const memoryFileSize of ['64k', 0]) t.test(`ranges: one, a suffix, open-ended, several (multipart), merged, unsatisfiable, If-Range (memoryFileSize ${memoryFileSize})`, async t => {
  const { root } = tree(t)
  const { port } = await startProxy(t, { static: { root, memoryFileSize } })
  const range = async (value: string, ...extra: string[]): Promise<Message> => await one(port, get('/digits.txt', `Range: ${value}`, ...extra))
  const a = await range('bytes=0-9')
  t.equal(a.head.line[1], '206')
  t.equal(header(a, 'content-range'), 'bytes 0-9/36')
  t.equal(header(a, 'content-length'), '10')
  t.equal(a.body.toString(), '0123456789')
  t.equal((await range('bytes=-6')).body.toString(), 'uvwxyz', 'a suffix')
  t.equal((await range('bytes=30-')).body.toString(), 'uvwxyz', 'open-ended')
  t.equal((await range('bytes=30-1000')).body.toString(), 'uvwxyz', 'an end past the file is cut to it')
  t.equal((await range('bytes=0-5, 3-9')).body.toString(), '0123456789', 'overlapping ranges merged into one')
  const multi = await range('bytes=0-1, 10-11')
  t.equal(multi.head.line[1], '206')
  const type = header(multi, 'content-type')!
  const boundary = /^multipart\/byteranges; boundary=(.+)$/.exec(type)?.[1]
  t.ok(boundary !== undefined, type)
  t.equal(multi.body.toString(), `--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-1/36\r\n\r\n01\r\n` +
    `--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 10-11/36\r\n\r\nab\r\n--${boundary}--\r\n`, 'multipart/byteranges, exact')
  t.equal(header(multi, 'content-length'), String(multi.bodyLength), 'its length computed ahead')
  const none = await range('bytes=100-200')
  t.equal(none.head.line[1], '416')
  t.equal(header(none, 'content-range'), 'bytes */36')
  t.equal((await range('items=0-1')).head.line[1], '200', 'a unit it does not know: the whole file')
  t.equal((await range('bytes=5-2')).head.line[1], '200', 'an invalid range: ignored')
  const etag = header(a, 'etag')!
  t.equal((await range('bytes=0-1', `If-Range: ${etag}`)).head.line[1], '206', 'If-Range with the current ETag')
  t.equal((await range('bytes=0-1', 'If-Range: "old"')).head.line[1], '200', 'If-Range with an old ETag: the whole file')
  t.equal((await range('bytes=0-1', `If-Range: W/${etag}`)).head.line[1], '200', 'a weak tag never satisfies If-Range')
  t.equal((await range('bytes=0-1', 'If-Range: Wed, 01 May 2024 12:00:00 GMT')).head.line[1], '206', 'If-Range with the date')
  t.equal((await range('bytes=0-1', 'If-Range: Wed, 01 May 2024 11:00:00 GMT')).head.line[1], '200')
  const many = Array.from({ length: 40 }, (_, i) => `${i * 2}-${i * 2}`).join(',')
  t.equal((await one(port, get('/big.bin', `Range: bytes=${many}`))).head.line[1], '200', 'too many ranges: the whole file')
  const curl = await new Promise<string>((resolve, reject) => {
    execFile('curl', ['-sS', '--max-time', '20', '-r', '10-15', `http://127.0.0.1:${port}/digits.txt`], (err, out) => err !== null ? reject(err) : resolve(out))
  })
  t.equal(curl, 'abcdef', 'curl -r')
})

t.test('precompressed siblings, by Accept-Encoding', async t => {
  const { root } = tree(t)
  const { port } = await startProxy(t, { static: root })
  const br = await one(port, get('/app.js', 'Accept-Encoding: gzip, br'))
  t.equal(header(br, 'content-encoding'), 'br')
  t.equal(header(br, 'vary'), 'Accept-Encoding')
  t.equal(header(br, 'content-type'), 'text/javascript; charset=utf-8', 'the type of the original')
  t.same(br.body, brotliCompressSync(APP_JS))
  const gz = await one(port, get('/app.js', 'Accept-Encoding: gzip'))
  t.equal(header(gz, 'content-encoding'), 'gzip')
  t.same(gz.body, gzipSync(APP_JS))
  t.not(header(gz, 'etag'), header(br, 'etag'), 'each variant its own ETag')
  const plain = await one(port, get('/app.js'))
  t.equal(header(plain, 'content-encoding'), undefined)
  t.equal(header(plain, 'vary'), 'Accept-Encoding')
  t.equal(plain.body.toString(), APP_JS)
  const res = await fetch(`http://127.0.0.1:${port}/app.js`, { headers: { 'Accept-Encoding': 'br' } })
  t.equal(await res.text(), APP_JS, 'fetch decodes it')
})

t.test('directories: the slash redirect, index files, listing off by default and on when asked', async t => {
  const { root } = tree(t)
  const { port } = await startProxy(t, { static: root })
  const redirect = await one(port, get('/sub?x=1'))
  t.equal(redirect.head.line[1], '301')
  t.equal(header(redirect, 'location'), '/sub/?x=1')
  t.equal((await one(port, get('/sub/'))).body.toString(), 'sub index')
  t.equal((await one(port, get('/plain/'))).head.line[1], '404', 'no index, no listing')
  const listed = await startProxy(t, { static: { root, listing: true } })
  const listing = await one(listed.port, get('/plain/'))
  t.equal(listing.head.line[1], '200')
  t.match(listing.body.toString(), /<a href="a.txt">a.txt<\/a>/)
  t.notMatch(listing.body.toString(), /hidden/, 'hidden names left out')
})

t.test('safe by construction: traversal in every encoding, NUL, backslashes, hidden files, links out of the root', async t => {
  const { root } = tree(t)
  const { port } = await startProxy(t, { static: root })
  const forbidden = [
    '/../secret.txt', '/sub/../../secret.txt', '/%2e%2e/secret.txt', '/%2E%2E/secret.txt', '/.%2e/secret.txt',
    '/sub%2f..%2f..%2fsecret.txt', '/..%2fsecret.txt', '/..%5csecret.txt', '/sub/..%5c..%5csecret.txt', '/%5c..%5csecret.txt',
    '/index.html%00.txt', '/%00', '/sub/./index.html', '/a%0ab',
  ]
  for (const target of forbidden) {
    const res = await one(port, get(target))
    // an encoded NUL is refused before any route sees the request (http/validate.ts): 400
    const expected = target.includes('%00') ? '400' : '403'
    t.equal(res.head.line[1], expected, `${target}: ${expected}`)
    t.notMatch(res.body.toString(), /SECRET|www|rp4-static|\//, `${target}: no detail`)
  }
  t.equal((await one(port, get('/%E0%A4%A'))).head.line[1], '400', 'malformed percent-encoding')
  for (const target of ['/.env', '/%2eenv', '/plain/.hidden', '/.well-known/security.txt', '/link-out', '/dir-out/secret.txt']) {
    const res = await one(port, get(target))
    t.equal(res.head.line[1], '404', `${target}: 404`)
    t.notMatch(res.body.toString(), /SECRET|PASSWORD|from the file/, `${target}: nothing of it`)
  }
  t.equal((await one(port, get('/link-in'))).body.toString(), DIGITS, 'a link inside the root is followed')
  const hidden = await startProxy(t, { static: { root, hidden: true, followSymlinks: true } })
  t.equal((await one(hidden.port, get('/.env'))).body.toString(), 'PASSWORD=hunter2', 'hidden: true serves them')
  t.equal((await one(hidden.port, get('/link-out'))).body.toString(), 'SECRET OUTSIDE THE ROOT', 'followSymlinks: true follows links out')
  t.equal((await one(hidden.port, get('/../secret.txt'))).head.line[1], '403', 'dot segments are refused whatever the settings')
})

t.test('the fallback: what is not a file goes to the backend; without one, 404 and 405', async t => {
  const { root } = tree(t)
  const origin = await startOrigin(t, req => ok(`backend ${req.method} ${req.url}`))
  const { port } = await startProxy(t, { static: root, targets: [origin.target] })
  t.equal((await one(port, get('/digits.txt'))).body.toString(), DIGITS, 'a file: from the directory')
  t.equal((await one(port, get('/api/users'))).body.toString(), 'backend GET /api/users', 'missing: the backend')
  t.equal((await one(port, get('/.well-known/acme-challenge/x'))).body.toString(), 'backend GET /.well-known/acme-challenge/x', 'hidden: the backend decides')
  t.equal((await one(port, get('/plain/'))).body.toString(), 'backend GET /plain/', 'a directory without index')
  t.equal((await one(port, 'POST /digits.txt HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi')).body.toString(), 'backend POST /digits.txt', 'other methods: the backend')
  t.equal(origin.requests.length, 4)
  const alone = await startProxy(t, { static: root })
  t.equal((await one(alone.port, get('/api/users'))).head.line[1], '404')
  const post = await one(alone.port, 'POST /digits.txt HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi')
  t.equal(post.head.line[1], '405')
  t.equal(header(post, 'allow'), 'GET, HEAD')
})

t.test('large files streamed, descriptors bounded: many requests at once with maxOpenFiles 1', async t => {
  const { root } = tree(t)
  const { port } = await startProxy(t, { static: { root, maxOpenFiles: 1 } })
  const want = createHash('sha256').update(BIG).digest('hex')
  const names = ['/big.bin', '/digits.txt', '/index.html', '/big.bin', '/data.json', '/app.js', '/big.bin', '/sub/', '/empty.txt', '/digits.txt']
  const results = await Promise.all(names.map(async name => await one(port, get(name, 'Accept-Encoding: identity'))))
  for (let i = 0; i < names.length; i++) {
    t.equal(results[i].head.line[1], '200', `${names[i]}: 200`)
    if (names[i] === '/big.bin') t.equal(results[i].sha256, want, 'every byte of 3 MiB')
  }
  const res = await fetch(`http://127.0.0.1:${port}/big.bin`)
  t.ok(Buffer.from(await res.arrayBuffer()).equals(BIG), 'fetch: the same bytes')
})

t.test('what rp4 learned of a path is used for revalidate ms: a changed, rewritten or removed file is seen after it, never before the file system is asked', async t => {
  const { root } = tree(t)
  const file = path.join(root, 'digits.txt')
  const { port } = await startProxy(t, { static: { root, revalidate: '1s' } })
  const started = performance.now()
  const first = await one(port, get('/digits.txt'))
  t.equal(first.body.toString(), DIGITS)
  const later = new Date('2025-01-02T03:04:05Z')
  writeFileSync(file, 'CHANGED')
  utimesSync(file, later, later)
  const within = await one(port, get('/digits.txt'))
  // the window is long next to two requests on loopback; on a machine so slow that it passed, the new file is right too
  if (performance.now() - started < 900) {
    t.equal(within.body.toString(), DIGITS, 'within the window: what was learned, whole and consistent')
    t.equal(header(within, 'etag'), header(first, 'etag'), 'with its own validators')
  }
  let seen: Message | null = null
  for (let i = 0; i < 200 && seen === null; i++) {
    const res = await one(port, get('/digits.txt'))
    if (res.body.toString() === 'CHANGED') seen = res
    else await new Promise(resolve => setTimeout(resolve, 25))
  }
  t.ok(seen !== null, 'the change is seen')
  t.ok(performance.now() - started >= 1000, 'not before the window ends')
  t.equal(header(seen!, 'content-length'), '7')
  t.equal(header(seen!, 'last-modified'), 'Thu, 02 Jan 2025 03:04:05 GMT')
  t.not(header(seen!, 'etag'), header(first, 'etag'), 'a new ETag')
  t.equal((await one(port, get('/digits.txt', `If-None-Match: ${header(first, 'etag')!}`))).head.line[1], '200', 'the old ETag no longer matches')

  // the same size and inode, another date: the bytes kept are not reused
  const sameSize = 'ZYXWVUT'
  writeFileSync(file, sameSize)
  utimesSync(file, MTIME, MTIME)
  unlinkSync(path.join(root, 'index.html'))
  let rewritten = false
  let removed = false
  for (let i = 0; i < 200 && !(rewritten && removed); i++) {
    rewritten ||= (await one(port, get('/digits.txt'))).body.toString() === sameSize
    removed ||= (await one(port, get('/index.html'))).head.line[1] === '404'
    if (!(rewritten && removed)) await new Promise(resolve => setTimeout(resolve, 25))
  }
  t.ok(rewritten, 'a file rewritten at the same size is seen')
  t.ok(removed, 'a removed file is a 404')
  t.equal((await one(port, get('/'))).head.line[1], '404', 'and so is the directory it was the index of')

  // a path that named nothing is remembered for the window too, and a file created there is seen after it
  const missingAt = performance.now()
  t.equal((await one(port, get('/new.txt'))).head.line[1], '404')
  writeFileSync(path.join(root, 'new.txt'), 'NEW')
  let created: Message | null = null
  for (let i = 0; i < 200 && created === null; i++) {
    const res = await one(port, get('/new.txt'))
    if (res.head.line[1] === '200') created = res
    else await new Promise(resolve => setTimeout(resolve, 25))
  }
  t.equal(created?.body.toString(), 'NEW', 'a file created where nothing was is seen')
  t.ok(performance.now() - missingAt >= 1000, 'not before the window ends')
})

/**
 * The file system's answers held back: every thread of libuv's pool (this process's, the
 * proxy's too) blocked reading an empty FIFO in `dir` until `release`.
 */
function holdFileSystem (dir: string): { release: () => Promise<void> } {
  const fifo = path.join(dir, `gate-${Math.random().toString(36).slice(2)}`)
  execFileSync('mkfifo', [fifo])
  const gate = openSync(fifo, 'r+')
  const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4)
  const held = Array.from({ length: threads }, async () => await new Promise(resolve => read(gate, Buffer.alloc(1), 0, 1, null, resolve)))
  return {
    async release (): Promise<void> {
      writeSync(gate, Buffer.alloc(threads))
      await Promise.all(held)
      closeSync(gate)
    },
  }
}

t.test('past the window, one check per path: the requests that come while it runs are answered from what was known', async t => {
  const { root } = tree(t)
  const file = path.join(root, 'digits.txt')
  const { port } = await startProxy(t, { static: { root, revalidate: '50ms' } })
  t.equal((await one(port, get('/digits.txt'))).body.toString(), DIGITS)
  writeFileSync(file, 'CHANGED')
  const later = new Date('2025-01-02T03:04:05Z')
  utimesSync(file, later, later)
  await new Promise(resolve => setTimeout(resolve, 100))
  const clients = await Promise.all(Array.from({ length: 10 }, async () => await RawClient.connect(port)))
  const gate = holdFileSystem(path.dirname(root))
  let checking: RawClient[] = []
  try {
    for (const client of clients) await client.write(get('/digits.txt'))
    await poll(() => clients.filter(c => c.responses.length === 1).length === 9, 'nine answers while the check is held')
    t.same(clients.flatMap(c => c.responses.map(r => r.body.toString())), Array<string>(9).fill(DIGITS), 'nine answered from what was known, whole')
    checking = clients.filter(c => c.responses.length === 0)
  } finally {
    await gate.release()
  }
  t.equal(checking.length, 1, 'one request waited for the check')
  await checking[0].waitResponses(1)
  t.equal(checking[0].responses[0].body.toString(), 'CHANGED', 'and got the new file')
  t.equal((await one(port, get('/digits.txt'))).body.toString(), 'CHANGED', 'as does every request after it')
  for (const client of clients) client.destroy()
})

t.test('revalidate 0: requests that come while a check runs wait for checks of their own', async t => {
  const { root } = tree(t)
  const { port, events } = await startProxy(t, { static: { root, revalidate: 0 } })
  t.equal((await one(port, get('/data.json'))).body.toString(), '{"a":1}')
  writeFileSync(path.join(root, 'data.json'), '{"a":2}')
  const clients = await Promise.all(Array.from({ length: 5 }, async () => await RawClient.connect(port)))
  const gate = holdFileSystem(path.dirname(root))
  try {
    for (const client of clients) await client.write(get('/data.json'))
    // all five taken in while the file system cannot answer: none may be answered without it
    await events.until(() => events.requests.length === 6, 5000, 'the five requests taken in')
  } finally {
    await gate.release()
  }
  for (const client of clients) await client.waitResponses(1)
  t.same(clients.map(c => c.responses[0].body.toString()), Array<string>(5).fill('{"a":2}'), 'each answered after a check of its own')
  for (const client of clients) client.destroy()
})

t.test('revalidate 0: the file system is asked on every request', async t => {
  const { root } = tree(t)
  const file = path.join(root, 'data.json')
  const { port } = await startProxy(t, { static: { root, revalidate: 0 } })
  t.equal((await one(port, get('/data.json'))).body.toString(), '{"a":1}')
  for (let i = 0; i < 5; i++) {
    const text = `{"a":${i + 10}}`
    writeFileSync(file, text)
    const stamp = new Date(Date.UTC(2025, 0, 1, 0, 0, i))
    utimesSync(file, stamp, stamp)
    const res = await one(port, get('/data.json'))
    t.equal(res.body.toString(), text, `change ${i}: seen at once`)
    t.equal(header(res, 'last-modified'), stamp.toUTCString())
  }
  unlinkSync(file)
  t.equal((await one(port, get('/data.json'))).head.line[1], '404', 'removed: seen at once')
  writeFileSync(file, 'back')
  t.equal((await one(port, get('/data.json'))).body.toString(), 'back', 'created again: seen at once')
})

t.test('a route of files in front of a backend: a path that named nothing goes to the backend, and keeps going there, until a file appears', async t => {
  const { root } = tree(t)
  const origin = await startOrigin(t, req => ok(`backend ${req.url}`))
  const { port } = await startProxy(t, { static: { root, revalidate: '300ms', fallback: 'default' }, targets: [origin.target] })
  for (let i = 0; i < 5; i++) t.equal((await one(port, get('/api/x'))).body.toString(), 'backend /api/x', `request ${i}: the backend`)
  t.equal(origin.requests.length, 5, 'every one of them reached it')
  mkdirSync(path.join(root, 'api'))
  writeFileSync(path.join(root, 'api', 'x'), 'now a file')
  let served = false
  for (let i = 0; i < 200 && !served; i++) {
    served = (await one(port, get('/api/x'))).body.toString() === 'now a file'
    if (!served) await new Promise(resolve => setTimeout(resolve, 25))
  }
  t.ok(served, 'the file created there is served once the window ends')
})

t.test('the memory bound: many distinct small files, each served whole, with a bound smaller than them all', async t => {
  const { root } = tree(t)
  const files: Array<[string, Buffer]> = []
  for (let i = 0; i < 40; i++) {
    const content = Buffer.alloc(4096 + i, String.fromCharCode(97 + (i % 26)))
    writeFileSync(path.join(root, `f${i}.txt`), content)
    files.push([`/f${i}.txt`, content])
  }
  // 64 KiB holds a dozen of them at most: the others are forgotten and read again
  const { port } = await startProxy(t, { static: { root, memoryCache: '64k' } })
  for (let round = 0; round < 2; round++) {
    for (const [name, content] of files) {
      const res = await one(port, get(name))
      t.ok(res.body.equals(content), `${name} (round ${round}): every byte`)
    }
  }
})

t.test('a response filter on a file route: what it changes is sent, on every request, and a request it leaves alone gets the file\'s own head', async t => {
  const { root } = tree(t)
  const filter: Filter = {
    name: 'edit',
    onResponse (s, head) {
      if (s.request.headers.get('x-edit') === 'value') head.headers.set('cache-control', 'no-store')
      if (s.request.headers.get('x-edit') === 'drop') head.headers.delete('ETag')
      if (s.request.headers.get('x-edit') === 'raw') head.headers.raw.splice(0, 0, 'X-First', '1')
    },
  }
  const { port } = await startProxy(t, { static: root, filters: [filter] } as never)
  const plain = await one(port, get('/digits.txt'))
  const etag = header(plain, 'etag')!
  const fields = (cacheControl: string, withEtag = true, first = ''): string => 'HTTP/1.1 200 OK\r\n' + first +
    (withEtag ? `ETag: ${etag}\r\n` : '') + `Last-Modified: Wed, 01 May 2024 12:00:00 GMT\r\nCache-Control: ${cacheControl}\r\nAccept-Ranges: bytes\r\n` +
    `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${DIGITS.length}\r\n\r\n${DIGITS}`
  const own = fields('public, max-age=0, must-revalidate')
  // the same connection, each kind twice, alternating: every answer is exactly its own
  const kinds = ['', 'value', '', 'drop', 'raw', '', 'value', 'drop', 'raw', '']
  const pipelined = kinds.map(kind => kind === '' ? get('/digits.txt') : get('/digits.txt', `X-Edit: ${kind}`)).join('')
  const res = await exchange(port, pipelined, { responses: kinds.length })
  const expected = kinds.map(kind => kind === 'value' ? fields('no-store') : kind === 'drop' ? fields('public, max-age=0, must-revalidate', false)
    : kind === 'raw' ? fields('public, max-age=0, must-revalidate', true, 'X-First: 1\r\n') : own)
  t.equal(undated(res.text), expected.join(''), 'exact bytes, in order')
})
