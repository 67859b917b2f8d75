/**
 * TLS session tickets as a client sees them: one from a full handshake, and whether a handshake
 * offering it was resumed.
 */
import { once } from 'node:events'
import tls from 'node:tls'
import { within } from './wait.js'

export type TlsVersion = 'TLSv1.2' | 'TLSv1.3'

/** A full handshake with `servername`, and the ticket the server sent in it. */
export async function sessionTicket (port: number, ca: Buffer, maxVersion: TlsVersion, servername = 'a.test'): Promise<Buffer> {
  const first = tls.connect({ host: '127.0.0.1', port, servername, ca, maxVersion })
  const session = once(first, 'session')
  await within(once(first, 'secureConnect'), 5000, 'full handshake')
  // TLS 1.3 sends its tickets after the handshake: a request makes sure they were read
  first.write(`GET / HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`)
  const [ticket] = await within(session, 5000, 'a session ticket') as [Buffer]
  first.destroy()
  return ticket
}

/** A handshake offering `ticket`: true when the server resumed the session. */
export async function resumesWith (port: number, ca: Buffer, ticket: Buffer, maxVersion: TlsVersion, servername = 'a.test'): Promise<boolean> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername, ca, maxVersion, session: ticket })
  await within(once(socket, 'secureConnect'), 5000, 'handshake')
  const reused = socket.isSessionReused()
  socket.destroy()
  return reused
}
