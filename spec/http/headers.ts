import t from 'tap'
import { HeaderList, isName } from '../../lib/http/headers.js'
import { Header, classify } from '../../lib/http/fields.js'
import { RequestHead, hostOf } from '../../lib/http/message.js'

t.test('HeaderList: case-insensitive lookups, case and order kept', async t => {
  const list = new HeaderList(['Host', 'a.test', 'X-Tag', '1', 'accept', '*/*', 'x-tag', '2'])
  t.equal(list.size, 4)
  t.equal(list.get('HOST'), 'a.test')
  t.equal(list.get('x-TAG'), '1', 'the first of two')
  t.same(list.getAll('X-Tag'), ['1', '2'])
  t.equal(list.get('x-tab'), undefined, 'same length, other name')
  t.equal(list.get('missing'), undefined)
  t.equal(list.indexOf('x-tag', 2), 3)

  list.set('X-TAG', '3')
  t.same(list.raw, ['Host', 'a.test', 'X-Tag', '3', 'accept', '*/*'], 'set: the first keeps its place and case, the others go')
  list.set('New', 'v')
  t.same(list.raw.slice(-2), ['New', 'v'], 'set of an absent name appends')
  list.append('new', 'w')
  t.same(list.getAll('NEW'), ['v', 'w'])
  t.equal(list.delete('new'), 2)
  t.equal(list.delete('new'), 0)
  list.deleteAt(0)
  t.same([...list.entries()], [['X-Tag', '3'], ['accept', '*/*']])
})

t.test('isName and classify: any case of the letters, nothing else', async t => {
  for (const name of ['host', 'Host', 'HOST', 'hOsT']) t.ok(isName(name, 'host'), name)
  for (const name of ['hos', 'hosts', 'h0st', 'Hosu', 'H\u00afST']) t.notOk(isName(name, 'host'), JSON.stringify(name))
  // only letters fold: a control character one case-bit away from '-' or a digit is not them
  t.notOk(isName('content\rlength', 'content-length'), 'CR is not -')
  t.notOk(isName('http\u0012-settings', 'http2-settings'), '0x12 is not 2')
  t.notOk(isName('x_forwarded_for', 'x-forwarded-for'), '_ is not -')
  t.equal(classify('Content-Length'), Header.CONTENT_LENGTH)
  t.equal(classify('TRANSFER-ENCODING'), Header.TRANSFER_ENCODING)
  t.equal(classify('X-Forwarded-Proto'), Header.X_FORWARDED_PROTO)
  t.equal(classify('Keep-Alive'), Header.KEEP_ALIVE)
  t.equal(classify('User-Agent'), Header.OTHER, 'a name of the same length as Connection')
  t.equal(classify('Accept'), Header.OTHER, 'a name of the same length as Expect')
  t.equal(classify('Trailer'), Header.TRAILER)
  t.equal(classify('UPGRADE'), Header.UPGRADE)
  t.equal(classify('TE'), Header.TE)
  t.equal(classify('Te\u0000'), Header.OTHER)
})

t.test('RequestHead: path, query and host from every target form', async t => {
  const head = (target: string, host?: string): RequestHead =>
    new RequestHead('GET', target, 1, 1, new HeaderList(host === undefined ? [] : ['Host', host]))
  t.equal(head('/a/b?x=1').path, '/a/b')
  t.equal(head('/a/b?x=1').query, '?x=1')
  t.equal(head('/a/b').query, '')
  t.equal(head('http://h.test/p?q').path, '/p')
  t.equal(head('http://h.test').path, '')
  t.equal(head('http://h.test?q').query, '?q')
  t.equal(head('*').path, '*')
  const h = head('http://h.test/old?keep')
  h.path = '/new'
  t.equal(h.target, 'http://h.test/new?keep', 'a new path keeps the scheme, authority and query')
  h.target = '/other?z'
  t.equal(h.path, '/other', 'a new target is split again')
  t.equal(head('/', 'Example.COM:8080').host, 'example.com')
  t.equal(head('/').host, '')
  t.equal(hostOf('[::1]:80'), '[::1]')
  t.equal(hostOf(' a.test. '), 'a.test')
})

t.test('isToken and isFieldValue give the regular expressions\' answers for every character and for mixed strings', async t => {
  const { isToken, isFieldValue } = await import('../../lib/http/headers.js')
  // the regular expressions the checks stood for (RFC 9110 5.1 token, 5.5 field-value)
  const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
  const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
  let wrong = 0
  for (let c = 0; c < 0x300; c++) {
    const ch = String.fromCharCode(c)
    for (const s of [ch, 'a' + ch, ch + 'a', 'ab' + ch + 'cd']) {
      if (isToken(s) !== FIELD_NAME.test(s)) { wrong++; t.fail(`isToken(${JSON.stringify(s)})`) }
      if (isFieldValue(s) !== FIELD_VALUE.test(s)) { wrong++; t.fail(`isFieldValue(${JSON.stringify(s)})`) }
    }
  }
  t.equal(wrong, 0, 'every character alone and among others, 0x00 to 0x2FF')
  t.equal(isToken(''), false, 'an empty name is no token')
  t.equal(isFieldValue(''), true, 'an empty value is a value')
  const list = new HeaderList()
  t.throws(() => list.append('X-A', 'a\r\nInjected: 1'), /character no header may hold/)
  t.throws(() => list.set('X A', 'v'), /is not a token/)
  t.throws(() => list.append('X-\u00e9', 'v'), /is not a token/)
  list.append('X-Obs', 'caf\u00e9\tok')
  t.same(list.raw, ['X-Obs', 'caf\u00e9\tok'], 'obs-text and a tab inside pass')
})
