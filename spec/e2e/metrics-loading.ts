/**
 * prom-client is loaded by the first metrics registry a process makes (the admin endpoint, or a
 * worker's): a proxy without them never holds it, and one with them serves its metrics as before.
 */
import { createRequire } from 'node:module'
import t from 'tap'
import { createProxy } from '../../lib/index.js'
import { exchange } from '../helpers/client.js'
import { ok, startOrigin } from '../helpers/origin.js'

const require = createRequire(import.meta.url)
const loaded = (): boolean => Object.keys(require.cache).some(file => file.includes('/prom-client/'))

t.test('no admin endpoint: prom-client is never loaded; the first admin endpoint loads it', async t => {
  const origin = await startOrigin(t, () => ok('plain'))
  const plain = createProxy({ listen: '127.0.0.1:0', targets: [origin.target] })
  const { port } = await plain.listen()
  t.teardown(() => plain.close())
  const res = await exchange(port, 'GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n', { responses: 1 })
  t.equal(res.responses[0]?.body.toString(), 'plain')
  t.equal(loaded(), false, 'not loaded by a proxy without metrics')

  const measured = createProxy({ listen: '127.0.0.1:0', targets: [origin.target], admin: { listen: 0 } })
  const served = await measured.listen()
  t.teardown(() => measured.close())
  t.equal(loaded(), true, 'loaded by the first registry')
  await exchange(served.port, 'GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n', { responses: 1 })
  const text = (await exchange(measured.adminAddress()!.port, 'GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', { responses: 1 })).responses[0]?.body.toString() ?? ''
  t.match(text, /rp4_requests_total\{[^}]*\} 1\n/, 'the request counted')
  t.match(text, /rp4_process_resident_memory_bytes/, 'prom-client\'s default metrics there')
})
