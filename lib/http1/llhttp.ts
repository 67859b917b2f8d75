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

// The parser running `execute` now, and the chunk it is reading: WASM calls back into them.
let current: ParserCallbacks | null = null
let currentChunk: Buffer = Buffer.alloc(0)
let bufferPtr = 0
let bufferSize = 0

const wasm = instantiate()
/** A view of all of WASM memory, made again only when memory grew: not one view per `execute`. */
let memory = new Uint8Array(wasm.memory.buffer)

function instantiate (): LlhttpExports {
  let module: WebAssembly.Module | undefined
  try {
    module = new WebAssembly.Module(require('undici/lib/llhttp/llhttp_simd-wasm.js') as Buffer)
  } catch {
    // CPUs or runtimes without WASM SIMD get the plain build
  }
  module ??= new WebAssembly.Module(require('undici/lib/llhttp/llhttp-wasm.js') as Buffer)
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
    if (memory.byteLength === 0) memory = new Uint8Array(wasm.memory.buffer)
    memory.set(chunk, bufferPtr)
    current = this.#callbacks
    currentChunk = chunk
    this.#executing = true
    try {
      return wasm.llhttp_execute(this.#ptr, bufferPtr, len)
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
