/** Loopback socket pairs for specs of socket-level code. */
import net, { type AddressInfo, type Socket } from 'node:net'
import tls from 'node:tls'
import { readFileSync } from 'node:fs'
import type { Test } from 'tap'
import { makeCertificates } from './tls-certs.js'

/** Both ends of one loopback connection: the accepted one (`server`) and the client's, closed with the test. */
export async function socketPair (t: Test, options: net.ServerOpts = {}): Promise<{ server: Socket, client: Socket }> {
  const srv = net.createServer(options)
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<Socket>(resolve => srv.once('connection', resolve))
  const client = net.connect((srv.address() as AddressInfo).port, '127.0.0.1')
  const server = await accepted
  t.teardown(() => { client.destroy(); server.destroy(); srv.close() })
  return { server, client }
}

/** Both ends of one TLS connection on loopback (a certificate made for it): the server's accepted socket and the client's, closed with the test. */
export async function tlsSocketPair (t: Test): Promise<{ server: tls.TLSSocket, client: tls.TLSSocket }> {
  const certificates = await makeCertificates(t)
  const pair = await certificates.issue('localhost', ['localhost', '127.0.0.1'])
  const srv = tls.createServer({ cert: readFileSync(pair.cert), key: readFileSync(pair.key) })
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<tls.TLSSocket>(resolve => srv.once('secureConnection', resolve))
  const client = tls.connect({ port: (srv.address() as AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false })
  t.teardown(() => { client.destroy(); srv.close() })
  const server = await accepted
  t.teardown(() => server.destroy())
  return { server, client }
}
