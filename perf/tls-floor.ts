/**
 * The floor of the TLS rows (perf/tls-handshakes.ts): Node's own TLS server (`tls.createServer`,
 * the profile rp4 uses, tickets on, no session cache) answering every request with a fixed
 * response, no backend, no parsing beyond finding the end of a head. What any Node server pays
 * for a handshake and a TLS request; rp4 adds its own work on top.
 *
 *   node dist/perf/tls-floor.js CERT KEY   → "listening on 127.0.0.1:PORT" on stderr
 */
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import tls, { type TLSSocket } from 'node:tls'
import { profileOptions } from '../lib/tls/profile.js'

const [cert, key] = process.argv.slice(2)
const RESPONSE = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')

const server = tls.createServer({ ...profileOptions('intermediate', null), cert: readFileSync(cert), key: readFileSync(key), ALPNProtocols: ['http/1.1'] }, socket => {
  socket.on('data', onData)
  socket.on('error', ignore)
})

function onData (this: TLSSocket, chunk: Buffer): void {
  // one head per request: the clients of the harness send GETs without bodies
  for (let at = chunk.indexOf('\r\n\r\n'); at !== -1; at = chunk.indexOf('\r\n\r\n', at + 4)) this.write(RESPONSE)
  if (/connection: close/i.test(chunk.toString('latin1'))) this.end()
}

function ignore (): void {}

server.listen(0, '127.0.0.1', () => {
  process.stderr.write(`listening on 127.0.0.1:${(server.address() as AddressInfo).port}\n`)
})
process.on('SIGTERM', () => process.exit(0))
