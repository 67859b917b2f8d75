/** Loopback socket pairs for specs of socket-level code. */
import net, { type AddressInfo, type Socket } from 'node:net'
import type { Test } from 'tap'

/** Both ends of one loopback connection: the accepted one (`server`) and the client's, closed with the test. */
export async function socketPair (t: Test): Promise<{ server: Socket, client: Socket }> {
  const srv = net.createServer()
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<Socket>(resolve => srv.once('connection', resolve))
  const client = net.connect((srv.address() as AddressInfo).port, '127.0.0.1')
  const server = await accepted
  t.teardown(() => { client.destroy(); server.destroy(); srv.close() })
  return { server, client }
}
