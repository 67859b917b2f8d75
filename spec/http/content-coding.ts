/**
 * Accept-Encoding negotiation with q-values (RFC 9110 §12.5.3), and the header helpers a body
 * transform uses.
 */
import t from 'tap'
import { hasDirective, MediaTypes, negotiateCoding, varyWith, weakETag } from '../../lib/http/content-coding.js'

t.test('negotiateCoding', async t => {
  const both = ['br', 'gzip'] as const
  const cases: Array<[string | undefined, readonly ('br' | 'gzip')[], string | null, string]> = [
    [undefined, both, null, 'no header: identity'],
    ['', both, null, 'empty: identity only'],
    ['gzip', both, 'gzip', 'one coding'],
    ['gzip, br', both, 'br', 'equal weights: the server prefers br'],
    ['gzip, br', ['gzip', 'br'], 'gzip', 'the server order breaks ties'],
    ['br;q=0, gzip', both, 'gzip', 'br refused'],
    ['br;q=0.5, gzip;q=0.8', both, 'gzip', 'the higher q wins'],
    ['*', both, 'br', '* stands for any'],
    ['*;q=0.5, gzip;q=0.1', both, 'br', '* weighs what is not named'],
    ['*;q=0, gzip', both, 'gzip', '*;q=0 refuses the rest only'],
    ['identity', both, null, 'identity only'],
    ['identity;q=0', both, null, 'identity refused and nothing else offered: identity all the same'],
    ['GZIP', both, 'gzip', 'case-insensitive'],
    ['x-gzip', both, 'gzip', 'x-gzip is gzip'],
    ['gzip;q=1.0', both, 'gzip', 'q=1.0'],
    ['gzip;q=0.000', both, null, 'q=0.000 refuses'],
    ['gzip;q=2', both, null, 'a weight over 1 is malformed: not chosen'],
    ['gzip;q=abc', both, null, 'a malformed weight: not chosen'],
    ['gzip ; q=0.3 , br ; q=0.2', both, 'gzip', 'spaces around parameters'],
    ['deflate, zstd', both, null, 'codings not offered'],
    ['br, br;q=0', both, null, 'named twice: the lower weight'],
    ['gzip', [], null, 'nothing offered'],
  ]
  for (const [header, offered, want, label] of cases) t.equal(negotiateCoding(header, offered), want, `${JSON.stringify(header)}: ${label}`)
})

t.test('header helpers', async t => {
  t.ok(hasDirective('public, no-transform', 'no-transform'))
  t.ok(hasDirective('No-Transform', 'no-transform'))
  t.notOk(hasDirective('x-no-transform-ish', 'no-transform'))
  t.notOk(hasDirective(undefined, 'no-transform'))
  t.ok(hasDirective('max-age=5, s-maxage=10', 's-maxage'))
  t.notOk(hasDirective('max-age=5', 'age'))
  t.equal(weakETag('"a"'), 'W/"a"')
  t.equal(weakETag('W/"a"'), 'W/"a"')
  t.equal(varyWith(undefined, 'Accept-Encoding'), 'Accept-Encoding')
  t.equal(varyWith('Origin', 'Accept-Encoding'), 'Origin, Accept-Encoding')
  t.equal(varyWith('accept-encoding', 'Accept-Encoding'), 'accept-encoding')
  t.equal(varyWith('*', 'Accept-Encoding'), '*')
  const types = new MediaTypes(['text/*', 'application/json', 'application/*+json', 'image/svg+xml'])
  t.ok(types.has('text/html; charset=utf-8'))
  t.ok(types.has('Application/JSON'))
  t.ok(types.has('application/problem+json'))
  t.ok(types.has('image/svg+xml'))
  t.notOk(types.has('image/png'))
  t.notOk(types.has('application/jsonx'))
  t.notOk(types.has(undefined))
})
