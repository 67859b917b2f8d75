/**
 * The open-file limit, and the client connections it allows: the default (and the ceiling) of
 * `limits.maxConnections`. A connection over the cap is refused cleanly at accept time, rather
 * than failing to open its backend connection (EMFILE) halfway through a request.
 */
import { readFileSync } from 'node:fs'

/**
 * Descriptors kept for everything but client connections and their backend connections: stdio,
 * the event loop's own, listening sockets, certificate and access files being read, DNS lookups.
 */
const RESERVED_FILES = 64
/** Where the limit cannot be read (not Linux): macOS's usual per-process limit, which Node raises its soft limit to. */
const ASSUMED_OPEN_FILES = 10_240
/** What a process may open when its limit says unlimited: Linux's default fs.nr_open. */
const UNLIMITED_OPEN_FILES = 1_048_576

/**
 * The soft RLIMIT_NOFILE of this process from /proc/self/limits (Node has no getrlimit; it raises
 * the soft limit to the hard one at startup, so this is usually `ulimit -Hn` of the shell), or
 * null where it cannot be read.
 */
export function readOpenFileLimit (file = '/proc/self/limits'): number | null {
  let text: string
  try {
    text = readFileSync(file, 'latin1')
  } catch {
    return null
  }
  const soft = /^Max open files[ \t]+(\S+)/m.exec(text)?.[1]
  if (soft === undefined) return null
  if (soft === 'unlimited') return UNLIMITED_OPEN_FILES
  const value = Number(soft)
  return Number.isSafeInteger(value) && value > 0 ? value : null
}

/**
 * Client connections an open-file limit allows: each may need two descriptors, its own and one
 * to a backend (a raw TCP relay always does; an HTTP client does while its request is in flight,
 * and pooled backend connections stay open after it), besides the reserved ones.
 */
export function connectionsAllowedBy (openFiles: number): number {
  return Math.max(1, Math.floor((openFiles - RESERVED_FILES) / 2))
}

/** This process's limit, read once. */
export const OPEN_FILES = readOpenFileLimit()

/** The default of limits.maxConnections, and its ceiling where the limit could be read. */
export const MAX_CONNECTIONS = connectionsAllowedBy(OPEN_FILES ?? ASSUMED_OPEN_FILES)
