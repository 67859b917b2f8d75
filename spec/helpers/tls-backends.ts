/**
 * Backends for the TCP, detection and TLS specs, on port 0, closed with the test: a raw TCP
 * server that records and answers per connection, and a TLS server that terminates itself (so a
 * test can check what handshake reached it through rp4).
 */
import net from 'node:net'
import tls from 'node:tls'
import { once } from 'node:events'
import type { Test } from 'tap'
import { Observable, within } from './wait.js'

export class TcpConn {
  readonly socket: net.Socket
  readonly chunks: Buffer[] = []
  ended = false
  closed = false
  /** TLS backends: the SNI the client sent. */
  servername: string | false = false

  constructor (socket: net.Socket) {
    this.socket = socket
  }

  get data (): Buffer { return Buffer.concat(this.chunks) }
}

export class TcpBackend extends Observable {
  readonly server: net.Server
  readonly conns: TcpConn[] = []
  port = 0

  constructor (server: net.Server) {
    super()
    this.setMaxListeners(0)
    this.server = server
  }

  get target (): string { return `127.0.0.1:${this.port}` }

  track (socket: net.Socket, onConnection?: (conn: TcpConn) => void): TcpConn {
    const conn = new TcpConn(socket)
    this.conns.push(conn)
    socket.on('data', chunk => { conn.chunks.push(chunk); this.changed() })
    socket.on('end', () => { conn.ended = true; this.changed() })
    socket.on('error', () => {})
    socket.on('close', () => { conn.closed = true; this.changed() })
    onConnection?.(conn)
    this.changed()
    return conn
  }

  /** Connection `i` exists and `predicate` holds for it. */
  async conn (i: number, predicate: (conn: TcpConn) => boolean = () => true, ms = 5000, label = `backend connection ${i}`): Promise<TcpConn> {
    await this.until(() => this.conns[i] !== undefined && predicate(this.conns[i]), ms, label)
    return this.conns[i]
  }
}

async function listen (t: Test, backend: TcpBackend, host = '127.0.0.1'): Promise<TcpBackend> {
  backend.server.listen(0, host)
  await within(once(backend.server, 'listening'), 5000, 'backend listening')
  backend.port = (backend.server.address() as net.AddressInfo).port
  t.teardown(async () => {
    for (const conn of backend.conns) conn.socket.destroy()
    await new Promise<void>(resolve => backend.server.close(() => resolve()))
  })
  return backend
}

/** A raw TCP backend (half-open allowed); `onConnection` may greet, echo, or do nothing. */
export async function startTcpBackend (t: Test, onConnection?: (conn: TcpConn) => void): Promise<TcpBackend> {
  let backend: TcpBackend | null = null
  const server = net.createServer({ allowHalfOpen: true }, socket => backend!.track(socket, onConnection))
  backend = new TcpBackend(server)
  return await listen(t, backend)
}

/** A TLS backend with its own certificate; `onConnection` runs once the handshake is done. */
export async function startTlsBackend (t: Test, options: tls.TlsOptions, onConnection?: (conn: TcpConn) => void): Promise<TcpBackend> {
  let backend: TcpBackend | null = null
  const server = tls.createServer({ allowHalfOpen: true, ...options }, socket => {
    const conn = backend!.track(socket)
    conn.servername = socket.servername ?? false
    onConnection?.(conn)
  })
  server.on('tlsClientError', () => {})
  backend = new TcpBackend(server)
  return await listen(t, backend)
}

/** Echo every byte back, and pass a FIN back once every byte was echoed. */
export function echo (conn: TcpConn): void {
  conn.socket.on('data', chunk => conn.socket.write(chunk))
  conn.socket.on('end', () => conn.socket.end())
}

/** Connect a plain client (half-open allowed) and collect what it receives. */
export async function connectRaw (port: number, host = '127.0.0.1'): Promise<{ socket: net.Socket, conn: TcpConn, watch: Observable }> {
  const socket = net.connect({ port, host, allowHalfOpen: true, noDelay: true })
  await within(once(socket, 'connect'), 5000, 'connect to the proxy')
  const watch = new Observable()
  watch.setMaxListeners(0)
  const conn = new TcpConn(socket)
  socket.on('data', chunk => { conn.chunks.push(chunk); watch.changed() })
  socket.on('end', () => { conn.ended = true; watch.changed() })
  socket.on('error', () => {})
  socket.on('close', () => { conn.closed = true; watch.changed() })
  return { socket, conn, watch }
}
