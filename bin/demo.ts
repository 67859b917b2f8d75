/**
 * `rp4 demo`: a small origin on a free loopback port and rp4 in front of it, so that a fresh
 * checkout shows the proxy at work with nothing else running. The origin uses node:http on
 * purpose: the demo shows rp4 in front of an ordinary Node server.
 */
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { describeSystemError } from '../lib/core/errors.js'
import { createProxy } from '../lib/index.js'

const PAGE = `<!doctype html>
<title>rp4 demo origin</title>
<h1>Hello through rp4</h1>
<p>This page comes from the demo origin; rp4 relayed it. Try <a href="/headers">/headers</a>
(what the origin received, with rp4's X-Forwarded-* and Via) or <a href="/stream">/stream</a> (a chunked body).</p>
`

function startOrigin (): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url === '/headers') {
      res.setHeader('Content-Type', 'application/json')
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.rawHeaders }, null, 2) + '\n')
    } else if (req.url === '/stream') {
      res.setHeader('Content-Type', 'text/plain')
      let n = 0
      const timer = setInterval(() => {
        res.write(`chunk ${++n}\n`)
        if (n === 5) {
          clearInterval(timer)
          res.end()
        }
      }, 100)
      res.on('close', () => clearInterval(timer))
    } else if (req.method === 'POST') {
      // echo the body back
      res.setHeader('Content-Type', req.headers['content-type'] ?? 'application/octet-stream')
      req.pipe(res)
    } else {
      res.setHeader('Content-Type', 'text/html; charset=utf-8')
      res.end(PAGE)
    }
  })
  return new Promise(resolve => server.listen(0, '127.0.0.1', () => resolve(server)))
}

/** Ask the proxy for `/` once, with a raw socket, and return the status line and headers. */
function selfCheck (port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', chunk => {
      data += chunk
      const end = data.indexOf('\r\n\r\n')
      if (end !== -1) {
        socket.destroy()
        resolve(data.slice(0, end))
      }
    })
    socket.on('error', reject)
    socket.write('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
  })
}

export async function runDemo (listen: string): Promise<void> {
  const origin = await startOrigin()
  const originPort = (origin.address() as AddressInfo).port
  const proxy = createProxy({ listen, targets: [`127.0.0.1:${originPort}`] })
  proxy.on('response', info => process.stderr.write(`  ${info.client} "${info.method} ${info.url}" ${info.status} ${info.duration.toFixed(1)}ms\n`))
  const address = await proxy.listen().catch((err: Error) => {
    origin.close()
    throw new Error(`cannot listen on ${listen}: ${describeSystemError(err)}`)
  })
  const port = address.port
  const host = address.family === 'IPv6' ? (address.address === '::' ? 'localhost' : `[${address.address}]`) : address.address
  const base = `http://${host === '0.0.0.0' ? 'localhost' : host}:${port}`
  process.stderr.write(`rp4 demo: origin on 127.0.0.1:${originPort}, rp4 listening on ${host}:${port} → try:\n` +
    `  curl -i ${base}/\n  curl ${base}/headers\n  curl -N ${base}/stream\n` +
    `rp4 demo: one request through the proxy now:\n`)
  const head = await selfCheck(port)
  process.stderr.write(head.split('\r\n').map(line => '  < ' + line).join('\n') + '\n' +
    'rp4 demo: running; Ctrl-C stops it\n')
  await new Promise<void>(resolve => {
    const stop = (): void => { void proxy.close().then(() => origin.close(() => resolve())) }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
}
