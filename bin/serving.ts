/**
 * How the process that serves is started: the Node flag and the environment the launcher
 * (rp4.ts) gives it, shared with the perf harness so that it measures what users run.
 *
 * **Initial heap.** V8 counts the socket read buffers in flight toward its old generation's
 * limit once they survive a scavenge; with the code rp4 loads (the configuration schema and YAML
 * parser among it) the default initial heap leaves so little room under that limit that 1 MiB
 * transfers set off a mark-compact every few dozen milliseconds: `node --trace-gc` shows ~50 of
 * them in 3 s of the harness's 1 MiB scenario, and rp4 moves 35% fewer bytes for 60% more CPU.
 * 128 MiB of initial heap (a starting size, not a cap) brings that back to none. The flag cannot
 * be set from inside a running process (v8.setFlagsFromString comes too late for heap sizing,
 * NODE_OPTIONS refuses it).
 *
 * **malloc's trimming.** Every socket read lands in a fresh 64 KiB buffer from malloc, freed once
 * written on. When the freed buffers sit at the top of glibc's heap, free() gives the top back to
 * the kernel (brk) and the next reads take it again, page by page: in the 1 MiB scenario that is
 * 80 to 230 page faults per response and up to 40% more CPU, or none at all, depending only on
 * where other long-lived allocations happened to land (so two builds of the same code can
 * differ). A fixed trim threshold of 64 MiB keeps the top: 0 faults per response, every run (32
 * MiB still left some runs at 30 to 90; a top pad alone did nothing). The cost is that up to
 * 64 MiB freed at the top of the heap stays with the process.
 *
 * **One malloc arena.** The threshold holds in every arena, and V8 compiles llhttp's WebAssembly
 * with its optimising tier in a background thread, whose own arena then keeps the ~35 MiB the
 * compiler used and freed (one anonymous mapping in /proc/PID/smaps), where no later allocation
 * of the serving thread can reuse it. With one arena (`arena_max=1`) that memory goes back to the
 * heap every thread draws from, and the socket buffers reuse it: peak RSS under the harness's
 * small requests 132–135 → 125–126 MiB, 1 MiB responses 153–156 → 112–114, gzip 161–162 →
 * 114–116, at the same CPU per request (three alternating pairs each: 18.4 / 17.8 µs, 793 / 793
 * µs, 437 / 442 µs). The environment variable must be set before the process starts, hence,
 * again, the child process; a GLIBC_TUNABLES of the user's own is left as it is. Other C
 * libraries ignore it.
 */

export const HEAP_FLAG = '--initial-heap-size'
export const HEAP_ARG = `${HEAP_FLAG}=128`

export const MALLOC_TUNABLES = 'glibc.malloc.trim_threshold=67108864:glibc.malloc.arena_max=1'

/** The environment of the serving process, from the launcher's own. */
export function servingEnv (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (env.GLIBC_TUNABLES !== undefined) return env
  return { ...env, GLIBC_TUNABLES: MALLOC_TUNABLES }
}

/**
 * The environment the perf harness starts rp4 with: one process (as nginx and HAProxy run one
 * worker in its rows) unless RP4_WORKERS says otherwise; its workers mode sets `--workers`.
 */
export function rp4Env (env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...servingEnv(env), RP4_WORKERS: env.RP4_WORKERS ?? '1' }
}
