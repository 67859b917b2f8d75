/**
 * TCP passthrough (`tcp: true`): bytes both ways unchanged, half-close, server-first protocols,
 * round robin with failover, the idle timeout, and memory that stays bounded while hundreds of MB
 * cross towards slow readers (the proxy in its own process, its RSS read from /proc).
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { once } from 'node:events'
import path from 'node:path'
import type net from 'node:net'
import { GeneratedBody, sha256 } from '../helpers/bodies.js'
import { startProxy, unusedPort, checkBuilt, ROOT } from '../helpers/proxy.js'
import { connectRaw, echo, startTcpBackend, type TcpConn } from '../helpers/tls-backends.js'
import { within } from '../helpers/wait.js'

const MB = 1 << 20

t.test('bytes both ways unchanged, with half-close in each direction', async t => {
  const fromBackend = randomBytes(3 * MB + 17)
  // the backend answers only after the client's FIN: that direction keeps flowing after it
  const backend = await startTcpBackend(t, conn => {
    conn.socket.on('end', () => {
      conn.socket.write(sha256(conn.data) + '\n')
      conn.socket.end(fromBackend)
    })
  })
  const { port } = await startProxy(t, { targets: [backend.target], tcp: true })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  const upload = randomBytes(5 * MB + 3)
  client.socket.end(upload)
  await client.watch.until(() => client.conn.ended, 10_000, 'the backend\'s FIN through the proxy')
  const received = client.conn.data
  t.equal(received.subarray(0, 65).toString(), sha256(upload) + '\n', 'the backend received the upload intact, then the FIN')
  t.equal(sha256(received.subarray(65)), sha256(fromBackend), 'the client received the download intact after its own FIN')
  await client.watch.until(() => client.conn.closed, 5000, 'client socket closed')
  await backend.conn(0, c => c.closed, 5000, 'backend socket closed')
  t.pass('both sockets closed once both directions were done')
})

t.test('the backend half-closes first: the client keeps sending', async t => {
  const backend = await startTcpBackend(t, conn => {
    conn.socket.end('bye early\n')
    conn.socket.on('end', () => { /* the client's FIN: the socket closes by itself */ })
  })
  const { port } = await startProxy(t, { targets: [backend.target], tcp: true })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  await client.watch.until(() => client.conn.ended, 5000, 'the backend\'s FIN')
  t.equal(client.conn.data.toString(), 'bye early\n')
  const late = randomBytes(MB)
  client.socket.end(late)
  const conn = await backend.conn(0, c => c.ended, 5000, 'the client\'s bytes and FIN after the backend\'s FIN')
  t.equal(sha256(conn.data), sha256(late), 'bytes sent after the backend\'s FIN arrive')
  await client.watch.until(() => client.conn.closed, 5000, 'client closed')
})

t.test('server-first protocol: the backend\'s greeting arrives without the client saying anything', async t => {
  const backend = await startTcpBackend(t, conn => {
    conn.socket.write('220 smtp.test ESMTP ready\r\n')
    conn.socket.on('data', () => { if (conn.data.toString().endsWith('QUIT\r\n')) conn.socket.end('221 bye\r\n') })
  })
  const { port } = await startProxy(t, { targets: [backend.target], tcp: true })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  await client.watch.until(() => client.conn.data.length > 0, 5000, 'greeting')
  t.equal(client.conn.data.toString(), '220 smtp.test ESMTP ready\r\n')
  client.socket.write('QUIT\r\n')
  await client.watch.until(() => client.conn.ended, 5000, 'the backend\'s answer and FIN')
  t.equal(client.conn.data.toString(), '220 smtp.test ESMTP ready\r\n221 bye\r\n')
})

t.test('several targets: round robin, failover past one that refuses', async t => {
  const greet = (name: string) => (conn: TcpConn): void => { conn.socket.end(name) }
  const a = await startTcpBackend(t, greet('a'))
  const b = await startTcpBackend(t, greet('b'))
  const dead = `127.0.0.1:${await unusedPort()}`
  const { port, events } = await startProxy(t, { targets: [a.target, dead, b.target], tcp: true })
  const names: string[] = []
  for (let i = 0; i < 6; i++) {
    const client = await connectRaw(port)
    await client.watch.until(() => client.conn.ended, 5000, `connection ${i} answered`)
    names.push(client.conn.data.toString())
    client.socket.end()
  }
  t.same(names.slice().sort(), ['a', 'a', 'a', 'b', 'b', 'b'], 'every connection reached a live backend, spread evenly')
  t.ok(events.upstreamErrors.some(e => e.target === dead && e.error.code === 'connect_failed'), 'the refusing target is reported')
})

t.test('every target refuses: the client connection is closed', async t => {
  const { port, events } = await startProxy(t, { targets: [`127.0.0.1:${await unusedPort()}`], tcp: true })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  // the client allows half-open: the proxy's FIN shows as 'end'
  await client.watch.until(() => client.conn.ended || client.conn.closed, 5000, 'the proxy closing the client connection')
  t.equal(client.conn.data.length, 0, 'nothing was sent to the client')
  t.equal(events.upstreamErrors[0]?.error.code, 'connect_failed')
})

t.test('idle timeout: a silent relay closes both sides; traffic keeps it open', async t => {
  const backend = await startTcpBackend(t, echo)
  const { port, proxy } = await startProxy(t, { targets: [backend.target], tcp: true, timeouts: { tcpIdle: 300 } })
  const client = await connectRaw(port)
  t.teardown(() => client.socket.destroy())
  // traffic every 100ms for longer than the idle timeout: still open
  let silentSince = 0
  for (let i = 0; i < 6; i++) {
    if (i > 0) await new Promise(resolve => setTimeout(resolve, 100))
    client.socket.write(`ping ${i}\n`)
    await client.watch.until(() => client.conn.data.toString().includes(`ping ${i}\n`), 2000, `echo ${i}`)
    silentSince = performance.now()
  }
  t.notOk(client.conn.ended || client.conn.closed, 'open while bytes flow')
  t.equal(proxy.stats().tcp, 1)
  await client.watch.until(() => client.conn.ended || client.conn.closed, 3000, 'the idle relay closed')
  // the relay's clock is coarse (50ms sweeps): allow for one sweep
  t.ok(performance.now() - silentSince >= 240, 'closed only after the idle timeout')
  await backend.conn(0, c => c.closed, 3000, 'backend side closed too')
  t.equal(proxy.stats().tcp, 0, 'the relay is forgotten')
})

/** Read `socket` at about `rate` bytes/s, hashing: a slow reader that the sender must wait for. */
function slowRead (socket: net.Socket, rate: number): Promise<{ bytes: number, hash: string }> {
  const hash = createHash('sha256')
  let bytes = 0
  const started = performance.now()
  return new Promise((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk)
      bytes += chunk.length
      const ahead = bytes / rate * 1000 - (performance.now() - started)
      if (ahead > 20) {
        socket.pause()
        setTimeout(() => socket.resume(), ahead)
      }
    })
    socket.on('end', () => resolve({ bytes, hash: hash.digest('hex') }))
    socket.on('error', reject)
  })
}

function rss (pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return match === null ? 0 : Number(match[1]) * 1024
}

t.test('large transfers both ways through slow readers: memory stays bounded, bytes intact', async t => {
  if (!checkBuilt(t, 'dist/lib/index.js')) return
  const TOTAL = 192 * MB
  const RATE = 48 * MB
  const down = new GeneratedBody(TOTAL)
  const backendRead: Array<Promise<{ bytes: number, hash: string }>> = []
  const backend = await startTcpBackend(t, conn => {
    conn.socket.removeAllListeners('data') // read by the slow reader below, not buffered in the helper
    // the backend's FIN follows the download's last byte (below), whichever transfer ends first
    backendRead.push(slowRead(conn.socket, RATE))
    down.pipe(conn.socket, { end: false })
    down.on('end', () => conn.socket.end())
  })
  const child = spawn(process.execPath, [path.join(ROOT, 'spec/helpers/proxy-child.mjs'), JSON.stringify({ targets: [backend.target], tcp: true })],
    { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const [line] = await within(once(child.stdout, 'data') as Promise<[Buffer]>, 10_000, 'the proxy child starting')
  const { port, pid } = JSON.parse(line.toString()) as { port: number, pid: number }

  const client = await connectRaw(port)
  client.socket.removeAllListeners('data')
  const baseline = rss(pid)
  let peak = baseline
  const sampler = setInterval(() => { peak = Math.max(peak, rss(pid)) }, 50)
  t.teardown(() => clearInterval(sampler))
  const up = new GeneratedBody(TOTAL)
  up.pipe(client.socket)
  const downloaded = slowRead(client.socket, RATE)
  await backend.until(() => backendRead.length > 0, 5000, 'the backend connection')
  const [got, uploaded] = await within(Promise.all([downloaded, backendRead[0]]), 30_000, 'both transfers')
  clearInterval(sampler)
  t.equal(got.bytes, TOTAL, 'download: every byte')
  t.equal(got.hash, down.digest(), 'download: same SHA-256')
  t.equal(uploaded.bytes, TOTAL, 'upload: every byte')
  t.equal(uploaded.hash, up.digest(), 'upload: same SHA-256')
  const growth = peak - baseline
  t.comment(`proxy RSS ${(baseline / MB).toFixed(1)} MB at start, peak ${(peak / MB).toFixed(1)} MB, for ${2 * TOTAL / MB} MB relayed`)
  t.ok(growth < 64 * MB, `RSS grew by ${(growth / MB).toFixed(1)} MB (bounded, far below the ${2 * TOTAL / MB} MB relayed)`)
  client.socket.destroy()
})
