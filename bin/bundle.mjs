/**
 * The build's last step (`npm run build`, after tsc): lib/config/typebox.ts, the one module through
 * which rp4 uses TypeBox, written as one file with TypeBox inside, over tsc's
 * dist/lib/config/typebox.js. Every process that validates options (all of them: flags, files and
 * the library's options alike) loaded TypeBox's 266 ES modules one by one, 120 ms and 12 MiB of
 * RSS; the bundle loads in 17 ms (perf/README.md, "Start-up: TypeBox in one file").
 *
 * Only TypeBox: rp4's own modules stay as tsc writes them. Bundling them too (the whole command,
 * with esbuild or with Rollup) made start-up 27% shorter instead of 20%, but cost a new
 * connection per request 3–9% more CPU (A/B of scenarios 5 and 13: twice the bytes promoted to
 * V8's old generation per scavenge), for reasons not found yet.
 *
 * The source map carries TypeBox's sources (they are not shipped otherwise).
 */
import { build } from 'esbuild'

await build({
  absWorkingDir: new URL('../', import.meta.url).pathname,
  entryPoints: ['lib/config/typebox.ts'],
  outfile: 'dist/lib/config/typebox.js',
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  allowOverwrite: true,
  logLevel: 'warning',
})
