/**
 * The `node` row of the harness (perf/run.ts): the least a Node process can do for a scenario's
 * job, in the same run as rp4, so that every report separates what Node itself costs from what
 * rp4 adds on top.
 *
 * - `relay` (the HTTP and TCP passthrough scenarios): per client connection, a connection to the
 *   origin, the two `net` sockets piped both ways. No parsing, nothing added: the cheapest way
 *   Node can stand between a client and a backend.
 * - `files` DIR (the static-file scenarios) and `fetched` (the cache scenarios): the response for
 *   each path kept in memory (the file's bytes under a fixed head, or the origin's own response,
 *   fetched once at start), written for each request head found in a read. Nothing is parsed
 *   beyond finding where each head ends and the path in its request line.
 *
 *   node dist/perf/node-floor.js relay ORIGIN_PORT
 *   node dist/perf/node-floor.js files DIR
 *   node dist/perf/node-floor.js fetched ORIGIN_PORT PATH...
 *
 * It says "listening on 127.0.0.1:PORT" on stderr when ready.
 */
import { readFileSync } from 'node:fs'
import net, { type AddressInfo, type Socket } from 'node:net'
import { join, normalize } from 'node:path'

const HEAD_END = Buffer.from('\r\n\r\n')
/** How the harness's load generator asks for a new connection per request. */
const CLOSE = Buffer.from('\r\nConnection: close\r\n')
const NOT_FOUND = Buffer.from('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n')

function relay (originPort: number): net.Server {
  return net.createServer(client => {
    client.setNoDelay(true)
    const origin = net.connect(originPort, '127.0.0.1')
    origin.setNoDelay(true)
    client.pipe(origin)
    origin.pipe(client)
    client.on('error', () => origin.destroy())
    origin.on('error', () => client.destroy())
  })
}

/** A server answering each request head with `answer(path)`. */
function answering (answer: (path: string) => Buffer): net.Server {
  return net.createServer(client => {
    client.setNoDelay(true)
    let carry: Buffer | null = null
    client.on('data', (chunk: Buffer) => {
      const data = carry === null ? chunk : Buffer.concat([carry, chunk])
      let start = 0
      let close = false
      for (let end = data.indexOf(HEAD_END); end !== -1; end = data.indexOf(HEAD_END, start)) {
        const first = data.indexOf(0x20, start)
        const second = first === -1 ? -1 : data.indexOf(0x20, first + 1)
        const path = second === -1 || second > end ? '' : data.toString('latin1', first + 1, second)
        client.write(answer(path))
        const asked = data.indexOf(CLOSE, start)
        if (asked !== -1 && asked < end + 2) close = true
        start = end + HEAD_END.length
      }
      carry = start < data.length ? data.subarray(start) : null
      if (close) client.end()
    })
    client.on('error', () => client.destroy())
  })
}

/** A file of `dir` under a fixed head, read on its first request. */
function files (dir: string): net.Server {
  const kept = new Map<string, Buffer>()
  return answering(path => {
    let response = kept.get(path)
    if (response === undefined) {
      const file = normalize(join(dir, path))
      if (!file.startsWith(dir)) return NOT_FOUND
      try {
        const body = readFileSync(file)
        response = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`), body])
      } catch {
        return NOT_FOUND
      }
      kept.set(path, response)
    }
    return response
  })
}

/** The origin's response to `GET path`, whole, without its Connection field. */
async function fetchOnce (originPort: number, path: string): Promise<Buffer> {
  const socket: Socket = net.connect(originPort, '127.0.0.1')
  socket.write(`GET ${path} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n`)
  const chunks: Buffer[] = []
  for await (const chunk of socket) chunks.push(chunk as Buffer)
  const whole = Buffer.concat(chunks)
  const end = whole.indexOf(HEAD_END)
  if (end === -1) throw new Error(`no response head from the origin for ${path}`)
  const head = whole.toString('latin1', 0, end).split('\r\n').filter(line => !/^connection:/i.test(line)).join('\r\n')
  return Buffer.concat([Buffer.from(head, 'latin1'), whole.subarray(end)])
}

async function main (): Promise<void> {
  const [mode, arg, ...paths] = process.argv.slice(2)
  let server: net.Server
  if (mode === 'relay') server = relay(Number(arg))
  else if (mode === 'files') server = files(normalize(arg))
  else if (mode === 'fetched') {
    const kept = new Map<string, Buffer>()
    for (const path of paths) kept.set(path, await fetchOnce(Number(arg), path))
    server = answering(path => kept.get(path) ?? NOT_FOUND)
  } else {
    throw new Error(`node-floor: unknown mode "${mode}" (relay, files, fetched)`)
  }
  server.listen(0, '127.0.0.1', 4096, () => {
    process.stderr.write(`listening on 127.0.0.1:${(server.address() as AddressInfo).port}\n`)
  })
}

process.on('SIGTERM', () => process.exit(0))
main().catch(err => {
  process.stderr.write(`node-floor: ${(err as Error).message}\n`)
  process.exit(1)
})
