/**
 * Certificates made at test time with the openssl CLI, in a temporary directory removed when the
 * test file ends: a private CA, and leaf certificates it signs for the names a test needs (EC
 * P-256 keys: fast to make).
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import type { Test } from 'tap'

const run = promisify(execFile)

export interface Pair {
  cert: string
  key: string
}

export interface Certificates {
  dir: string
  ca: Pair
  /** Issue a leaf for these names (DNS names, or IP addresses) under `name` in the directory. */
  issue (name: string, names: string[]): Promise<Pair>
}

async function openssl (args: string[], cwd: string): Promise<void> {
  await run('openssl', args, { cwd })
}

/** A CA in a fresh temporary directory, removed at the end of `t`. */
export async function makeCertificates (t: Test): Promise<Certificates> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rp4-tls-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const ca = { cert: path.join(dir, 'ca.pem'), key: path.join(dir, 'ca.key') }
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', ca.key, '-out', ca.cert, '-days', '2', '-subj', '/CN=rp4 test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir)
  let serial = 1
  const issue = async (name: string, names: string[]): Promise<Pair> => {
    const pair = { cert: path.join(dir, name + '.pem'), key: path.join(dir, name + '.key') }
    const csr = path.join(dir, name + '.csr')
    const ext = path.join(dir, name + '.ext')
    const san = names.map(n => (/^[\d.]+$|:/.test(n) ? 'IP:' : 'DNS:') + n).join(',')
    await writeFile(ext, `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${san}\n`)
    await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', pair.key, '-out', csr, '-subj', `/CN=${names[0]}`], dir)
    await openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', String(serial++),
      '-days', '2', '-extfile', ext, '-out', pair.cert], dir)
    return pair
  }
  return { dir, ca, issue }
}

/** SHA-256 fingerprint of a PEM certificate file, as `getPeerCertificate().fingerprint256` shows it. */
export function fingerprint (certFile: string): string {
  return new X509Certificate(readFileSync(certFile)).fingerprint256
}
