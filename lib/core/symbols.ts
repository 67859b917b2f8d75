/** The object (client connection, upstream connection, relay) that owns a socket, for module-level listeners. */
export const kOwner = Symbol('rp4.owner')
