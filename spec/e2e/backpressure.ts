/**
 * Backpressure, both ways: a body of hundreds of MB, generated on the fly, crosses the proxy to a
 * reader slower than the writer. The proxy runs in its own process so that its resident memory can
 * be watched alone: it must stay far below the body size (nothing buffered whole), and the body
 * must arrive intact.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { RawClient } from '../helpers/client.js'
import { GeneratedBody } from '../helpers/bodies.js'
import { ok, startOrigin } from '../helpers/origin.js'
import { ROOT, checkBuilt } from '../helpers/proxy.js'
import { within } from '../helpers/wait.js'

const MB = 1 << 20
const BODY = 300 * MB
/** The slow side reads this fast; the fast side could go ten times faster. */
const SLOW_RATE = 80 * MB
const MAX_GROWTH = 64 * MB

function rss (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status)
  return m === null ? 0 : Number(m[1]) * 1024
}

interface ChildProxy { port: number, pid: number, child: ChildProcess }

/** The proxy in a child process, from the build, killed with the test. */
async function startChildProxy (t: Test, options: object): Promise<ChildProxy> {
  const script = path.join(ROOT, 'spec/helpers/proxy-child.mjs')
  const child = spawn(process.execPath, [script, JSON.stringify(options)], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const line = await within(new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('\n')) resolve(out.split('\n')[0])
    })
    child.on('exit', code => reject(new Error(`proxy child exited with ${code}`)))
  }), 10_000, 'the proxy child to listen')
  const { port, pid } = JSON.parse(line) as { port: number, pid: number }
  return { port, pid, child }
}

/** Peak RSS of `pid` while `work` runs, sampled every 25 ms. */
async function peakDuring<T> (pid: number, work: Promise<T>): Promise<{ result: T, peak: number }> {
  let peak = rss(pid)
  const timer = setInterval(() => { peak = Math.max(peak, rss(pid)) }, 25)
  try {
    const result = await work
    peak = Math.max(peak, rss(pid))
    return { result, peak }
  } finally {
    clearInterval(timer)
  }
}

function canRun (t: Test): boolean {
  if (!existsSync('/proc/self/status')) {
    t.fail('this spec reads /proc/PID/status (Linux)')
    return false
  }
  return checkBuilt(t, 'dist/lib/index.js')
}

t.test(`download: ${BODY / MB} MB to a slow client`, async t => {
  if (!canRun(t)) return
  const body = new GeneratedBody(BODY)
  const origin = await startOrigin(t, req => req.url === '/warm'
    ? ok('warm')
    : { bytes: `HTTP/1.1 200 OK\r\nContent-Length: ${BODY}\r\n\r\n`, stream: body })
  const proxy = await startChildProxy(t, { targets: [origin.target] })

  // one small exchange first, so that the baseline includes everything a first request loads
  const warm = await RawClient.connect(proxy.port)
  await warm.write('GET /warm HTTP/1.1\r\nHost: h\r\n\r\n')
  await warm.response(0)
  warm.destroy()
  const baseline = rss(proxy.pid)

  const client = await RawClient.connect(proxy.port, { readRate: SLOW_RATE, keep: MB })
  t.teardown(() => client.destroy())
  await client.write('GET /big HTTP/1.1\r\nHost: h\r\n\r\n')
  const { result: res, peak } = await peakDuring(proxy.pid, client.response(0, 60_000))
  t.equal(res.bodyLength, BODY, 'every byte arrived')
  t.equal(res.sha256, body.digest(), 'the same bytes (SHA-256)')
  const growth = peak - baseline
  t.ok(growth < MAX_GROWTH, `proxy RSS grew by ${(growth / MB).toFixed(1)} MB (baseline ${(baseline / MB).toFixed(1)} MB) for a ${BODY / MB} MB body`)
})

t.test(`upload: ${BODY / MB} MB (chunked) to a slow origin`, async t => {
  if (!canRun(t)) return
  const origin = await startOrigin(t, req => ok(`${req.bodyLength} ${req.sha256}`), { readRate: SLOW_RATE, keep: MB })
  const proxy = await startChildProxy(t, { targets: [origin.target] })

  const warm = await RawClient.connect(proxy.port)
  await warm.write('POST /warm HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n')
  await warm.response(0)
  warm.destroy()
  const baseline = rss(proxy.pid)

  const body = new GeneratedBody(BODY, { chunkedFraming: true })
  const client = await RawClient.connect(proxy.port, { keep: MB })
  t.teardown(() => client.destroy())
  await client.write('POST /big HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n')
  body.pipe(client.socket, { end: false })
  const { result: res, peak } = await peakDuring(proxy.pid, client.response(0, 60_000))
  t.equal(res.body.toString(), `${BODY} ${body.digest()}`, 'the origin received every byte, the same (SHA-256)')
  const growth = peak - baseline
  t.ok(growth < MAX_GROWTH, `proxy RSS grew by ${(growth / MB).toFixed(1)} MB (baseline ${(baseline / MB).toFixed(1)} MB) for a ${BODY / MB} MB body`)
})
