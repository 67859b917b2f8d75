/** The object (client connection, upstream connection, relay) that owns a socket, for module-level listeners. */
export const kOwner = Symbol('rp4.owner')

/**
 * The client a trusted PROXY protocol header named, set on the accepted socket (and on the TLS
 * socket over it): what every layer takes as the client's address instead of the peer's.
 */
export const kPeer = Symbol('rp4.peer')

export interface Peer { ip: string, port: number }

/** The client's IP and port: the PROXY header's when there was one, the socket's peer otherwise (IPv4-mapped IPv6 as IPv4). */
export function peerOf (socket: import('node:net').Socket): Peer {
  const carried = (socket as unknown as { [kPeer]?: Peer })[kPeer]
  if (carried !== undefined) return carried
  return { ip: unmapped(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 }
}

/** The address and port the client reached (IPv4-mapped IPv6 as IPv4): a PROXY header's destination. */
export function localOf (socket: import('node:net').Socket): Peer {
  return { ip: unmapped(socket.localAddress ?? ''), port: socket.localPort ?? 0 }
}

/** `::ffff:192.0.2.1` (an IPv4 client on a dual-stack socket) → `192.0.2.1`; others as they are. */
function unmapped (address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}

/** `IP:PORT`, `[IPv6]:PORT`. */
export function peerLabel (peer: Peer): string {
  return (peer.ip.includes(':') ? '[' + peer.ip + ']' : peer.ip) + ':' + peer.port
}
