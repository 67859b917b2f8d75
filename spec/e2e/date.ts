/**
 * Date (RFC 9110 §6.6.1): rp4's own answers say when they were made (it is their origin server,
 * and has a clock); a backend's response passes as the backend sent it, with or without one; a
 * stored response keeps its own Date, or the time it was received when it came without.
 */
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { exchange } from '../helpers/client.js'
import { checkDate } from '../helpers/dates.js'
import { header, headerCount, type Message } from '../helpers/framing.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { startProxy, unusedPort } from '../helpers/proxy.js'

const BACKEND_DATE = 'Sun, 06 Nov 1994 08:49:37 GMT'

function root (t: Test): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rp4-date-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'a.txt'), 'hello, date\n')
  const mtime = new Date('2024-05-01T12:00:00Z')
  utimesSync(path.join(dir, 'a.txt'), mtime, mtime)
  return dir
}

async function one (port: number, request: string): Promise<Message> {
  const res = await exchange(port, request, { responses: 1 })
  const message = res.responses[0]
  if (message === undefined) throw new Error(`no response to ${JSON.stringify(request)}`)
  return message
}

/** Exactly one Date, a current IMF-fixdate. */
function dated (t: Test, message: Message, what: string): void {
  t.equal(headerCount(message, 'date'), 1, `${what}: one Date`)
  t.doesNotThrow(() => checkDate(header(message, 'date') ?? ''), `${what}: an IMF-fixdate of now (${header(message, 'date')})`)
}

const get = (target: string, more = ''): string => `GET ${target} HTTP/1.1\r\nHost: h\r\n${more}\r\n`

t.test('files: 200, HEAD, 304, 206, 416 and 404 each carry a Date', async t => {
  const { port } = await startProxy(t, { static: root(t) })
  const full = await one(port, get('/a.txt'))
  t.equal(full.head.line[1], '200')
  dated(t, full, '200')
  dated(t, await one(port, 'HEAD /a.txt HTTP/1.1\r\nHost: h\r\n\r\n'), 'HEAD')
  const etag = header(full, 'etag')!
  const notModified = await one(port, get('/a.txt', `If-None-Match: ${etag}\r\n`))
  t.equal(notModified.head.line[1], '304')
  dated(t, notModified, '304 (RFC 9110 §15.4.5: sent where the 200 would have it)')
  const partial = await one(port, get('/a.txt', 'Range: bytes=0-4\r\n'))
  t.equal(partial.head.line[1], '206')
  dated(t, partial, '206')
  const unsatisfiable = await one(port, get('/a.txt', 'Range: bytes=500-\r\n'))
  t.equal(unsatisfiable.head.line[1], '416')
  dated(t, unsatisfiable, '416')
  const missing = await one(port, get('/nothing-here'))
  t.equal(missing.head.line[1], '404')
  dated(t, missing, '404')
})

t.test('a file answered again and again: its kept head takes the new second\'s Date', async t => {
  const { port } = await startProxy(t, { static: root(t) })
  const first = header(await one(port, get('/a.txt')), 'date')
  // the wall clock moves on within a second; bounded by count and by time
  let last = first
  const until = Date.now() + 3000
  for (let i = 0; i < 2000 && last === first && Date.now() < until; i++) last = header(await one(port, get('/a.txt')), 'date')
  t.not(last, first, `the Date moved on (${first} → ${last})`)
  t.doesNotThrow(() => checkDate(last ?? '', 2000), 'and says now')
})

t.test('rp4\'s own pages: 400, 404 without a route, a route\'s answer and redirect, 502', async t => {
  const down = await unusedPort()
  const { port } = await startProxy(t, {
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [
      { match: { pathExact: '/healthz' }, respond: { status: 200, body: 'ok\n' } },
      { match: { path: '/old' }, redirect: { to: '/new', status: 301 } },
      { match: { path: '/app' }, proxy: 'down' },
    ],
    upstreams: { down: { targets: [`127.0.0.1:${down}`] } },
  })
  dated(t, await one(port, 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'), '400')
  dated(t, await one(port, get('/nowhere')), '404, no route')
  dated(t, await one(port, get('/healthz')), 'respond 200')
  dated(t, await one(port, get('/old')), 'redirect 301')
  const bad = await one(port, get('/app'))
  t.equal(bad.head.line[1], '502')
  dated(t, bad, '502')
})

t.test('a backend\'s response passes as sent: none added where it has none, its own kept where it has one', async t => {
  const origin = await startOrigin(t, req => req.head.line[1] === '/dated' ? ok('d', [`Date: ${BACKEND_DATE}`]) : ok('u'))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const undated = await one(port, get('/undated'))
  // Via is rp4's own hop (RFC 9110 §7.6.3), not a Date
  t.equal(undated.raw.toString('latin1'), 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nVia: 1.1 rp4\r\n\r\nu', 'exact bytes: no Date of rp4\'s')
  const dated = await one(port, get('/dated'))
  t.equal(headerCount(dated, 'date'), 1)
  t.equal(header(dated, 'date'), BACKEND_DATE, 'the backend\'s own, untouched')
})

t.test('the cache: a response stored without Date gets the time it came, the same on every hit; one with a Date keeps it', async t => {
  const origin = await startOrigin(t, req => req.head.line[1] === '/dated'
    ? ok('d', ['Cache-Control: max-age=600', `Date: ${new Date().toUTCString()}`])
    : ok('u', ['Cache-Control: max-age=600']))
  const { port } = await startProxy(t, { targets: [origin.target], cache: { size: '1m' } })
  const before = Math.floor(Date.now() / 1000) * 1000
  const miss = await one(port, get('/undated'))
  t.equal(header(miss, 'date'), undefined, 'the miss is the backend\'s response: no Date added')
  const after = Date.now()
  // the wall clock's next second (no event tells it): a hit must still say the second it was received in
  await new Promise(resolve => setTimeout(resolve, 1000 - (after % 1000) + 20))
  const hit = await one(port, get('/undated'))
  t.match(header(hit, 'cache-status') ?? '', /hit/)
  t.equal(headerCount(hit, 'date'), 1, 'hit: one Date')
  const stamped = Date.parse(header(hit, 'date') ?? '')
  t.ok(stamped >= before && stamped <= after, `the time the response was received (${header(hit, 'date')}), not the time of the hit`)
  const again = await one(port, get('/undated'))
  t.equal(header(again, 'date'), header(hit, 'date'), 'every hit tells the same time')
  const originDate = header(await one(port, get('/dated')), 'date')
  const storedHit = await one(port, get('/dated'))
  t.match(header(storedHit, 'cache-status') ?? '', /hit/)
  t.equal(headerCount(storedHit, 'date'), 1)
  t.equal(header(storedHit, 'date'), originDate, 'the backend\'s Date, stored')
})
