/**
 * The only module that touches llhttp's WebAssembly memory.
 *
 * llhttp is the HTTP/1.1 parser of Node.js; the copy compiled to WebAssembly ships inside the
 * `undici` package (pinned exactly in package.json), with a decade of request-smuggling fixes that
 * no other parser on npm has. One WASM instance serves every parser in the process: each socket
 * chunk is copied once into a grow-only buffer inside WASM memory, and the callbacks hand the
 * parser offsets into the original chunk, so spans become strings or Buffer views of that chunk
 * without another copy.
 *
 * Lenient flags stay off: nothing here calls llhttp_set_lenient_*.
 */
import { createRequire } from 'node:module'
import v8 from 'node:v8'

const require = createRequire(import.meta.url)

// The few WebAssembly JS API declarations used here (the global is not in @types/node 20's lib).
declare namespace WebAssembly {
  class Module { constructor (bytes: Uint8Array) }
  class Instance { constructor (module: Module, imports: Record<string, Record<string, unknown>>); readonly exports: unknown }
  class Memory { readonly buffer: ArrayBuffer }
}

export const enum ParserType { REQUEST = 1, RESPONSE = 2 }

/** llhttp_errno_t values used by the engine (undici/lib/llhttp/constants.js). */
export const enum Errno {
  OK = 0,
  CLOSED_CONNECTION = 5,
  PAUSED = 21,
  PAUSED_UPGRADE = 22,
  USER = 24,
}

/**
 * Return codes of `onHeadersComplete`, as llhttp defines them: go on, the message has no body
 * (a response to HEAD), or the message has no body and the connection is upgraded.
 */
export const enum HeadersResult { CONTINUE = 0, SKIP_BODY = 1, UPGRADE = 2 }

/** What a callback returns: 0 goes on, PAUSE stops `execute` after this callback, ERROR fails it. */
export const CB_OK = 0
export const CB_PAUSE = Errno.PAUSED
export const CB_ERROR = -1

/**
 * The receiving end of the callbacks. Spans (`onUrl`, `onHeaderField`, ...) are offsets into the
 * chunk being executed (`chunk`), which may cut a span in pieces across chunks: the receiver
 * concatenates. `onBody` gets a view of the chunk: valid as long as the chunk is.
 */
export interface ParserCallbacks {
  onMessageBegin (): number
  onUrl (chunk: Buffer, start: number, end: number): number
  onStatus (chunk: Buffer, start: number, end: number): number
  onHeaderField (chunk: Buffer, start: number, end: number): number
  onHeaderValue (chunk: Buffer, start: number, end: number): number
  onHeadersComplete (statusCode: number, upgrade: boolean, keepAlive: boolean): number
  onBody (body: Buffer): number
  onMessageComplete (): number
}

interface LlhttpExports {
  memory: WebAssembly.Memory
  malloc (size: number): number
  free (ptr: number): void
  llhttp_alloc (type: number): number
  llhttp_free (ptr: number): void
  llhttp_execute (ptr: number, data: number, len: number): number
  llhttp_finish (ptr: number): number
  llhttp_resume (ptr: number): void
  llhttp_resume_after_upgrade (ptr: number): void
  llhttp_reset (ptr: number): void
  llhttp_get_error_pos (ptr: number): number
  llhttp_get_error_reason (ptr: number): number
  llhttp_get_errno (ptr: number): number
  llhttp_get_method (ptr: number): number
  llhttp_get_http_major (ptr: number): number
  llhttp_get_http_minor (ptr: number): number
  llhttp_should_keep_alive (ptr: number): number
  llhttp_message_needs_eof (ptr: number): number
}

/*
 * How llhttp is compiled. V8 compiles WebAssembly lazily with its baseline compiler, then
 * recompiles hot functions with TurboFan in a background thread. llhttp's state machine is one
 * very large function, and TurboFan's default register allocator needs about 35 MiB for it: the
 * process's peak RSS rose by that much a moment after start-up, on every process and worker.
 * V8's mid-tier register allocator compiles it in about 10 MiB, and the parser runs within a
 * few per cent of the default's speed (tens of nanoseconds per request). But the flag that
 * chooses it is global: every JavaScript function TurboFan optimises would get the slower
 * allocator too, which cost 2–6% CPU per request. So the flags are set for the compile of this
 * one module only, which is made eager and optimising (compiled whole before `new Module`
 * returns), and set back at once, before any JavaScript of the proxy is hot.
 *
 * Setting V8 flags at run time is what node:v8 documents as "use with care": it is done only on
 * the V8 major version it was measured on (11, Node 20), and only when the process was not
 * started with flags of its own about WebAssembly compilation or register allocation. Anywhere
 * else the module compiles as V8 chooses. `compileMode` says which happened (spec/http1/llhttp-compile.ts).
 * A program that imports rp4 as a library while its own code runs hot shares those ~50 ms: what V8
 * optimises or compiles meanwhile gets the same flags. That changes how fast that code runs,
 * never what it does.
 */
const EAGER_FLAGS = '--no-wasm-lazy-compilation --no-liftoff --turbo-force-mid-tier-regalloc'
/** V8's defaults again, with what `--no-liftoff` implied (`--no-wasm-dynamic-tiering`: V8 applies implications on every call). */
const DEFAULT_FLAGS = '--wasm-lazy-compilation --liftoff --wasm-dynamic-tiering --no-turbo-force-mid-tier-regalloc'
const EAGER_V8_MAJORS = new Set(['11'])
/** Node flags about V8's WebAssembly tiers or its optimising compiler (V8 takes `_` for `-`). */
const OWN_FLAG = /^--(no[-_])?(liftoff|wasm|turbo|jitless)/

export let compileMode: 'eager' | 'default' = 'default'

function eagerCompileAllowed (): boolean {
  if (!EAGER_V8_MAJORS.has(process.versions.v8.split('.')[0])) return false
  const own = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]
  return !own.some(arg => OWN_FLAG.test(arg))
}

function compile (bytes: Buffer): WebAssembly.Module {
  if (!eagerCompileAllowed()) return new WebAssembly.Module(bytes)
  v8.setFlagsFromString(EAGER_FLAGS)
  try {
    const module = new WebAssembly.Module(bytes)
    compileMode = 'eager'
    return module
  } finally {
    v8.setFlagsFromString(DEFAULT_FLAGS)
  }
}

// The parser running `execute` now, and the chunk it is reading: WASM calls back into them.
let current: ParserCallbacks | null = null
let currentChunk: Buffer = Buffer.alloc(0)
let bufferPtr = 0
let bufferSize = 0

const wasm = instantiate()
/** Views of all of WASM memory, made again only when memory grew: not one view per `execute`. */
let memory = new Uint8Array(wasm.memory.buffer)
let words = new DataView(wasm.memory.buffer)

/** The views again after WASM memory grew (a grown memory detaches the old buffer: its length becomes 0). */
function refreshViews (): void {
  memory = new Uint8Array(wasm.memory.buffer)
  words = new DataView(wasm.memory.buffer)
}

/*
 * Body bytes that llhttp passes over unread. In the state that consumes a body of known length
 * (a Content-Length body, or a chunk's data), llhttp only advances past
 * min(bytes left, bytes given) bytes and reports them as body: it never reads them, and the
 * callbacks hand out views of the original chunk anyway. `execute` therefore copies into WASM
 * memory only what follows them, so that a large body crosses the parser without a copy.
 *
 * This reads two fields of llhttp's parser struct (llhttp.h, `llhttp__internal_s`, 32-bit WASM):
 * `_current`, the state it stopped in, and `content_length`, what is left of the body. Both the
 * offsets and the state's number are checked when the module loads, by parsing known messages
 * (`calibrate`); if any answer differs (another llhttp build), nothing is skipped and every
 * chunk is copied whole, as before. spec/http1/parser.ts fails when that happens.
 */
const CURRENT_OFFSET = 28
const CONTENT_LENGTH_OFFSET = 32
/** llhttp's state numbers for consuming a Content-Length body and a chunk's data; -1: not known, nothing skipped. */
let consumeState = -1
let chunkState = -1

function stateOf (ptr: number): number { return words.getUint32(ptr + CURRENT_OFFSET, true) }
function bodyLeft (ptr: number): number {
  return words.getUint32(ptr + CONTENT_LENGTH_OFFSET + 4, true) * 0x100000000 + words.getUint32(ptr + CONTENT_LENGTH_OFFSET, true)
}

function instantiate (): LlhttpExports {
  let module: WebAssembly.Module | undefined
  try {
    module = compile(require('undici/lib/llhttp/llhttp_simd-wasm.js') as Buffer)
  } catch {
    // CPUs or runtimes without WASM SIMD get the plain build
  }
  module ??= compile(require('undici/lib/llhttp/llhttp-wasm.js') as Buffer)
  const instance = new WebAssembly.Instance(module, {
    env: {
      wasm_on_message_begin: () => current!.onMessageBegin(),
      wasm_on_url: (_p: number, at: number, len: number) => current!.onUrl(currentChunk, at - bufferPtr, at - bufferPtr + len),
      wasm_on_status: (_p: number, at: number, len: number) => current!.onStatus(currentChunk, at - bufferPtr, at - bufferPtr + len),
      wasm_on_header_field: (_p: number, at: number, len: number) => current!.onHeaderField(currentChunk, at - bufferPtr, at - bufferPtr + len),
      wasm_on_header_value: (_p: number, at: number, len: number) => current!.onHeaderValue(currentChunk, at - bufferPtr, at - bufferPtr + len),
      wasm_on_headers_complete: (_p: number, status: number, upgrade: number, keepAlive: number) =>
        current!.onHeadersComplete(status, upgrade === 1, keepAlive === 1),
      wasm_on_body: (_p: number, at: number, len: number) => current!.onBody(currentChunk.subarray(at - bufferPtr, at - bufferPtr + len)),
      wasm_on_message_complete: () => current!.onMessageComplete(),
    },
  })
  return instance.exports as unknown as LlhttpExports
}

/** llhttp's method enum (llhttp_method_t) to names, for the HTTP methods a request parser accepts. */
const METHODS: string[] = []
for (const [name, code] of Object.entries((require('undici/lib/llhttp/constants.js') as { METHODS: Record<string, number> }).METHODS)) {
  METHODS[code] = name
}

const ERROR_NAMES: string[] = []
for (const [name, code] of Object.entries((require('undici/lib/llhttp/constants.js') as { ERROR: Record<string, number> }).ERROR)) {
  ERROR_NAMES[code] = name
}

/** One llhttp parser instance (one per connection); `callbacks` receives its events. */
export class Llhttp {
  #ptr: number
  readonly #callbacks: ParserCallbacks
  #executing = false
  #destroyed = false

  constructor (type: ParserType, callbacks: ParserCallbacks) {
    this.#ptr = wasm.llhttp_alloc(type)
    this.#callbacks = callbacks
  }

  /**
   * Parse `chunk`. Returns Errno.OK when all of it was consumed; otherwise the errno, and
   * `errorOffset()` tells where in `chunk` parsing stopped (the rest of a paused or upgraded
   * connection starts there).
   */
  execute (chunk: Buffer): number {
    const len = chunk.length
    if (len > bufferSize) {
      if (bufferPtr !== 0) wasm.free(bufferPtr)
      bufferSize = Math.ceil(len / 65536) * 65536
      bufferPtr = wasm.malloc(bufferSize)
    }
    // growing WASM memory (a malloc, a parser allocated) detaches the old view: its length becomes 0
    if (memory.byteLength === 0) refreshViews()
    const ptr = this.#ptr
    // body bytes llhttp will pass over unread are not copied (see consumeState)
    let skip = 0
    if (consumeState !== -1) {
      const state = stateOf(ptr)
      if (state === consumeState || state === chunkState) skip = Math.min(bodyLeft(ptr), len)
    }
    if (skip === 0) memory.set(chunk, bufferPtr)
    else if (skip < len) memory.set(chunk.subarray(skip), bufferPtr + skip)
    current = this.#callbacks
    currentChunk = chunk
    this.#executing = true
    try {
      return wasm.llhttp_execute(ptr, bufferPtr, len)
    } finally {
      current = null
      currentChunk = EMPTY
      this.#executing = false
      // a callback may have destroyed its own connection: free the parser only now
      if (this.#destroyed) this.destroy()
    }
  }

  /** Where in the last chunk an error or pause happened. */
  errorOffset (): number {
    return wasm.llhttp_get_error_pos(this.#ptr) - bufferPtr
  }

  /** Tell the parser the stream ended: completes a close-delimited message, or errors on a truncated one. */
  finish (): number {
    current = this.#callbacks
    try {
      return wasm.llhttp_finish(this.#ptr)
    } finally {
      current = null
    }
  }

  resume (): void { wasm.llhttp_resume(this.#ptr) }
  resumeAfterUpgrade (): void { wasm.llhttp_resume_after_upgrade(this.#ptr) }

  get method (): string { return METHODS[wasm.llhttp_get_method(this.#ptr)] ?? 'UNKNOWN' }
  get httpMajor (): number { return wasm.llhttp_get_http_major(this.#ptr) }
  get httpMinor (): number { return wasm.llhttp_get_http_minor(this.#ptr) }
  /** True when the current message's body runs until the connection closes. */
  get needsEof (): boolean { return wasm.llhttp_message_needs_eof(this.#ptr) === 1 }

  /** llhttp's reason for the last error, e.g. `Invalid header value char`. */
  errorReason (): string {
    const ptr = wasm.llhttp_get_error_reason(this.#ptr)
    if (ptr === 0) return ''
    const mem = new Uint8Array(wasm.memory.buffer)
    let end = ptr
    while (end < mem.length && mem[end] !== 0) end++
    return Buffer.from(mem.buffer, ptr, end - ptr).toString('latin1')
  }

  /** llhttp's state number and what is left of a body of known length, read from its struct (the load-time check, and its spec). */
  position (): { state: number, bodyLeft: number } {
    if (memory.byteLength === 0) refreshViews()
    return { state: stateOf(this.#ptr), bodyLeft: bodyLeft(this.#ptr) }
  }

  static errorName (errno: number): string { return ERROR_NAMES[errno] ?? String(errno) }

  destroy (): void {
    this.#destroyed = true
    if (this.#ptr !== 0 && !this.#executing) {
      wasm.llhttp_free(this.#ptr)
      this.#ptr = 0
    }
  }
}

const EMPTY = Buffer.alloc(0)

/** True when body bytes of known length are passed to llhttp without a copy (the check at load passed). */
export const skipsBodyCopy = calibrate()

/**
 * Learn llhttp's "consuming a body of known length" state, and check the struct offsets read for
 * it, by parsing known requests: a Content-Length body cut after 5 of its 10 bytes must stop in
 * that state with 5 left, then 3 after 2 more bytes; a chunk's data likewise; a head cut short
 * must stop in another state. Any other answer leaves the copy as it was.
 */
function calibrate (): boolean {
  const quiet: ParserCallbacks = {
    onMessageBegin: () => 0,
    onUrl: () => 0,
    onStatus: () => 0,
    onHeaderField: () => 0,
    onHeaderValue: () => 0,
    onHeadersComplete: () => 0,
    onBody: () => 0,
    onMessageComplete: () => 0,
  }
  const run = (parser: Llhttp, text: string): number => parser.execute(Buffer.from(text, 'latin1'))
  const probe = (steps: ReadonlyArray<readonly [string, number]>): number[] | null => {
    const parser = new Llhttp(ParserType.REQUEST, quiet)
    try {
      const states: number[] = []
      for (const [text, left] of steps) {
        if (run(parser, text) !== Errno.OK) return null
        const at = parser.position()
        if (left >= 0 && at.bodyLeft !== left) return null
        states.push(at.state)
      }
      return states
    } finally {
      parser.destroy()
    }
  }
  try {
    const length = probe([['POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345', 5], ['67', 3]])
    const chunked = probe([['POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\na\r\n1234', 6], ['56', 4]])
    const head = probe([['POST /a HTTP/1.1\r\nHost: a\r\nContent-Len', -1]])
    if (length === null || chunked === null || head === null) return false
    const state = length[0]
    if (length[1] !== state || head[0] === state) return false
    // the chunk's data: its own state, the same in both reads
    if (chunked[0] !== chunked[1] || head[0] === chunked[0]) return false
    consumeState = state
    chunkState = chunked[0]
    return true
  } catch {
    return false
  }
}
