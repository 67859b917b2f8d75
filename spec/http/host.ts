/**
 * The Host check (http/validate.ts `validHost`) against the regular expression it replaced, on
 * hand-picked edges and on thousands of seeded random near-misses built from the characters
 * that matter (brackets, colons, digits, blanks, bytes above 127).
 */
import t from 'tap'
import { seeded as random } from '../helpers/random.js'
import { validHost } from '../../lib/http/validate.js'

const REFERENCE = /^[ \t]*(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+;=]*)(?::[0-9]*)?[ \t]*$/

t.test('edges: the same answer as the regular expression, and the answer expected', async t => {
  const cases: Array<[string, boolean]> = [
    ['', true], [' ', true], ['\t', true], ['a', true], ['example.com', true], ['example.com:8080', true],
    ['example.com:', true], [' example.com:80 \t', true], ['127.0.0.1', true], ['[::1]', true], ['[::1]:443', true],
    ['[::ffff:127.0.0.1]', true], ['xn--bcher-kva.example', true], ["a!$&'()*+;=%~_-.b", true],
    ['[]', false], ['[::1', false], ['::1]', false], ['[::1]x', false], ['[::g]', false], ['a b', false],
    ['a: 80', false], ['a:8 0', false], ['a:80x', false], ['a:-1', false], ['a::80', false], ['a@b', false],
    ['a/b', false], ['a?b', false], ['a#b', false], ['a\rb', false], ['a\nb', false], ['a\0b', false],
    ['caf\u00e9.example', false], ['a,b', false], ['a:80,b:80', false], ['[::1] ', true], [' [::1]:1 ', true],
    ['a\u00a0', false], ['\u00a0a', false], ['[::1]:', true], [':80', true], [':', true], ['[', false], [']', false],
  ]
  for (const [value, expected] of cases) {
    t.equal(REFERENCE.test(value), expected, `reference: ${JSON.stringify(value)}`)
    t.equal(validHost(value), expected, JSON.stringify(value))
  }
})

t.test('random near-misses: the same answer as the regular expression', async t => {
  const next = random(20261130)
  const alphabet = ['a', 'Z', '0', '9', '.', '-', ':', ':', '[', ']', ' ', '\t', '%', '~', '@', '/', ',', '\u00e9', '\u00ff', '\r', 'f', 'F', '_', '=']
  let disagreements = 0
  let accepted = 0
  for (let n = 0; n < 20000; n++) {
    let value = ''
    const length = Math.floor(next() * 12)
    for (let i = 0; i < length; i++) value += alphabet[Math.floor(next() * alphabet.length)]
    if (next() < 0.3) value = '[' + value.replace(/[[\]]/g, '') + ']' + (next() < 0.5 ? ':' + Math.floor(next() * 70000) : '')
    const expected = REFERENCE.test(value)
    if (expected) accepted++
    if (validHost(value) !== expected) {
      disagreements++
      if (disagreements <= 5) t.fail(`${JSON.stringify(value)}: regular expression ${String(expected)}, validHost ${String(!expected)}`)
    }
  }
  t.equal(disagreements, 0, 'no disagreement in 20,000 values')
  t.ok(accepted > 1000 && accepted < 19000, `both answers well represented (${accepted} accepted)`)
})
