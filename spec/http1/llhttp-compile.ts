/**
 * llhttp's WebAssembly is compiled whole, by TurboFan with its mid-tier register allocator, under
 * V8 flags set for that one compile (lib/http1/llhttp.ts says why). What must hold: on the V8 it
 * was measured on, the eager compile happened and every flag is back to V8's default afterwards
 * (a WebAssembly module compiled later is lazy, starts in Liftoff and is not tiered up after one
 * call, as V8 does by default);
 * a process started with WebAssembly flags of its own keeps them (no eager compile), and parses.
 * Each case runs in its own Node process with `--allow-natives-syntax`, the only way to ask V8
 * how a function was compiled.
 */
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import t from 'tap'
import { probe } from '../helpers/probe.js'
import { checkBuilt, ROOT } from '../helpers/proxy.js'

const LLHTTP = pathToFileURL(path.join(ROOT, 'dist/lib/http1/llhttp.js')).href
const PARSER = pathToFileURL(path.join(ROOT, 'dist/lib/http1/parser.js')).href

// (module (func (export "f") (result i32) i32.const 7)): a module compiled after llhttp's
const SMALL_MODULE = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0, 10, 6, 1, 4, 0, 65, 7, 11]

const PROBE = `
const { compileMode } = await import(${JSON.stringify(LLHTTP)})
const { HttpParser } = await import(${JSON.stringify(PARSER)})
const heads = []
const parser = new HttpParser(1, { onHead (h) { heads.push(h.method + ' ' + h.url); return 0 }, onBody () { return 0 }, onMessageComplete () { return 0 } }, 8192)
parser.execute(Buffer.from('GET /a HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET /b HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'))
const instance = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(${JSON.stringify(SMALL_MODULE)})))
const f = instance.exports.f
const lazy = %IsUncompiledWasmFunction(f)
const seven = f()
// with dynamic tiering off (what --no-liftoff implies), one call is enough for V8 to tier f up in
// the background: wait for that to have had its chance
await new Promise(resolve => setTimeout(resolve, 250))
console.log(JSON.stringify({ compileMode, heads, lazy, seven, liftoff: %IsLiftoffFunction(f), turbofan: %IsTurboFanFunction(f) }))
`

interface Probe { compileMode: string, heads: string[], lazy: boolean, seven: number, liftoff: boolean, turbofan: boolean }

function compileProbe (nodeFlags: string[]): Promise<Probe> {
  return probe<Probe>(PROBE, ['--allow-natives-syntax', ...nodeFlags])
}

const measuredOn = process.versions.v8.split('.')[0] === '11'

t.test('on the V8 it was measured on, llhttp compiles eagerly and every flag goes back to its default', async t => {
  if (!checkBuilt(t, 'dist/lib/http1/llhttp.js')) return
  const p = await compileProbe([])
  t.same(p.heads, ['GET /a', 'GET /b'], 'the parser parses')
  t.equal(p.compileMode, measuredOn ? 'eager' : 'default', `compile mode on V8 ${process.versions.v8}`)
  t.equal(p.lazy, true, 'a module compiled afterwards is compiled lazily again (--wasm-lazy-compilation restored)')
  t.equal(p.seven, 7)
  t.equal(p.liftoff, true, 'and runs in Liftoff after a call (--liftoff and --wasm-dynamic-tiering restored)')
  t.equal(p.turbofan, false, 'not tiered up after one call')
})

t.test('a process started with WebAssembly flags of its own keeps them', async t => {
  if (!checkBuilt(t, 'dist/lib/http1/llhttp.js')) return
  const p = await compileProbe(['--no-wasm-lazy-compilation'])
  t.same(p.heads, ['GET /a', 'GET /b'], 'the parser parses')
  t.equal(p.compileMode, 'default', 'no eager compile of its own')
  t.equal(p.lazy, false, 'its flag holds for later modules too')
  t.equal(p.seven, 7)
})
