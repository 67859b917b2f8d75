/**
 * The one-pass test for fields that can change an answer (http/conditional.ts `hasConditions`):
 * true for every precondition field and Range in any case, false for the fields of a plain
 * request and for near misses.
 */
import t from 'tap'
import { hasConditions } from '../../lib/http/conditional.js'
import { HeaderList } from '../../lib/http/headers.js'
import { seeded } from '../helpers/random.js'

const PLAIN = ['Host', 'h', 'User-Agent', 'curl/8', 'Accept', '*/*', 'Accept-Encoding', 'gzip', 'Cookie', 'a=1']

t.test('every precondition field and Range, in any case, wherever it stands', async t => {
  const random = seeded(5)
  const names = ['If-Match', 'If-None-Match', 'If-Modified-Since', 'If-Unmodified-Since', 'If-Range', 'Range']
  for (const name of names) {
    for (let i = 0; i < 20; i++) {
      const cased = [...name].map(c => random() < 0.5 ? c.toLowerCase() : c.toUpperCase()).join('')
      const fields = [...PLAIN]
      const at = Math.floor(random() * (fields.length / 2 + 1)) * 2
      fields.splice(at, 0, cased, 'x')
      t.equal(hasConditions(new HeaderList(fields)), true, `${cased} at ${at / 2}`)
    }
  }
})

t.test('a plain request and near misses have none', async t => {
  t.equal(hasConditions(new HeaderList([])), false)
  t.equal(hasConditions(new HeaderList([...PLAIN])), false)
  for (const name of ['Ranges', 'Rang', 'X-Range', 'Content-Range', 'Ifx-Match', 'If', 'If_', 'I-Match', 'Referer', 'Retry-After', 'Iframe']) {
    t.equal(hasConditions(new HeaderList([...PLAIN, name, 'x'])), false, name)
  }
  // an If- field rp4 does not know is taken the long way, which reads only the ones it knows
  t.equal(hasConditions(new HeaderList([...PLAIN, 'If-Schedule-Tag-Match', '"a"'])), true)
})
