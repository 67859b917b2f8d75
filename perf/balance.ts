/**
 * The balancing scenario (issue: load balancing and health): three origins, one of them slow
 * (10× the others' latency) or failing (every answer 503), and the same closed-loop load through
 * rp4 under each policy (round robin, least outstanding, P2C, P2C weighted by latency), nginx
 * (`least_conn`) and HAProxy (`leastconn`). What it shows: p50/p99 latency and the error rate per
 * row, side by side; a good policy keeps the slow backend's share, and so the p99, down. With the
 * failing backend, rp4 rows run with `--retries 1` and nothing else (the plain config: its default
 * `retries.markDownAfter` skips a backend after three retried failures in a row, for the 10 s
 * failed-target time) and nginx/HAProxy with their equivalents (`proxy_next_upstream http_503`,
 * `retry-on 503` with `option redispatch`), so the error rate compares retries as well as
 * policies. nginx runs with `max_fails=0` (no passive marking: every 503 is retried, without a
 * budget).
 *
 *   node dist/perf/balance.js [--duration S] [--connections N] [--base-delay MS] [--only slow|failing]
 *
 * Results go to stdout as a table and to perf/results/balance.json. No figure is asserted.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { HEAP_ARGS, rp4Env } from '../bin/serving.js'
import type { LoadResult } from './loadgen.js'
import { runLoad } from './measure.js'
import { CLIENT_CORE, PROXY_CORE, ProcessGroup, freePort, killEverythingSync, stopEverything, waitForPort, waitForStderr } from './processes.js'
import { formatLatency, writeJson } from './report.js'
import { RP4_PATH, detectTools } from './rows.js'
import type { LoadSpec } from './scenarios.js'

const ORIGIN_PATH = fileURLToPath(new URL('./origin.js', import.meta.url))
const RESULT_JSON = fileURLToPath(new URL('../../perf/results/balance.json', import.meta.url))

type Fault = 'slow' | 'failing'
interface Row { name: string, start: (group: ProcessGroup, origins: number[], fault: Fault) => Promise<number> }

const RP4_POLICIES = ['round-robin', 'least-conn', 'p2c', 'p2c-latency'] as const

function rp4Row (policy: string): Row {
  return {
    name: `rp4 ${policy}`,
    start: async (group, origins, fault) => {
      const args = [...HEAP_ARGS, RP4_PATH, 'listen', '127.0.0.1:0', '--balance', policy, ...origins.flatMap(p => ['--to', `127.0.0.1:${p}`])]
      if (fault === 'failing') args.push('--retries', '1')
      const child = group.spawn('rp4', process.execPath, args, { core: PROXY_CORE, env: rp4Env() })
      const match = await waitForStderr(child, /listening on (\S+):(\d+)/, 10_000)
      return Number(match[2])
    },
  }
}

const nginxRow: Row = {
  name: 'nginx least_conn',
  start: async (group, origins, fault) => {
    const tools = detectTools()
    if (tools.nginx.command === null) throw new Error(tools.nginx.missing ?? 'nginx not found')
    const dir = mkdtempSync(join(tmpdir(), 'rp4-perf-balance-nginx-'))
    const port = await freePort()
    writeFileSync(join(dir, 'nginx.conf'), `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 100000000;
  upstream origin {
    least_conn;
${origins.map(p => `    server 127.0.0.1:${p} max_fails=0;`).join('\n')}
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream ${fault === 'failing' ? 'error timeout http_503' : 'error timeout'};
      proxy_next_upstream_tries 2;
    }
  }
}
`)
    const child = group.spawn('nginx', tools.nginx.command, ['-c', join(dir, 'nginx.conf'), '-p', dir, '-e', join(dir, 'error.log')], { core: PROXY_CORE })
    child.exited.finally(() => rmSync(dir, { recursive: true, force: true })).catch(() => {})
    await waitForPort(port, child, 10_000)
    return port
  },
}

const haproxyRow: Row = {
  name: 'HAProxy leastconn',
  start: async (group, origins, fault) => {
    const tools = detectTools()
    if (tools.haproxy.command === null) throw new Error(tools.haproxy.missing ?? 'HAProxy not found')
    const dir = mkdtempSync(join(tmpdir(), 'rp4-perf-balance-haproxy-'))
    const port = await freePort()
    writeFileSync(join(dir, 'haproxy.cfg'), `global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend front
  bind 127.0.0.1:${port}
  default_backend origin
backend origin
  balance leastconn
  http-reuse always
${fault === 'failing' ? '  retry-on 503\n  retries 1\n  option redispatch 1\n' : ''}${origins.map((p, i) => `  server o${i} 127.0.0.1:${p}`).join('\n')}
`)
    const child = group.spawn('haproxy', tools.haproxy.command, ['-db', '-f', join(dir, 'haproxy.cfg')], { core: PROXY_CORE })
    child.exited.finally(() => rmSync(dir, { recursive: true, force: true })).catch(() => {})
    await waitForPort(port, child, 10_000)
    return port
  },
}

interface Measured { fault: Fault, row: string, rps: number, p50Us: number, p99Us: number, errorRate: number, note?: string }

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '10' },
      connections: { type: 'string', default: '30' },
      'base-delay': { type: 'string', default: '2' },
      only: { type: 'string' },
    },
  })
  const durationS = Number(values.duration)
  const baseDelay = Number(values['base-delay'])
  const load: LoadSpec = { connections: Number(values.connections), pipeline: 1, path: '/small', bodySize: 0, newConn: false }
  const faults: Fault[] = values.only !== undefined ? [values.only as Fault] : ['slow', 'failing']
  const rows: Row[] = [...RP4_POLICIES.map(rp4Row), nginxRow, haproxyRow]
  const results: Measured[] = []
  for (const fault of faults) {
    const origins = new ProcessGroup()
    const ports: number[] = []
    for (let i = 0; i < 3; i++) {
      // the third origin is the odd one: 10× slower, or answering 503 to everything
      const args = [ORIGIN_PATH, '--delay', String(i === 2 && fault === 'slow' ? baseDelay * 10 : baseDelay)]
      if (i === 2 && fault === 'failing') args.push('--status', '503')
      const child = origins.spawn(`origin-${i}`, process.execPath, args, { core: CLIENT_CORE })
      const m = await waitForStderr(child, /listening on (\S+):(\d+)/, 10_000)
      ports.push(Number(m[2]))
    }
    for (const row of rows) {
      const group = new ProcessGroup()
      try {
        const port = await row.start(group, ports, fault)
        await runLoad(group, load, port, Math.min(1, durationS)) // warm-up: pools, JIT
        const r: LoadResult = await runLoad(group, load, port, durationS)
        const total = r.requests + r.errors.total
        results.push({ fault, row: row.name, rps: r.rps, p50Us: r.latencyUs.p50, p99Us: r.latencyUs.p99, errorRate: total === 0 ? 0 : r.errors.total / total })
      } catch (err) {
        results.push({ fault, row: row.name, rps: 0, p50Us: 0, p99Us: 0, errorRate: 0, note: (err as Error).message })
      } finally {
        await group.stopAll()
      }
      process.stderr.write(`balance: ${fault} / ${row.name} done\n`)
    }
    await origins.stopAll()
  }
  const lines = ['| backend fault | row | req/s | p50 | p99 | errors |', '| --- | --- | ---: | ---: | ---: | ---: |']
  for (const r of results) {
    lines.push(r.note !== undefined
      ? `| ${r.fault} | ${r.row} | — | — | — | skipped: ${r.note} |`
      : `| ${r.fault} | ${r.row} | ${r.rps.toFixed(0)} | ${formatLatency(r.p50Us)} | ${formatLatency(r.p99Us)} | ${(r.errorRate * 100).toFixed(2)}% |`)
  }
  process.stdout.write(`three origins, base latency ${baseDelay} ms, one ${faults.join(' / then ')}; ${load.connections} connections, ${durationS}s per row\n${lines.join('\n')}\n`)
  writeJson(RESULT_JSON, { baseDelayMs: baseDelay, connections: load.connections, durationS, results })
}

process.on('SIGINT', () => { void stopEverything().finally(() => process.exit(130)) })
process.on('SIGTERM', () => { void stopEverything().finally(() => process.exit(143)) })
process.on('exit', () => killEverythingSync())
main().catch(err => {
  process.stderr.write(`balance: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
