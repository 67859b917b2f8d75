/**
 * What parking costs (timeouts.clientPark, lib/downstream/parked.ts): keep-alive connections that
 * each send a request, then wait longer than the park timeout, then send the next, so that every
 * request after the first wakes a parked connection (a socket, a connection object and a parser
 * made again). Two rp4 processes on the proxy core, one parking after 50 ms and one never
 * (`--client-park-timeout 0`), get the same load at the same time from this process: C
 * connections each, a request every P ms per connection. Reported: each side's CPU µs per
 * request, their ratio, and the RSS of each.
 *
 * Usage: node dist/perf/park-cost.js [--connections 200] [--period 250] [--seconds 10]
 */
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { CLIENT_CORE, ProcessGroup, sleep, waitForStderr } from './processes.js'
import { treeCpuSeconds, treeRss } from './proc-stats.js'
import { detectTools, startRow } from './rows.js'

const ORIGIN_PATH = fileURLToPath(new URL('./origin.js', import.meta.url))
const REQUEST = Buffer.from('GET /small HTTP/1.1\r\nHost: bench\r\n\r\n', 'latin1')

interface Side { name: string, port: number, pid: number, requests: number, errors: number }

/** One keep-alive connection sending a request every `period` ms until `end`; each response counted. */
async function client (side: Side, period: number, end: number): Promise<void> {
  const socket = net.connect(side.port, '127.0.0.1')
  socket.setNoDelay(true)
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  let pending: (() => void) | null = null
  let text = ''
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1')
    // the origin's /small: one Content-Length response per request; a response ends with its body's newline
    const head = text.indexOf('\r\n\r\n')
    const length = /content-length: (\d+)/i.exec(text)
    if (head !== -1 && length !== null && text.length >= head + 4 + Number(length[1])) {
      text = text.slice(head + 4 + Number(length[1]))
      side.requests++
      pending?.()
    }
  })
  socket.on('error', () => { side.errors++ })
  // spread the connections over the period
  await sleep(Math.random() * period)
  while (Date.now() < end && !socket.destroyed) {
    const answered = new Promise<void>(resolve => { pending = resolve })
    socket.write(REQUEST)
    await Promise.race([answered, sleep(5000)])
    await sleep(period)
  }
  socket.destroy()
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { connections: { type: 'string', default: '200' }, period: { type: 'string', default: '250' }, seconds: { type: 'string', default: '10' } } })
  const connections = Number(values.connections)
  const period = Number(values.period)
  const seconds = Number(values.seconds)
  if (!(connections >= 1 && connections <= 5000) || !(period >= 100) || !(seconds > 0 && seconds <= 120)) {
    throw new Error('--connections 1–5000, --period at least 100 (ms, past the 50 ms park timeout and a sweep), --seconds up to 120')
  }
  const group = new ProcessGroup()
  try {
    const origin = group.spawn('origin', process.execPath, [ORIGIN_PATH], { core: CLIENT_CORE })
    const originPort = Number((await waitForStderr(origin, /listening on (\S+):(\d+)/, 10_000))[2])
    const tools = detectTools()
    const start = async (name: string, park: string): Promise<Side> => {
      const row = await startRow('rp4', { mode: 'http', originPort, group, tools, rp4Args: ['--client-park-timeout', park, '--client-idle-timeout', '10m'] })
      return { name, port: row.port, pid: row.pid ?? 0, requests: 0, errors: 0 }
    }
    const parking = await start('parking after 50 ms', '50ms')
    const never = await start('never parking', '0')
    const sides = [parking, never]
    // warm-up: both sides' code compiled
    await Promise.all(sides.flatMap(side => Array.from({ length: 20 }, async () => await client(side, 20, Date.now() + 1500))))
    for (const side of sides) side.requests = 0
    const cpuBefore = sides.map(side => treeCpuSeconds(side.pid))
    const end = Date.now() + seconds * 1000
    await Promise.all(sides.flatMap(side => Array.from({ length: connections }, async () => await client(side, period, end))))
    const cpu = sides.map((side, i) => treeCpuSeconds(side.pid) - cpuBefore[i])
    const perRequest = sides.map((side, i) => cpu[i] * 1e6 / Math.max(1, side.requests))
    for (const [i, side] of sides.entries()) {
      console.log(`${side.name}: ${side.requests} requests (${side.errors} errors), ${perRequest[i].toFixed(1)} CPU µs per request, RSS ${(treeRss(side.pid) / 1048576).toFixed(1)} MiB`)
    }
    console.log(`parking / never: ${(perRequest[0] / perRequest[1]).toFixed(3)} CPU per request (${connections} connections each, a request every ${period} ms on each, ${seconds} s)`)
  } finally {
    await group.stopAll()
  }
}

main().catch((err: Error) => {
  console.error(`park-cost: ${err.message}`)
  process.exitCode = 1
})
