/**
 * examples/tls.yaml, the example of the README's TLS section: it loads, says what it means, and
 * the README shows it as it is.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { loadConfig } from '../../lib/config/load.js'
import { ROOT } from '../helpers/proxy.js'

t.test('examples/tls.yaml → Model', async t => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rp4-tls-example-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'tls.yaml')
  copyFileSync(path.join(ROOT, 'examples/tls.yaml'), file)
  mkdirSync(path.join(dir, 'certs'))
  mkdirSync(path.join(dir, 'ca'))
  for (const name of ['certs/partners.pem', 'certs/partners.key', 'ca/partners-ca.pem']) writeFileSync(path.join(dir, name), 'PEM')

  const { model } = loadConfig(file)
  const [https, http, partners] = model.listeners
  t.same(https.tls?.acme, {
    names: ['example.com', 'www.example.com'],
    patterns: [],
    email: 'ops@example.com',
    directory: 'https://acme-v02.api.letsencrypt.org/directory',
    storage: path.join(dir, 'acme'),
    challenges: ['tls-alpn-01', 'http-01'],
  }, 'storage relative to the file; Let\'s Encrypt by default')
  t.equal(https.tls?.profile, 'intermediate')
  t.equal(https.tls?.hsts, 'max-age=31536000')
  t.equal(https.tls?.cleartext, 'redirect')
  t.equal(https.tls?.ticketKeyRotation, 12 * 3_600_000)
  t.equal(https.tls?.ocspStapling, true)
  t.equal(https.tls?.sessionCache, 10 * 1024 * 1024)
  t.equal(https.tls?.sessionTimeout, 24 * 3_600_000)
  t.equal(partners.tls?.sessionCache, 10 * 1024 * 1024, 'on by default')
  t.equal(http.redirectToHttps, true)
  t.same(partners.tls?.clientCertificates, {
    caFiles: [path.join(dir, 'ca/partners-ca.pem')],
    ca: [Buffer.from('PEM')],
    mode: 'require',
    onFailure: 'handshake',
    subjectHeader: null,
    fingerprintHeader: 'X-Client-Fingerprint',
  })
  t.equal(partners.tls?.cleartext, 'refuse')
  t.same(partners.routes, ['partners'])
})

t.test('the README shows examples/tls.yaml as it is', async t => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const example = readFileSync(path.join(ROOT, 'examples/tls.yaml'), 'utf8')
  t.ok(readme.includes('```yaml\n' + example + '```\n'), 'examples/tls.yaml, verbatim, in a yaml block')
})
