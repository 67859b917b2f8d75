import t from 'tap'
import { parseHostPort } from '../../lib/config/address.js'
import { resolveConfig } from '../../lib/config/resolve.js'
import type { ProxyOptions } from '../../lib/config/options.js'

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

t.test('options: defaults, frozen', async t => {
  const config = resolveConfig({ listen: ':0', targets: ['127.0.0.1:1'] })
  t.equal(config.via, '1.1 rp4')
  t.equal(config.upstream.pipelining, 1)
  t.equal(config.targets[0].authority, '127.0.0.1:1')
  t.ok(Object.isFrozen(config) && Object.isFrozen(config.timeouts) && Object.isFrozen(config.targets[0]))
})

t.test('options: each bad one is named', async t => {
  const bad: Array<[unknown, RegExp]> = [
    [{ listen: ':0', targets: [] }, /targets/],
    [{ listen: 'x:y', targets: ['a:1'] }, /listen/],
    [{ listen: ':0', targets: ['a:1', 'b'] }, /targets\[1\]/],
    [{ listen: ':0', targets: ['a:1'], timeouts: { connect: -1 } }, /timeouts\.connect/],
    [{ listen: ':0', targets: ['a:1'], timeouts: { conect: 5 } }, /unknown option timeouts\.conect/],
    [{ listen: ':0', targets: ['a:1'], upstream: { pipelining: 0 } }, /upstream\.pipelining/],
    [{ listen: ':0', targets: ['a:1'], maxHeaderSize: 10 }, /maxHeaderSize/],
    [{ listen: ':0', targets: ['a:1'], via: 'has space' }, /via/],
    [{ listen: ':0', targets: ['a:1'], bogus: 1 }, /unknown option bogus/],
    [{ listen: ':0', targets: ['a:1'], tcpFallback: [] }, /tcpFallback must be a non-empty array/],
    [{ listen: ':0', targets: ['a:1'], tcpFallback: true }, /tcpFallback must be a non-empty array/],
    [{ listen: ':0', targets: ['a:1'], tcpFallback: ['a:1', 'nope'] }, /tcpFallback\[1\]/],
  ]
  for (const [options, message] of bad) {
    t.throws(() => resolveConfig(options as ProxyOptions), { name: 'TypeError', message }, String(message))
  }
})

t.test('options: no TCP fallback unless one is given (not the targets)', async t => {
  t.equal(resolveConfig({ listen: ':0', targets: ['127.0.0.1:1'] }).tcpFallback, null, 'none by default')
  t.equal(resolveConfig({ listen: ':0', targets: ['127.0.0.1:1'], tcpFallback: false }).tcpFallback, null, 'false: none, as before')
  const given = resolveConfig({ listen: ':0', targets: ['127.0.0.1:1'], tcpFallback: ['127.0.0.1:22', '[::1]:23'] }).tcpFallback
  t.same(given?.map(target => target.authority), ['127.0.0.1:22', '[::1]:23'])
})
