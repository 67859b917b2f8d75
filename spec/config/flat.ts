/**
 * The flat form as it always was, now through the schema: addresses, defaults, each bad option
 * named, the defaults that never refuse ordinary traffic, and the open-file limit behind the
 * connection cap.
 */
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseHostPort } from '../../lib/config/address.js'
import { buildModel } from '../../lib/config/build.js'
import { MAX_CONNECTIONS, OPEN_FILES, connectionsAllowedBy, readOpenFileLimit } from '../../lib/config/open-files.js'

t.test('addresses', async t => {
  const listen = { hostRequired: false, portZero: true }
  const target = { hostRequired: true, portZero: false }
  t.same(parseHostPort(':8080', listen), { host: '', port: 8080 })
  t.same(parseHostPort('8080', listen), { host: '', port: 8080 })
  t.same(parseHostPort('127.0.0.1:0', listen), { host: '127.0.0.1', port: 0 })
  t.same(parseHostPort('[::1]:443', target), { host: '::1', port: 443 })
  t.same(parseHostPort('backend.internal:80', target), { host: 'backend.internal', port: 80 })
  t.match(parseHostPort('::1:80', target), /brackets/)
  t.match(parseHostPort('[::1]80', target), /IPv6/)
  t.match(parseHostPort('[nope]:80', target), /not an IPv6 address/)
  t.match(parseHostPort('host:99999', target), /out of range/)
  t.match(parseHostPort('host:0', target), /out of range/)
  t.match(parseHostPort(':80', target), /no host/)
  t.match(parseHostPort('bad_host!:80', target), /not a valid host/)
  t.match(parseHostPort('10.0.0.1:http', target), /not a port number/)
})

t.test('the flat form: defaults, frozen', async t => {
  const model = buildModel({ listen: ':0', targets: ['127.0.0.1:1'] })
  t.equal(model.http.via, '1.1 rp4')
  t.equal(model.upstreams.get('default')?.pool.pipelining, 1)
  t.equal(model.upstreams.get('default')?.targets[0].authority, '127.0.0.1:1')
  t.ok(Object.isFrozen(model) && Object.isFrozen(model.http.timeouts) && Object.isFrozen(model.listeners[0]))
})

t.test('the flat form: each bad option is named', async t => {
  const bad: Array<[unknown, RegExp]> = [
    [{ listen: ':0', targets: [] }, /targets/],
    [{ listen: 'x:y', targets: ['a:1'] }, /listen/],
    [{ listen: ':0', targets: ['a:1', 'b'] }, /targets\[1\]/],
    [{ listen: ':0', targets: ['a:1'], timeouts: { connect: -1 } }, /timeouts\.connect/],
    [{ listen: ':0', targets: ['a:1'], timeouts: { conect: 5 } }, /timeouts\.conect: unknown key/],
    [{ listen: ':0', targets: ['a:1'], upstream: { pipelining: 0 } }, /upstream\.pipelining/],
    [{ listen: ':0', targets: ['a:1'], maxHeaderSize: 10 }, /maxHeaderSize/],
    [{ listen: ':0', targets: ['a:1'], via: 'has space' }, /via/],
    [{ listen: ':0', targets: ['a:1'], bogus: 1 }, /bogus: unknown key/],
    [{ listen: ':0', targets: ['a:1'], ownErrorPages: false }, /ownErrorPages: now interceptErrors, off by default/],
    [{ listen: ':0', targets: ['a:1'], interceptErrors: 'yes' }, /interceptErrors: must be true or false/],
    [{ listen: ':0', targets: ['a:1'], allowUnderscoresInHeaders: 1 }, /allowUnderscoresInHeaders: must be true or false/],
    [{ listen: ':0', targets: ['a:1'], limits: { maxConnectionsPerIp: -1 } }, /limits\.maxConnectionsPerIp/],
    [{ listen: ':0', targets: ['a:1'], tcpFallback: [] }, /tcpFallback/],
    [{ listen: ':0', targets: ['a:1'], tcpFallback: true }, /tcpFallback/],
    [{ listen: ':0', targets: ['a:1'], tcpFallback: ['a:1', 'nope'] }, /tcpFallback\[1\]/],
  ]
  for (const [options, message] of bad) {
    t.throws(() => buildModel(options), { name: 'ConfigError', message }, String(message))
  }
})

t.test('the flat form: defaults that never refuse ordinary traffic', async t => {
  const model = buildModel({ listen: ':0', targets: ['127.0.0.1:1'] })
  t.equal(model.routes[0].interceptErrors, false, 'a backend\'s 502/503/504 passes')
  t.equal(model.http.underscoresInHeaders, false)
  t.equal(model.limits.maxConnectionsPerIp, 0, 'no cap per client IP')
  t.equal(model.limits.openFiles, OPEN_FILES)
  t.equal(model.limits.maxConnections, MAX_CONNECTIONS, 'the global cap: what the open files allow')
  t.equal(model.limits.requested, 0)
  t.equal(model.listeners[0].tcpFallback, null, 'no TCP fallback unless one is given (not the targets)')
  t.equal(buildModel({ listen: ':0', targets: ['127.0.0.1:1'], tcpFallback: false }).listeners[0].tcpFallback, null, 'false: none, as before')
  const given = buildModel({ listen: ':0', targets: ['127.0.0.1:1'], tcpFallback: ['127.0.0.1:22', '[::1]:23'] })
  t.same(given.upstreams.get(given.listeners[0].tcpFallback!)?.targets.map(target => target.authority), ['127.0.0.1:22', '[::1]:23'])
})

t.test('the open-file limit: read from /proc/self/limits, two descriptors per connection', async t => {
  t.equal(connectionsAllowedBy(20_000), 9968)
  t.equal(connectionsAllowedBy(1024), 480)
  t.equal(connectionsAllowedBy(10), 1, 'never below one')
  t.equal(MAX_CONNECTIONS, connectionsAllowedBy(OPEN_FILES ?? 10_240))
  const dir = mkdtempSync(path.join(tmpdir(), 'rp4-limits-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'limits')
  const table = (soft: string): string => 'Limit                     Soft Limit           Hard Limit           Units     \n' +
    'Max processes             63704                63704                processes \n' +
    `Max open files            ${soft.padEnd(21)}524288               files     \n`
  writeFileSync(file, table('1024'))
  t.equal(readOpenFileLimit(file), 1024, 'the soft limit')
  writeFileSync(file, table('unlimited'))
  t.equal(readOpenFileLimit(file), 1_048_576, 'unlimited: what Linux lets a process open by default')
  writeFileSync(file, 'nothing useful\n')
  t.equal(readOpenFileLimit(file), null)
  t.equal(readOpenFileLimit(path.join(dir, 'missing')), null, 'not Linux: unknown')
  if (process.platform === 'linux') t.type(readOpenFileLimit(), 'number', 'this process\'s own')
})

t.test('limits.maxConnections over what the open files allow is lowered to it, and says so', async t => {
  const base = { listen: ':0', targets: ['127.0.0.1:1'] }
  const fits = buildModel({ ...base, limits: { maxConnections: 2 } })
  t.equal(fits.limits.maxConnections, 2)
  t.equal(fits.limits.requested, 0)
  const over = buildModel({ ...base, limits: { maxConnections: MAX_CONNECTIONS + 1 } })
  if (OPEN_FILES === null) {
    t.equal(over.limits.maxConnections, MAX_CONNECTIONS + 1, 'a limit that cannot be read lowers nothing')
    return
  }
  t.equal(over.limits.maxConnections, MAX_CONNECTIONS)
  t.equal(over.limits.requested, MAX_CONNECTIONS + 1)
  t.ok(Object.isFrozen(over.limits))
})
