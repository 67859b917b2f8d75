// A proxy in its own process, so that a spec can watch its memory alone. Built code only: the
// spec runs after `npm run build`. Options as JSON in argv[2]; the bound port goes to stdout as
// one JSON line; SIGTERM closes the proxy and exits.
import { createProxy } from '../../dist/lib/index.js'

const options = JSON.parse(process.argv[2])
const proxy = createProxy({ listen: '127.0.0.1:0', ...options })
const address = await proxy.listen()
process.stdout.write(JSON.stringify({ port: address.port, pid: process.pid }) + '\n')

// the parent may be gone without sending a signal: never outlive it
process.stdin.resume()
process.stdin.on('end', () => process.exit(0))
process.on('SIGTERM', () => {
  const force = setTimeout(() => process.exit(1), 3000)
  force.unref()
  proxy.close().then(() => process.exit(0))
})
