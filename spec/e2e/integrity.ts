/**
 * Byte-for-byte integrity of bodies crossing the proxy: random content and sizes up to several MB,
 * Content-Length and chunked, several pipelined on one connection, uploads and downloads, checked
 * by SHA-256 at both ends. Sizes include the edges (0, 1, one around 64 KiB socket reads).
 */
import t from 'tap'
import { RawClient } from '../helpers/client.js'
import { chunked, randomBody, randomInt, sha256 } from '../helpers/bodies.js'
import { header } from '../helpers/framing.js'
import { ok, startOrigin, type OriginRequest } from '../helpers/origin.js'
import { startProxy } from '../helpers/proxy.js'

const MB = 1 << 20

function sizes (): number[] {
  return [0, 1, 65535, 65537, randomInt(2, 1000), randomInt(100_000, MB), randomInt(MB, 4 * MB), randomInt(2 * MB, 6 * MB)]
}

interface Upload { bytes: Buffer, hash: string, size: number, mode: 'length' | 'chunked' }

function upload (path: string, body: Buffer, mode: 'length' | 'chunked'): Buffer {
  const head = `POST ${path} HTTP/1.1\r\nHost: h\r\n` + (mode === 'chunked' ? 'Transfer-Encoding: chunked\r\n\r\n' : `Content-Length: ${body.length}\r\n\r\n`)
  return Buffer.concat([Buffer.from(head), mode === 'chunked' ? chunked(body, randomInt(1, 200_000)) : body])
}

/** Write `data` in pieces of random sizes: the proxy sees message boundaries anywhere in a read. */
async function writeRandomly (client: RawClient, data: Buffer): Promise<void> {
  let off = 0
  while (off < data.length) {
    const n = Math.min(data.length - off, randomInt(1, 300_000))
    await client.write(data.subarray(off, off + n))
    off += n
  }
}

t.test('uploads: pipelined random bodies, Content-Length and chunked', async t => {
  const origin = await startOrigin(t, req => ok(`${req.bodyLength} ${req.sha256}`))
  const { port } = await startProxy(t, { targets: [origin.target] })
  const uploads: Upload[] = sizes().flatMap((size): Upload[] => {
    const body = randomBody(size)
    return (['length', 'chunked'] as const).map(mode => ({ bytes: upload(`/up/${size}/${mode}`, body, mode), hash: sha256(body), size, mode }))
  })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await writeRandomly(client, Buffer.concat(uploads.map(u => u.bytes)))
  const responses = await client.waitResponses(uploads.length, 20_000)
  t.equal(responses.length, uploads.length, 'every upload answered')
  for (const [i, u] of uploads.entries()) {
    t.equal(responses[i]?.body.toString(), `${u.size} ${u.hash}`, `${u.mode} ${u.size}: origin received the same bytes`)
    const seen = origin.requests.find(r => r.url === `/up/${u.size}/${u.mode}`)
    t.equal(seen?.framing, u.mode, `${u.mode} ${u.size}: framing kept`)
  }
})

/** Downloads are described by their path: /down/<size>/<length|chunked|close>. */
function download (req: OriginRequest) {
  const [, , sizeText, mode] = req.url.split('/')
  const body = randomBody(Number(sizeText))
  const hash = `X-Sha256: ${sha256(body)}\r\n`
  if (mode === 'close') return { bytes: Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\n' + hash + '\r\n'), body]), close: 'end' as const }
  if (mode === 'chunked') return Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\n' + hash + 'Transfer-Encoding: chunked\r\n\r\n'), chunked(body, randomInt(1, 200_000))])
  return Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\n${hash}Content-Length: ${body.length}\r\n\r\n`), body])
}

t.test('downloads: pipelined random bodies, Content-Length and chunked', async t => {
  const origin = await startOrigin(t, download)
  const { port } = await startProxy(t, { targets: [origin.target] })
  const paths = sizes().flatMap(size => [`/down/${size}/length`, `/down/${size}/chunked`])
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  await client.write(paths.map(p => `GET ${p} HTTP/1.1\r\nHost: h\r\n\r\n`).join(''))
  const responses = await client.waitResponses(paths.length, 20_000)
  t.equal(responses.length, paths.length, 'every download answered')
  for (const [i, path] of paths.entries()) {
    const res = responses[i]
    t.equal(res?.sha256, header(res!, 'x-sha256'), `${path}: same bytes`)
    t.equal(res?.bodyLength, Number(path.split('/')[2]), `${path}: same length`)
  }
})

t.test('downloads: close-delimited bodies re-framed for the client, one after another', async t => {
  const origin = await startOrigin(t, download)
  const { port } = await startProxy(t, { targets: [origin.target] })
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  const list = [0, 1, 70_000, randomInt(MB, 3 * MB)]
  for (const [i, size] of list.entries()) {
    await client.write(`GET /down/${size}/close HTTP/1.1\r\nHost: h\r\n\r\n`)
    const res = await client.response(i, 10_000)
    t.equal(res.framing, 'chunked', `${size}: chunked to the client`)
    t.equal(res.sha256, header(res, 'x-sha256'), `${size}: same bytes`)
    t.equal(res.bodyLength, size)
  }
})

t.test('echo: random bodies up and back in one exchange', async t => {
  const origin = await startOrigin(t, req => {
    const chunkedBack = req.url.endsWith('chunked')
    const head = 'HTTP/1.1 200 OK\r\n' + (chunkedBack ? 'Transfer-Encoding: chunked' : `Content-Length: ${req.body.length}`) + '\r\n\r\n'
    return Buffer.concat([Buffer.from(head), chunkedBack ? chunked(req.body, 50_000) : req.body])
  })
  const { port } = await startProxy(t, { targets: [origin.target] })
  const bodies = [randomBody(randomInt(1, 3 * MB)), randomBody(randomInt(1, 3 * MB)), randomBody(randomInt(1, 100))]
  const modes = ['length', 'chunked', 'chunked'] as const
  const client = await RawClient.connect(port)
  t.teardown(() => client.destroy())
  const data = Buffer.concat(bodies.map((b, i) => upload(`/echo/${i}/${modes[i]}`, b, modes[i])))
  await writeRandomly(client, data)
  const responses = await client.waitResponses(bodies.length, 20_000)
  for (const [i, body] of bodies.entries()) {
    t.equal(responses[i]?.sha256, sha256(body), `echo ${i} (${body.length} bytes, ${modes[i]})`)
    t.equal(origin.requests.find(r => r.url.startsWith(`/echo/${i}/`))?.sha256, sha256(body), `echo ${i}: origin side`)
  }
})
