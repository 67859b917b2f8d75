/**
 * Bytes to latin1 strings on the hot path. `Buffer#toString('latin1', start, end)` normalises its
 * arguments and looks the encoding up on every call before it reaches the native slice; the
 * parser makes one such call per header name and value. Node's Buffer has carried that native
 * slice as `latin1Slice(start, end)` since 0.x (undocumented): it is used here when present, and
 * `toString` otherwise. spec/http1/bytes.ts fails when a Node release takes it away.
 */
interface Latin1Slicing { latin1Slice?: (start: number, end: number) => string }

/** True when Node's own latin1 slice is used (false: the documented `toString`). */
export const nativeLatin1Slice = typeof (Buffer.prototype as Latin1Slicing).latin1Slice === 'function'

/** `buf.toString('latin1', start, end)` for `0 <= start <= end <= buf.length`. */
export const latin1: (buf: Buffer, start: number, end: number) => string = nativeLatin1Slice
  ? (buf, start, end) => (buf as Latin1Slicing).latin1Slice!(start, end)
  : (buf, start, end) => buf.toString('latin1', start, end)
