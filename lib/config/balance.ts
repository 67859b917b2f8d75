/**
 * The balancing settings as people write them: a policy name (`--balance hash:header:X-User`)
 * and a backend with its options (`--to 10.0.0.1:80,weight=3,backup`). Both return an error
 * message instead of throwing, so that the CLI and the file loader word errors their own way.
 */
import type { BalanceModel } from '../model/model.js'
import { parseTarget } from './address.js'

export const POLICIES = 'round-robin, least-conn, p2c, p2c-latency, hash:ip, hash:uri, hash:header:NAME, hash:cookie:NAME'

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** A policy (the load factor of hashing given apart), or why not. */
export function parseBalance (text: string, loadFactor: number): BalanceModel | string {
  const value = text.trim()
  switch (value.toLowerCase()) {
    case 'round-robin': return { kind: 'round-robin' }
    case 'least-conn': case 'least-request': return { kind: 'least-conn' }
    case 'p2c': return { kind: 'p2c', latency: false }
    case 'p2c-latency': return { kind: 'p2c', latency: true }
    case 'hash:ip': return { kind: 'hash', by: 'ip', name: '', loadFactor }
    case 'hash:uri': return { kind: 'hash', by: 'uri', name: '', loadFactor }
  }
  const keyed = /^hash:(header|cookie):(.*)$/i.exec(value)
  if (keyed !== null) {
    const by = keyed[1].toLowerCase() as 'header' | 'cookie'
    const name = keyed[2]
    if (name === '') return `"${text}" names no ${by}: write hash:${by}:NAME`
    // a cookie name is a token too (RFC 6265 §4.1.1)
    if (!TOKEN.test(name)) return `"${name}" in "${text}" is not a ${by} name`
    return { kind: 'hash', by, name, loadFactor }
  }
  return `"${text}" is not a balancing policy (${POLICIES})`
}

export interface TargetSpec {
  address: string
  weight?: number
  backup?: boolean
}

/** `ADDRESS[,weight=N][,backup]`: the command line's way of giving a backend its options. */
export function parseTargetSpec (text: string): TargetSpec | string {
  const [address, ...options] = text.split(',')
  const parsed = parseTarget(address)
  if (typeof parsed === 'string') return parsed
  const spec: TargetSpec = { address: address.trim() }
  for (const raw of options) {
    const option = raw.trim()
    if (option.toLowerCase() === 'backup') {
      spec.backup = true
      continue
    }
    const weight = /^weight=(\d{1,4})$/i.exec(option)
    if (weight !== null) {
      const n = Number(weight[1])
      if (n < 1 || n > 1000) return `weight ${n} in "${text}" is out of range (1-1000)`
      spec.weight = n
      continue
    }
    return `"${option}" in "${text}" is not a backend option (weight=N, backup)`
  }
  return spec
}

/** `200-399,404`: inclusive ranges of statuses, or why not. */
export function parseStatusRanges (text: string): Array<[number, number]> | string {
  const ranges: Array<[number, number]> = []
  for (const part of text.split(',')) {
    const m = /^\s*(\d{3})\s*(?:-\s*(\d{3})\s*)?$/.exec(part)
    if (m === null) return `"${part.trim()}" in "${text}" is not a status or a range of them (200-399)`
    const low = Number(m[1])
    const high = m[2] === undefined ? low : Number(m[2])
    if (low < 100 || high > 599 || high < low) return `"${part.trim()}" in "${text}" is not a range of statuses between 100 and 599`
    ranges.push([low, high])
  }
  return ranges
}

/** `--health-check`: a path, or `tcp`. */
export function checkHealthShorthand (text: string): string | null {
  if (text === 'tcp') return null
  return text.startsWith('/') && !/[\s\0]/.test(text) ? null : `"${text}" is neither a path (/healthz) nor tcp`
}
