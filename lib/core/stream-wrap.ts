/**
 * Node's `stream_wrap` and `tcp_wrap` bindings, for the two modules that bypass parts of the
 * socket stream (core/direct-write.ts, core/read-into.ts): the write request's constructor, the
 * state a handle shares with JavaScript after each read and write, and the TCP handle's class.
 *
 * They come from `process.binding`, which Node keeps for such uses and deprecates in
 * documentation only; it warns when pending deprecations are shown (--pending-deprecation, or
 * NODE_PENDING_DEPRECATION=1), so such a process goes without, as does one whose Node lacks any of
 * the pieces (or refuses `process.binding`: the permission model). Null then, and both modules
 * leave every socket to its stream.
 */
import { getSystemErrorName } from 'node:util'

export interface WriteRequest {
  handle: unknown
  oncomplete: (this: WriteRequest, status: number) => void
  buffer: Buffer | null
  socket: unknown
}

export interface StreamWrap {
  WriteWrap: new () => WriteRequest
  /** Shared with every stream handle: the last read's length or error, the last write's size and whether it completed later. */
  streamBaseState: Int32Array
  kReadBytesOrError: number
  kLastWriteWasAsync: number
  /** The class of a TCP socket's handle (not a TLS socket's, nor a pipe's). */
  TCP: Function
}

export const streamWrap: StreamWrap | null = (() => {
  const options = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`
  if (/--pending-deprecation\b/.test(options) || process.env.NODE_PENDING_DEPRECATION === '1') return null
  const legacy = (process as unknown as { binding?: (name: string) => unknown }).binding
  if (typeof legacy !== 'function') return null
  try {
    const binding = legacy.call(process, 'stream_wrap') as Partial<StreamWrap>
    const tcp = (legacy.call(process, 'tcp_wrap') as { TCP?: Function }).TCP
    if (typeof binding.WriteWrap !== 'function' || !(binding.streamBaseState instanceof Int32Array) ||
      typeof binding.kLastWriteWasAsync !== 'number' || typeof binding.kReadBytesOrError !== 'number' ||
      typeof tcp !== 'function') return null
    const proto = tcp.prototype as Record<string, unknown>
    for (const method of ['writeBuffer', 'writeLatin1String', 'readStop', 'useUserBuffer']) {
      if (typeof proto[method] !== 'function') return null
    }
    return {
      WriteWrap: binding.WriteWrap,
      streamBaseState: binding.streamBaseState,
      kReadBytesOrError: binding.kReadBytesOrError,
      kLastWriteWasAsync: binding.kLastWriteWasAsync,
      TCP: tcp,
    }
  } catch {
    return null
  }
})()

/** The error Node's streams give for a failed handle call: `write EPIPE`, with code, errno and syscall. */
export function handleError (syscall: string, status: number): NodeJS.ErrnoException {
  let code: string
  try {
    code = getSystemErrorName(status)
  } catch {
    code = `E${-status}`
  }
  const err: NodeJS.ErrnoException = new Error(`${syscall} ${code}`)
  err.errno = status
  err.code = code
  err.syscall = syscall
  return err
}
