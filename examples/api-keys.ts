// A filter written in TypeScript: an API-key check before anything goes upstream, a header for
// the backend in place of the key, a response header, and one log line per request. The README
// shows this file; spec/examples.ts runs it.
import { createProxy, type Filter, type Proxy } from 'rp4'

const KEYS = new Map([['k-123', 'billing'], ['k-456', 'search']])

/** Stands for a call to a key service: a hook may return a promise, and rp4 waits for it. */
async function teamOf (key: string): Promise<string | undefined> {
  await new Promise(resolve => setTimeout(resolve, 1))
  return KEYS.get(key)
}

export const apiKeys: Filter = {
  name: 'api-keys',
  async onRequest (session) {
    const team = await teamOf(session.request.headers.get('x-api-key') ?? '')
    if (team === undefined) {
      return session.respond(401, { 'Content-Type': 'application/json' }, '{"error":"a valid X-Api-Key is needed"}\n')
    }
    session.ctx.team = team
    return 'continue'
  },
  onUpstreamRequest (session, head) {
    head.headers.delete('X-Api-Key')
    head.headers.set('X-Team', String(session.ctx.team))
  },
  onResponse (_session, head) {
    head.headers.set('Cache-Control', 'private')
  },
  onLog (session, error) {
    console.log(`${session.client.ip} ${session.request.method} ${session.request.target} ${session.response?.status ?? '-'} ${String(session.ctx.team ?? '-')}${error === null ? '' : ' ' + error.code}`)
  },
}

/** rp4 on `listen` in front of `backend`: /healthz answered by rp4, /api/* behind the key check. */
export async function start (backend: string, listen = '127.0.0.1:8080'): Promise<Proxy> {
  const proxy = createProxy({
    listeners: [{ listen }],
    routes: [
      { match: { pathExact: '/healthz' }, respond: { status: 200, body: 'ok\n' } },
      { match: { path: '/api' }, stripPrefix: '/api', filters: ['api-keys'], proxy: 'app' },
    ],
    upstreams: { app: { targets: [backend] } },
    filters: [apiKeys],
  })
  await proxy.listen()
  return proxy
}
