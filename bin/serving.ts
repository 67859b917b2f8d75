/**
 * How the process that serves is started: the Node flag and the environment the launcher
 * (rp4.ts) gives it, shared with the perf harness so that it measures what users run.
 *
 * **Initial heap.** V8 counts the socket read buffers in flight toward its old generation's
 * limit once they survive a scavenge; with the code rp4 loads (the configuration schema and YAML
 * parser among it) the default initial heap leaves so little room under that limit that 1 MiB
 * transfers set off a mark-compact every few dozen milliseconds: `node --trace-gc` shows ~50 of
 * them in 3 s of the harness's 1 MiB scenario, and rp4 moves 35% fewer bytes for 60% more CPU.
 * 128 MiB of initial heap (a starting size, not a cap) brings that back to none. Since reads go to
 * buffers used again there are no mark-compacts in that scenario either way, but the larger
 * initial heap also starts V8 with a larger young generation: 611–634 against 683–714 µs of CPU
 * per 1 MiB response with V8's default (two runs each; 21.1 against 21.3–21.9 µs per small
 * request), so it stays. The flag cannot
 * be set from inside a running process (v8.setFlagsFromString comes too late for heap sizing,
 * NODE_OPTIONS refuses it).
 *
 * **malloc's trimming.** Until socket reads went to buffers used again (lib/core/read-buffers.ts),
 * every read landed in a fresh 64 KiB buffer from malloc, and glibc's trimming gave the top of its
 * heap back to the kernel and took it again page by page: up to 230 page faults per 1 MiB
 * response, so the serving process had a fixed trim threshold of 64 MiB. With reads into reused
 * buffers the faults are gone either way (0.1–1.3 per 1 MiB response or upload without the
 * threshold, 0.1–0.2 with it; CPU per request within noise: A/B 0.957 for 1 MiB responses,
 * 1.024 uploads, 1.006 small requests, 1.008 TCP; TLS keep-alive 36.0–37.5 against 36.5 µs), and
 * the threshold only kept up to 64 MiB of freed memory with the process (12–15 MiB at idle). glibc's
 * own dynamic threshold is back.
 *
 * **One malloc arena.** V8 compiles on background threads, and glibc gives each its own arena,
 * which keeps what that thread used and freed where no allocation of the serving thread can reuse
 * it. When llhttp's WebAssembly was still tiered up in the background, that was one 35 MiB
 * anonymous mapping in /proc/PID/smaps (the compile now needs far less: lib/http1/llhttp.ts).
 * With one arena (`arena_max=1`) that memory goes back to the heap every thread draws from, and
 * the socket buffers reuse it: peak RSS under the harness's small requests was 132–135 → 125–126
 * MiB, 1 MiB responses 153–156 → 112–114, gzip 161–162 → 114–116, at the same CPU per request
 * (three alternating pairs each: 18.4 / 17.8 µs, 793 / 793 µs, 437 / 442 µs). It still pays after
 * the eager compile and without the trim threshold: 96–97 against 101 MiB at the peak under small
 * requests (glibc's default of 8 arenas on this machine; 21.1–22.3 against 21.1–21.7 µs). The
 * environment variable must be set before the process starts, hence, again, the child process; a
 * GLIBC_TUNABLES of the user's own is left as it is. Other C libraries ignore it.
 */

export const HEAP_FLAG = '--initial-heap-size'
/**
 * The serving process's V8 flags: the initial heap (above), and a young generation of at most
 * 8 MiB per semi-space instead of V8's 16. Under load the young generation grows to its cap, and
 * at 16 it was 10–11 MiB of the peak RSS under small requests; at 8 the CPU per request is the
 * same or better (A/B, `ab.js --baseline . --node-args="--max-semi-space-size=8"
 * --baseline-node-args=""`, 8 rounds: small requests 0.990, one connection 1.026 (segments
 * 1.046, 0.992), 1 MiB responses 0.962, a new connection per request 0.989) and the peak RSS
 * under small requests 84.7 against 95.4 MiB. Flags the user gives node come after these, so theirs win.
 */
export const HEAP_ARGS: readonly string[] = [`${HEAP_FLAG}=128`, '--max-semi-space-size=8']

export const MALLOC_TUNABLES = 'glibc.malloc.arena_max=1'

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
