/**
 * The examples the README shows are run here: the filter example against a real origin, and the
 * README's copy of it must be the file itself.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { exchange } from './helpers/client.js'
import { header } from './helpers/framing.js'
import { ok, startOrigin } from './helpers/origin.js'
import { ROOT, checkBuilt } from './helpers/proxy.js'

t.test('examples/api-keys.ts: the key check, the header swap, the response header, the log line', async t => {
  if (!checkBuilt(t, 'dist/lib/index.js')) return
  const { start } = await import('../examples/api-keys.js')
  const origin = await startOrigin(t, req => ok(`team=${header(req, 'x-team') ?? '-'} key=${header(req, 'x-api-key') ?? '-'} ${req.url}`))
  const lines: string[] = []
  const log = console.log
  console.log = (line: string) => { lines.push(line) }
  t.teardown(() => { console.log = log })
  const proxy = await start(origin.target, '127.0.0.1:0')
  t.teardown(() => proxy.close())
  const port = proxy.address()!.port
  const res = await exchange(port,
    'GET /api/v1/invoices?open HTTP/1.1\r\nHost: h\r\nX-Api-Key: k-123\r\n\r\n' +
    'GET /api/v1/invoices HTTP/1.1\r\nHost: h\r\nX-Api-Key: wrong\r\n\r\n' +
    'GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n', { responses: 3 })
  t.equal(res.responses[0]?.body.toString(), 'team=billing key=- /v1/invoices?open', 'upstream: the team instead of the key, the prefix stripped')
  t.equal(header(res.responses[0]!, 'cache-control'), 'private')
  t.equal(res.responses[1]?.head.line[1], '401')
  t.equal(res.responses[1]?.body.toString(), '{"error":"a valid X-Api-Key is needed"}\n')
  t.equal(res.responses[2]?.body.toString(), 'ok\n')
  t.equal(origin.requests.length, 1, 'only the request with a valid key went upstream')
  t.same(lines, ['127.0.0.1 GET /v1/invoices?open 200 billing', '127.0.0.1 GET /v1/invoices 401 -'], 'one line per request of the route, as the filter logs it')
})

t.test('the README shows examples/api-keys.ts as it is', async t => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const file = readFileSync(path.join(ROOT, 'examples/api-keys.ts'), 'utf8')
  t.ok(readme.includes('```ts\n' + file + '```\n'), 'README.md holds the file in a ts block')
})
