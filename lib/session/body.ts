/**
 * Response bodies beyond "a Buffer, or chunks from the backend": a local body rp4 pulls from (a
 * file being read, a cache entry being filled), and asynchronous body transforms (a compressor, a
 * cache entry recording what passes). Both keep backpressure both ways: a transform that cannot
 * take more pauses whoever feeds it (the backend connection, the file), and a client that cannot
 * take more pauses the transforms, so that nothing buffers a whole response on a slow client.
 *
 * Transforms are Node `Transform` streams (zlib's are): their `_flush` is the end-of-body hook (a
 * compressor's trailer, a cache entry's commit). A session with neither keeps its plain path; these
 * objects exist only for the responses that asked for them.
 *
 * Listeners are module-level functions that find their pipeline through a symbol: no closure per
 * response.
 */
import type { Readable, Transform } from 'node:stream'
import { beginBatch, endBatch, isBatching } from '../core/batch.js'

/** What a pipeline talks to: the session that owns it. */
export interface PipelineOwner {
  /** A piece of output for the client. False: the client is full; the pipeline waits for `resume()`. */
  pipelineBody (chunk: Buffer): boolean
  /** The last transform ended: the response is complete. */
  pipelineEnd (): void
  /** A transform failed. */
  pipelineError (err: Error): void
  /** The first transform cannot take more input: stop feeding it until `resumeInput`. */
  pauseInput (): void
  resumeInput (): void
}

/**
 * A transform that wants the rest of the body even when the client it was for has gone (a cache
 * entry being filled while other clients stream from it): the function says whether that holds
 * now. The session then reads the response to its end into nothing, for that transform's sake.
 */
export const kOutlivesClient = Symbol('rp4.outlivesClient')
export type OutlivingTransform = Transform & { [kOutlivesClient]?: () => boolean }

const PIPELINE = Symbol('rp4.pipeline')
const SOURCE = Symbol('rp4.source')

type Owned<T> = T & { [PIPELINE]?: BodyPipeline, [SOURCE]?: LocalSource }

/** A chain of transforms between the response's producer and the client. */
export class BodyPipeline {
  readonly #owner: PipelineOwner
  readonly #stages: readonly Transform[]
  readonly #first: Transform
  readonly #last: Transform
  #inputPaused = false
  #done = false

  constructor (owner: PipelineOwner, stages: readonly Transform[]) {
    this.#owner = owner
    this.#stages = stages
    this.#first = stages[0]
    this.#last = stages[stages.length - 1]
    for (let i = 0; i < stages.length; i++) {
      const stage = stages[i] as Owned<Transform>
      stage[PIPELINE] = this
      stage.on('error', onStageError)
      // between stages, Node's pipe keeps the backpressure (a full stage pauses the one before)
      if (i + 1 < stages.length) stage.pipe(stages[i + 1])
    }
    this.#first.on('drain', onFirstDrain)
    this.#last.on('data', onLastData)
    this.#last.on('end', onLastEnd)
  }

  /** Input from the producer; it is told to pause when the first stage is full. */
  write (chunk: Buffer): void {
    if (this.#done) return
    if (!this.#first.write(chunk) && !this.#inputPaused) {
      this.#inputPaused = true
      this.#owner.pauseInput()
    }
  }

  /** The producer is done: the stages flush (their end-of-body hooks run) and the output ends. */
  end (): void {
    if (!this.#done) this.#first.end()
  }

  /** The client can take more again. */
  resume (): void {
    if (!this.#done) this.#last.resume()
  }

  /** The client is full (its socket went over its mark). */
  pause (): void {
    if (!this.#done) this.#last.pause()
  }

  /** A stage wants the rest of the body though the client left (`kOutlivesClient`). */
  get outlivesClient (): boolean {
    if (this.#done) return false
    for (let i = 0; i < this.#stages.length; i++) {
      if ((this.#stages[i] as OutlivingTransform)[kOutlivesClient]?.() === true) return true
    }
    return false
  }

  /** The response was cut short (the client left, a failure): every stage is dropped, nothing more is emitted. */
  destroy (): void {
    if (this.#done) return
    this.#done = true
    for (let i = 0; i < this.#stages.length; i++) this.#stages[i].destroy()
  }

  /** @internal */ onDrain (): void {
    if (!this.#inputPaused || this.#done) return
    this.#inputPaused = false
    this.#owner.resumeInput()
  }

  /** @internal */ onData (chunk: Buffer): void {
    if (this.#done) return
    if (!this.#owner.pipelineBody(chunk)) this.#last.pause()
  }

  /** @internal */ onEnd (): void {
    if (this.#done) return
    this.#done = true
    this.#owner.pipelineEnd()
  }

  /** @internal */ onError (err: Error): void {
    if (this.#done) return
    this.destroy()
    this.#owner.pipelineError(err)
  }
}

function onFirstDrain (this: Owned<Transform>): void { this[PIPELINE]?.onDrain() }

/*
 * A compressor's output arrives from its thread-pool callbacks, outside the batch a socket read
 * opens: without one of its own, a chunked piece (size line, data, CRLF) would be three socket
 * writes. Inside a batch already (a synchronous transform fed while a read is parsed), that one
 * collects it.
 */
function onLastData (this: Owned<Transform>, chunk: Buffer): void {
  const pipeline = this[PIPELINE]
  if (pipeline === undefined) return
  if (isBatching()) return pipeline.onData(chunk)
  beginBatch()
  try {
    pipeline.onData(chunk)
  } finally {
    endBatch()
  }
}

function onLastEnd (this: Owned<Transform>): void {
  const pipeline = this[PIPELINE]
  if (pipeline === undefined) return
  if (isBatching()) return pipeline.onEnd()
  beginBatch()
  try {
    pipeline.onEnd()
  } finally {
    endBatch()
  }
}
function onStageError (this: Owned<Transform>, err: Error): void { this[PIPELINE]?.onError(err) }

/** What a local source feeds: the session. */
export interface SourceOwner {
  /** A piece of the body (before filters and transforms). */
  sourceData (chunk: Buffer): void
  sourceEnd (): void
  sourceError (err: Error): void
}

/** Why a local source is paused: bits, so that each cause lifts only its own. */
export const enum SourceHold {
  /** The client (or its turn) cannot take more. */
  DOWNSTREAM = 1,
  /** The first transform is full. */
  TRANSFORM = 2,
}

/**
 * A local response body rp4 pulls from: a Readable (a file stream, a cache entry being filled),
 * read in flowing mode and paused whenever the way to the client is full.
 */
export class LocalSource {
  readonly #owner: SourceOwner
  readonly #stream: Owned<Readable>
  #holds = 0
  #done = false

  constructor (owner: SourceOwner, stream: Readable) {
    this.#owner = owner
    this.#stream = stream as Owned<Readable>
    this.#stream[SOURCE] = this
    stream.on('error', onSourceError)
    stream.on('end', onSourceEnd)
  }

  start (): void {
    this.#stream.on('data', onSourceData)
  }

  hold (reason: SourceHold): void {
    if (this.#done) return
    if (this.#holds === 0) this.#stream.pause()
    this.#holds |= reason
  }

  release (reason: SourceHold): void {
    if ((this.#holds & reason) === 0 || this.#done) return
    this.#holds &= ~reason
    if (this.#holds === 0) this.#stream.resume()
  }

  destroy (): void {
    if (this.#done) return
    this.#done = true
    this.#stream.destroy()
  }

  /** @internal */ onData (chunk: Buffer | string): void {
    if (!this.#done) this.#owner.sourceData(typeof chunk === 'string' ? Buffer.from(chunk) : chunk)
  }

  /** @internal */ onEnd (): void {
    if (this.#done) return
    this.#done = true
    this.#owner.sourceEnd()
  }

  /** @internal */ onError (err: Error): void {
    if (this.#done) return
    this.#done = true
    this.#stream.destroy()
    this.#owner.sourceError(err)
  }
}

function onSourceData (this: Owned<Readable>, chunk: Buffer | string): void { this[SOURCE]?.onData(chunk) }
function onSourceEnd (this: Owned<Readable>): void { this[SOURCE]?.onEnd() }
function onSourceError (this: Owned<Readable>, err: Error): void { this[SOURCE]?.onError(err) }

/** A local body as `respond` takes it: whole, or a stream to pull from. */
export type LocalBody = string | Buffer | Readable

export function isReadable (body: unknown): body is Readable {
  return body !== null && typeof body === 'object' && !Buffer.isBuffer(body) && typeof (body as Readable).pipe === 'function' && typeof (body as Readable).on === 'function'
}
