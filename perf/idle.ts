/**
 * Memory per idle keep-alive connection: rp4's RSS with N idle client connections open (each
 * after one request, so its per-connection state has been through a full exchange) minus
 * its RSS before, divided by N. Target: at most 4 KiB per connection at 10,000 connections.
 *
 * Two readings with the connections open, both after rp4 parked them (timeouts.clientPark): RSS
 * as it stands, and RSS after a full garbage collection. What a connection gave up when it was
 * parked is garbage until V8's next full collection, which a process that only holds connections
 * may not run for a long time (none within minutes here, with the serving process's initial heap
 * of 128 MiB); the second reading is what the connections themselves keep. The collection is
 * asked for through the inspector (rp4 is started with `--inspect=127.0.0.1:0` in this mode),
 * before the reading without connections too.
 *
 * Both rp4 and the process holding the connections need N file descriptors plus some; the
 * soft limit is raised up to the hard one for them, and the report says what to do when the
 * hard limit itself is too low.
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { runLoad } from './measure.js'
import { WebSocket } from 'undici'
import { CLIENT_CORE, ProcessGroup, sleep, waitForOutput } from './processes.js'
import { treeRss } from './proc-stats.js'
import { startRow, type Tools } from './rows.js'
import { SCENARIOS } from './scenarios.js'

const IDLE_CLIENTS_PATH = fileURLToPath(new URL('./idle-clients.js', import.meta.url))
const TARGET_BYTES = 4096
/** After the last connection opened: past rp4's default timeouts.clientPark (5 s) and a sweep of its clock. */
const PARK_WAIT_MS = 6000
/** Descriptors beyond the connections: upstream sockets, stdio, libuv internals. */
const FD_MARGIN = 1024

export interface IdleResult {
  requested: number
  opened: number
  failed: number
  stillOpenAtEnd: number | null
  rssBeforeBytes: number
  rssWithOpenBytes: number
  bytesPerConnection: number
  /** After a full garbage collection, before and with the connections open (null: the inspector could not be reached). */
  collected: { rssBeforeBytes: number, rssWithOpenBytes: number, bytesPerConnection: number } | null
  targetBytes: number
  meetsTarget: boolean
  fdLimit: { soft: number, hard: number }
  notes: string[]
}

function fdLimits (): { soft: number, hard: number } {
  const probe = spawnSync('sh', ['-c', 'ulimit -Sn; ulimit -Hn'], { encoding: 'utf8' })
  const [soft, hard] = (probe.stdout ?? '').trim().split('\n').map(line => (line === 'unlimited' ? Infinity : Number(line)))
  return { soft: soft ?? 1024, hard: hard ?? 1024 }
}

export async function runIdle (requested: number, originPort: number, tools: Tools, rp4Args: string[], progress: (text: string) => void): Promise<IdleResult> {
  const notes: string[] = []
  const limits = fdLimits()
  // rp4 counts two descriptors per client connection (its own and a backend's: lib/config/open-files.ts)
  // and caps its connections to what its limit allows, so it gets twice as many as the client process
  const needed = 2 * requested + FD_MARGIN
  let count = requested
  if (limits.hard < needed) {
    count = Math.max(0, Math.floor((limits.hard - FD_MARGIN) / 2))
    notes.push(`hard open-files limit ${limits.hard} is below ${needed} (two per connection for rp4): measured ${count} connections instead. ` +
      'Raise it as root before running (ulimit -Hn 65536; or "* hard nofile 65536" in /etc/security/limits.conf, LimitNOFILE= under systemd)')
  } else if (limits.soft < needed) {
    notes.push(`soft open-files limit ${limits.soft} raised to ${needed} for rp4 and ${requested + FD_MARGIN} for the client process`)
  }
  if (requested < 10_000) notes.push('the 4 KiB target is stated for 10,000 connections; fewer make the figure noisier')
  if (count > 28_000) notes.push('more than ~28,000 connections from one address may exhaust the ephemeral port range (net.ipv4.ip_local_port_range)')
  const nofile = Math.min(limits.hard, count + FD_MARGIN)
  const rp4Nofile = Math.min(limits.hard, 2 * count + FD_MARGIN)
  // a long client idle timeout, when rp4 has the flag: the connections must outlive the measurement
  const idleFlag = tools.rp4.flags.includes('--client-idle-timeout') ? ['--client-idle-timeout', '10m'] : []
  // every connection comes from one address: the connection caps, when rp4 has them, must let them all in
  if (tools.rp4.flags.includes('--max-connections-per-ip')) {
    idleFlag.push('--max-connections', String(count + 100), '--max-connections-per-ip', String(count + 100))
  }

  const group = new ProcessGroup()
  try {
    const rp4 = await startRow('rp4', { mode: 'http', originPort, group, tools, rp4Args: [...idleFlag, ...rp4Args], nofile: rp4Nofile, nodeArgs: ['--inspect=127.0.0.1:0'] })
    const pid = rp4.pid ?? 0
    // printed before rp4's listening line, which startRow waited for
    const inspector = /Debugger listening on (ws:\/\/\S+)/.exec(rp4.child?.stderrTail.join('\n') ?? '')?.[1] ?? null
    if (inspector === null) notes.push('the inspector did not answer: no reading after a full garbage collection')
    // the baseline is a warmed proxy: code compiled, pools and buffers in place
    progress('idle: warming rp4')
    await runLoad(group, SCENARIOS[0].load, rp4.port, 1)
    await sleep(1500)
    const rssBeforeBytes = treeRss(pid)
    const collectedBefore = await collectedRss(inspector, pid)

    progress(`idle: opening ${count} connections`)
    const clients = group.spawn('idle-clients', process.execPath,
      [IDLE_CLIENTS_PATH, '--port', String(rp4.port), '--count', String(count)], { core: CLIENT_CORE, captureStdout: true, nofile })
    const opened = await waitForOutput(clients, 'stdout', /\{"open":(\d+),"failed":(\d+)/, 120_000)
    // let allocations made while opening settle, and rp4 park the connections (5 s idle by default)
    await sleep(PARK_WAIT_MS)
    const rssWithOpenBytes = treeRss(pid)
    const collectedWithOpen = await collectedRss(inspector, pid)

    const stillOpen = waitForOutput(clients, 'stdout', /"stillOpen":(\d+)/, 5000).catch(() => null)
    clients.process.kill('SIGTERM')
    const stillOpenMatch = await stillOpen
    await group.stopAll()

    const openCount = Number(opened[1])
    const perConnection = (before: number, after: number): number => openCount > 0 ? Math.round((after - before) / openCount) : 0
    const bytesPerConnection = perConnection(rssBeforeBytes, rssWithOpenBytes)
    const collected = collectedBefore === null || collectedWithOpen === null
      ? null
      : { rssBeforeBytes: collectedBefore, rssWithOpenBytes: collectedWithOpen, bytesPerConnection: perConnection(collectedBefore, collectedWithOpen) }
    const stillOpenAtEnd = stillOpenMatch === null ? null : Number(stillOpenMatch[1])
    if (stillOpenAtEnd !== null && stillOpenAtEnd < openCount) {
      notes.push(`${openCount - stillOpenAtEnd} connections were closed by rp4 before the end: the figure is a lower bound`)
    }
    return {
      requested,
      opened: openCount,
      failed: Number(opened[2]),
      stillOpenAtEnd,
      rssBeforeBytes,
      rssWithOpenBytes,
      bytesPerConnection,
      collected,
      targetBytes: TARGET_BYTES,
      meetsTarget: (collected?.bytesPerConnection ?? bytesPerConnection) <= TARGET_BYTES && openCount === requested,
      fdLimit: limits,
      notes,
    }
  } finally {
    await group.stopAll()
  }
}

/**
 * A full garbage collection in the process behind `inspector` (HeapProfiler.collectGarbage), then
 * its RSS; null without an inspector or when it does not answer.
 */
async function collectedRss (inspector: string | null, pid: number): Promise<number | null> {
  if (inspector === null) return null
  const ws = new WebSocket(inspector)
  try {
    const answered = await new Promise<boolean>(resolve => {
      const timer = setTimeout(() => resolve(false), 10_000)
      ws.onerror = () => { clearTimeout(timer); resolve(false) }
      ws.onopen = () => ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }))
      ws.onmessage = (event: { data: unknown }) => {
        if (typeof event.data === 'string' && (JSON.parse(event.data) as { id?: number }).id === 1) {
          clearTimeout(timer)
          resolve(true)
        }
      }
    })
    if (!answered) return null
  } finally {
    ws.close()
  }
  // what the collection freed goes back to the kernel as it is swept
  await sleep(500)
  return treeRss(pid)
}
