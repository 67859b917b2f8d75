/**
 * RFC 9111 conformance, part 1: the arithmetic (lib/http/cache-control.ts), one case per line,
 * each citing its section. Part 2 (spec/e2e/cache.ts) drives the cache through the proxy.
 * Times are pinned: T is the response time, in ms.
 */
import t from 'tap'
import {
  currentAge, freshnessLifetime, HEURISTIC_MAX, mustRevalidate, notStorable, parseCacheControl, requestDirectives, responseFacts,
  staleAllowance, usability, Use,
} from '../../lib/http/cache-control.js'
import { HeaderList } from '../../lib/http/headers.js'

const T = Date.parse('2024-05-01T12:00:00Z')
const date = (ms: number): string => new Date(ms).toUTCString()

function headers (pairs: Record<string, string>): HeaderList {
  return new HeaderList(Object.entries(pairs).flat())
}
function res (status: number, pairs: Record<string, string>) {
  return responseFacts(status, headers(pairs))
}
function storable (status: number, pairs: Record<string, string>, request: Record<string, string> = {}, method = 'GET'): string | null {
  const req = headers(request)
  return notStorable(method, req, requestDirectives(req), res(status, pairs))
}
const lifetime = (status: number, pairs: Record<string, string>): number => freshnessLifetime(res(status, pairs), T)
const use = (pairs: Record<string, string>, request: Record<string, string>, age: number, life: number): Use =>
  usability(res(200, pairs), requestDirectives(headers(request)), age, life)

type Case = [section: string, name: string, run: () => unknown, want: unknown]

const CASES: Case[] = [
  // §5.2: directives
  ['§5.2', 'directive names are case-insensitive', () => parseCacheControl(['Max-Age=5']).get('max-age'), '5'],
  ['§5.2', 'a quoted argument is accepted', () => parseCacheControl(['max-age="7"']).get('max-age'), '7'],
  ['§5.2', 'several header lines are one list', () => [...parseCacheControl(['public', 'max-age=3']).keys()], ['public', 'max-age']],
  ['§4.2.1', 'a repeated directive: the first one counts', () => lifetime(200, { 'Cache-Control': 'max-age=10, max-age=20' }), 10],
  ['§5.2.2.7', 'private with field names parses its quoted list', () => parseCacheControl(['private="Set-Cookie, X"']).get('private'), 'Set-Cookie, X'],
  // §4.2.1: freshness lifetime
  ['§4.2.1', 's-maxage wins over max-age in a shared cache', () => lifetime(200, { 'Cache-Control': 'max-age=10, s-maxage=30' }), 30],
  ['§4.2.1', 'max-age wins over Expires', () => lifetime(200, { 'Cache-Control': 'max-age=10', Date: date(T), Expires: date(T + 100_000) }), 10],
  ['§4.2.1', 'Expires minus Date', () => lifetime(200, { Date: date(T), Expires: date(T + 120_000) }), 120],
  ['§4.2.1', 'Expires without Date: minus the response time', () => lifetime(200, { Expires: date(T + 60_000) }), 60],
  ['§5.3', 'an invalid Expires ("0") is already expired', () => lifetime(200, { Expires: '0' }), 0],
  ['§5.3', 'Expires in the past: stale', () => lifetime(200, { Date: date(T), Expires: date(T - 60_000) }), 0],
  ['§1.2.2', 'max-age that is not a number: stale', () => lifetime(200, { 'Cache-Control': 'max-age=abc' }), 0],
  ['§1.2.2', 'a huge max-age is taken as 2^31', () => lifetime(200, { 'Cache-Control': 'max-age=99999999999999' }), 2 ** 31],
  ['§4.2.1', 'max-age=0: stale at once', () => lifetime(200, { 'Cache-Control': 'max-age=0' }), 0],
  // §4.2.2: heuristics
  ['§4.2.2', 'heuristic: 10% of the time since Last-Modified', () => lifetime(200, { Date: date(T), 'Last-Modified': date(T - 1_000_000) }), 100],
  ['§4.2.2', 'heuristic: capped', () => lifetime(200, { Date: date(T), 'Last-Modified': date(T - 400 * 86_400_000) }), HEURISTIC_MAX],
  ['§4.2.2', 'heuristic for 404 (heuristically cacheable)', () => lifetime(404, { Date: date(T), 'Last-Modified': date(T - 100_000) }), 10],
  ['§4.2.2', 'no heuristic for 302', () => lifetime(302, { Date: date(T), 'Last-Modified': date(T - 100_000) }), 0],
  ['§4.2.2', 'no heuristic without Last-Modified', () => lifetime(200, { Date: date(T) }), 0],
  ['§4.2.2', 'public allows a heuristic for any status', () => lifetime(302, { 'Cache-Control': 'public', Date: date(T), 'Last-Modified': date(T - 100_000) }), 10],
  // §4.2.3: age
  ['§4.2.3', 'age_value from Age', () => currentAge(res(200, { Age: '30', Date: date(T) }), T, T, T), 30],
  ['§4.2.3', 'apparent_age: response_time minus Date', () => currentAge(res(200, { Date: date(T - 20_000) }), T, T, T), 20],
  ['§4.2.3', 'response_delay is added to Age', () => currentAge(res(200, { Age: '10', Date: date(T) }), T - 5000, T, T), 15],
  ['§4.2.3', 'resident time is added', () => currentAge(res(200, { Date: date(T) }), T, T, T + 42_000), 42],
  ['§4.2.3', 'the larger of apparent and corrected age', () => currentAge(res(200, { Age: '5', Date: date(T - 50_000) }), T, T, T), 50],
  ['§4.2.3', 'a Date in the future: apparent age 0', () => currentAge(res(200, { Date: date(T + 60_000) }), T, T, T), 0],
  ['§5.1', 'an invalid Age is ignored', () => currentAge(res(200, { Age: 'soon', Date: date(T) }), T, T, T), 0],
  // §3: storing
  ['§3', 'GET 200 with max-age: stored', () => storable(200, { 'Cache-Control': 'max-age=60' }), null],
  ['§3', 'a method other than GET is not stored', () => storable(200, { 'Cache-Control': 'max-age=60' }, {}, 'POST'), 'method'],
  ['§3', '200 without any freshness information: heuristically cacheable, stored', () => storable(200, {}), null],
  ['§3', '500 without explicit freshness: not stored', () => storable(500, {}), 'status'],
  ['§3', '500 with max-age: stored', () => storable(500, { 'Cache-Control': 'max-age=5' }), null],
  ['§3', '302 without explicit freshness: not stored', () => storable(302, {}), 'status'],
  ['§3', '302 with Expires: stored', () => storable(302, { Expires: date(T + 1000) }), null],
  ['§3', '302 with public: stored', () => storable(302, { 'Cache-Control': 'public' }), null],
  ['§3.3', '206 is not stored (no combining of partial responses)', () => storable(206, { 'Cache-Control': 'max-age=60' }), 'status'],
  ['§4.3.4', '304 never makes an entry', () => storable(304, { 'Cache-Control': 'max-age=60' }), 'status'],
  ['§5.2.2.5', 'no-store: not stored', () => storable(200, { 'Cache-Control': 'no-store, max-age=60' }), 'no-store'],
  ['§5.2.1.5', 'a request with no-store: not stored', () => storable(200, { 'Cache-Control': 'max-age=60' }, { 'Cache-Control': 'no-store' }), 'request no-store'],
  ['§5.2.2.7', 'private: a shared cache does not store it', () => storable(200, { 'Cache-Control': 'private, max-age=60' }), 'private'],
  ['§5.2.2.7', 'private with field names: not stored either', () => storable(200, { 'Cache-Control': 'private="Set-Cookie", max-age=60' }), 'private'],
  ['§3.5', 'Authorization: not stored without public, s-maxage or must-revalidate', () => storable(200, { 'Cache-Control': 'max-age=60' }, { Authorization: 'Basic x' }), 'authorization'],
  ['§3.5', 'Authorization with public: stored', () => storable(200, { 'Cache-Control': 'public, max-age=60' }, { Authorization: 'Basic x' }), null],
  ['§3.5', 'Authorization with s-maxage: stored', () => storable(200, { 'Cache-Control': 's-maxage=60' }, { Authorization: 'Basic x' }), null],
  ['§3.5', 'Authorization with must-revalidate: stored', () => storable(200, { 'Cache-Control': 'must-revalidate, max-age=60' }, { Authorization: 'Basic x' }), null],
  ['§4.1', 'Vary: * can never match: not stored', () => storable(200, { 'Cache-Control': 'max-age=60', Vary: 'Accept, *' }), 'vary *'],
  ['§3 (rp4)', 'Set-Cookie without public: not stored (a cookie for one client)', () => storable(200, { 'Cache-Control': 'max-age=60', 'Set-Cookie': 'a=1' }), 'set-cookie'],
  ['§3 (rp4)', 'Set-Cookie with public: stored as the response says', () => storable(200, { 'Cache-Control': 'public, max-age=60', 'Set-Cookie': 'a=1' }), null],
  // §4.2, §5.2.1: using a stored response
  ['§4.2', 'fresh: lifetime over age', () => use({}, {}, 10, 60), Use.FRESH],
  ['§4.2', 'stale: age reached the lifetime', () => use({}, {}, 60, 60), Use.STALE],
  ['§5.2.2.4', 'response no-cache: always validated', () => use({ 'Cache-Control': 'no-cache, max-age=60' }, {}, 0, 60), Use.VALIDATE],
  ['§5.2.1.4', 'request no-cache: validated', () => use({}, { 'Cache-Control': 'no-cache' }, 0, 60), Use.VALIDATE],
  ['§5.4', 'Pragma: no-cache without Cache-Control: as no-cache', () => use({}, { Pragma: 'no-cache' }, 0, 60), Use.VALIDATE],
  ['§5.4', 'Pragma is ignored beside Cache-Control', () => use({}, { Pragma: 'no-cache', 'Cache-Control': 'max-age=100' }, 0, 60), Use.FRESH],
  ['§5.2.1.1', 'request max-age=0: not fresh enough', () => use({}, { 'Cache-Control': 'max-age=0' }, 1, 60), Use.STALE],
  ['§5.2.1.1', 'request max-age above the age: fresh', () => use({}, { 'Cache-Control': 'max-age=30' }, 10, 60), Use.FRESH],
  ['§5.2.1.1', 'request max-age below the age: stale', () => use({}, { 'Cache-Control': 'max-age=5' }, 10, 60), Use.STALE],
  ['§5.2.1.3', 'min-fresh: must stay fresh that much longer', () => use({}, { 'Cache-Control': 'min-fresh=55' }, 10, 60), Use.STALE],
  ['§5.2.1.3', 'min-fresh satisfied', () => use({}, { 'Cache-Control': 'min-fresh=20' }, 10, 60), Use.FRESH],
  ['§5.2.1.2', 'max-stale without a value: any staleness', () => use({}, { 'Cache-Control': 'max-stale' }, 600, 60), Use.FRESH],
  ['§5.2.1.2', 'max-stale=N within N: served', () => use({}, { 'Cache-Control': 'max-stale=30' }, 80, 60), Use.FRESH],
  ['§5.2.1.2', 'max-stale=N beyond N: stale', () => use({}, { 'Cache-Control': 'max-stale=10' }, 80, 60), Use.STALE],
  ['§5.2.2.2', 'must-revalidate overrides max-stale', () => use({ 'Cache-Control': 'must-revalidate' }, { 'Cache-Control': 'max-stale' }, 80, 60), Use.STALE],
  ['§5.2.2.8', 'proxy-revalidate overrides max-stale in a shared cache', () => use({ 'Cache-Control': 'proxy-revalidate' }, { 'Cache-Control': 'max-stale' }, 80, 60), Use.STALE],
  ['§5.2.2.10', 's-maxage implies proxy-revalidate', () => mustRevalidate(res(200, { 'Cache-Control': 's-maxage=5' })), true],
  ['§5.2.2.2', 'must-revalidate', () => mustRevalidate(res(200, { 'Cache-Control': 'must-revalidate' })), true],
  ['§4.2.4', 'nothing forbids serving stale by default', () => mustRevalidate(res(200, { 'Cache-Control': 'max-age=5' })), false],
  // RFC 5861: the stale extensions
  ['RFC 5861 §3', 'stale-while-revalidate from the response', () => staleAllowance(res(200, { 'Cache-Control': 'max-age=1, stale-while-revalidate=30' }), 'stale-while-revalidate', 0), 30],
  ['RFC 5861 §4', 'stale-if-error from the response', () => staleAllowance(res(200, { 'Cache-Control': 'max-age=1, stale-if-error=300' }), 'stale-if-error', 0), 300],
  ['RFC 5861 §4', "the route's default when the response says nothing", () => staleAllowance(res(200, { 'Cache-Control': 'max-age=1' }), 'stale-if-error', 60), 60],
  ['RFC 5861 §4', "the response's own value over the route's", () => staleAllowance(res(200, { 'Cache-Control': 'max-age=1, stale-if-error=5' }), 'stale-if-error', 60), 5],
  ['§4.2.4', 'must-revalidate: never stale, whatever stale-if-error says', () => staleAllowance(res(200, { 'Cache-Control': 'must-revalidate, stale-if-error=60' }), 'stale-if-error', 60), 0],
  ['§4.2.4', 'proxy-revalidate: never stale', () => staleAllowance(res(200, { 'Cache-Control': 'proxy-revalidate' }), 'stale-while-revalidate', 60), 0],
  ['§4.2.4', 's-maxage: never stale', () => staleAllowance(res(200, { 'Cache-Control': 's-maxage=1, stale-while-revalidate=9' }), 'stale-while-revalidate', 60), 0],
  ['§5.2.2.4', 'no-cache: never stale', () => staleAllowance(res(200, { 'Cache-Control': 'no-cache' }), 'stale-if-error', 60), 0],
]

t.test('RFC 9111 arithmetic', async t => {
  for (const [section, name, run, want] of CASES) t.same(run(), want, `${section} ${name}`)
  t.ok(CASES.length >= 70, `${CASES.length} cases`)
})
