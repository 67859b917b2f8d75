/**
 * A tiny authoritative DNS server on UDP 127.0.0.1, for service-discovery specs: it answers A,
 * AAAA and SRV questions from a table the test changes as it goes, NXDOMAIN for names it does not
 * know, and SERVFAIL for names marked failing. Only what `dns.Resolver` (c-ares) asks is handled:
 * one question per query, answers uncompressed but for the question's name.
 */
import dgram from 'node:dgram'
import { isIPv6 } from 'node:net'
import type { Test } from 'tap'

export interface DnsRecords {
  a?: Array<[address: string, ttl: number]>
  aaaa?: Array<[address: string, ttl: number]>
  srv?: Array<{ priority: number, weight: number, port: number, target: string, ttl: number }>
  /** Answer SERVFAIL (the name "stops resolving"). */
  fail?: boolean
}

export class DnsServer {
  readonly socket = dgram.createSocket('udp4')
  readonly zone = new Map<string, DnsRecords>()
  /** Questions received, `NAME TYPE`. */
  readonly questions: string[] = []
  port = 0

  async listen (): Promise<this> {
    this.socket.on('message', (msg, rinfo) => {
      const reply = this.#answer(msg)
      if (reply !== null) this.socket.send(reply, rinfo.port, rinfo.address)
    })
    await new Promise<void>(resolve => this.socket.bind(0, '127.0.0.1', () => resolve()))
    this.port = this.socket.address().port
    return this
  }

  get server (): string { return `127.0.0.1:${this.port}` }

  close (): void { this.socket.close() }

  #answer (msg: Buffer): Buffer | null {
    if (msg.length < 12) return null
    const id = msg.readUInt16BE(0)
    let at = 12
    const labels: string[] = []
    while (at < msg.length && msg[at] !== 0) {
      labels.push(msg.subarray(at + 1, at + 1 + msg[at]).toString('latin1'))
      at += 1 + msg[at]
    }
    at++
    const qtype = msg.readUInt16BE(at)
    const questionEnd = at + 4
    const name = labels.join('.').toLowerCase()
    this.questions.push(`${name} ${({ 1: 'A', 28: 'AAAA', 33: 'SRV' } as Record<number, string>)[qtype] ?? qtype}`)
    const records = this.zone.get(name)
    const answers: Buffer[] = []
    let rcode = 0
    if (records === undefined) rcode = 3
    else if (records.fail === true) rcode = 2
    else if (qtype === 1) for (const [address, ttl] of records.a ?? []) answers.push(rr(1, ttl, Buffer.from(address.split('.').map(Number))))
    else if (qtype === 28) for (const [address, ttl] of records.aaaa ?? []) answers.push(rr(28, ttl, ipv6(address)))
    else if (qtype === 33) {
      for (const s of records.srv ?? []) {
        const fixed = Buffer.alloc(6)
        fixed.writeUInt16BE(s.priority, 0)
        fixed.writeUInt16BE(s.weight, 2)
        fixed.writeUInt16BE(s.port, 4)
        answers.push(rr(33, s.ttl, Buffer.concat([fixed, encodeName(s.target)])))
      }
    }
    const header = Buffer.alloc(12)
    header.writeUInt16BE(id, 0)
    // response, recursion desired and available, authoritative
    header.writeUInt16BE(0x8580 | rcode, 2)
    header.writeUInt16BE(1, 4)
    header.writeUInt16BE(answers.length, 6)
    return Buffer.concat([header, msg.subarray(12, questionEnd), ...answers])
  }
}

/** An answer record for the question's name (a pointer to offset 12). */
function rr (type: number, ttl: number, data: Buffer): Buffer {
  const fixed = Buffer.alloc(12)
  fixed.writeUInt16BE(0xc00c, 0)
  fixed.writeUInt16BE(type, 2)
  fixed.writeUInt16BE(1, 4)
  fixed.writeUInt32BE(ttl, 6)
  fixed.writeUInt16BE(data.length, 10)
  return Buffer.concat([fixed, data])
}

function encodeName (name: string): Buffer {
  return Buffer.concat([...name.split('.').filter(l => l !== '').map(l => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])])
}

function ipv6 (address: string): Buffer {
  if (!isIPv6(address)) throw new Error(`not IPv6: ${address}`)
  const [head, tail = ''] = address.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === '' ? [] : tail.split(':')
  const groups = address.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2))
  return out
}

export async function startDns (t: Test): Promise<DnsServer> {
  const server = await new DnsServer().listen()
  t.teardown(() => server.close())
  return server
}
