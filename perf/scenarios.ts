/**
 * The scenarios: each is a load shape plus the figure that sums it up. The same shape is
 * sent to every row, so rows differ only in what sits between the generator and the origin.
 */
import type { ProxyMode } from './configs.js'

export interface LoadSpec {
  connections: number
  pipeline: number
  path: string
  /** Request body bytes (POST); 0 for GET. */
  bodySize: number
  /** A fresh connection per request instead of keep-alive. */
  newConn: boolean
  /** Accept-Encoding sent with each request (compression scenarios). */
  acceptEncoding?: string
}

/** The figure quoted in the ratios: throughput for most, median latency for the 1-connection case. */
export type MainMetric = 'rps' | 'mbps' | 'p50'

export interface Scenario {
  id: number
  title: string
  mode: ProxyMode
  load: LoadSpec
  main: MainMetric
}

const SMALL_50: LoadSpec = { connections: 50, pipeline: 1, path: '/small', bodySize: 0, newConn: false }
const MIB = 1024 * 1024

export const SCENARIOS: readonly Scenario[] = [
  { id: 1, title: 'small GET, 50 keep-alive connections', mode: 'http', load: SMALL_50, main: 'rps' },
  {
    id: 2,
    title: 'small GET, 1 connection (latency)',
    mode: 'http',
    load: { ...SMALL_50, connections: 1 },
    main: 'p50',
  },
  {
    id: 3,
    title: '1 MiB responses, 8 connections',
    mode: 'http',
    load: { ...SMALL_50, connections: 8, path: '/1m' },
    main: 'mbps',
  },
  {
    id: 4,
    title: '1 MiB uploads, 8 connections',
    mode: 'http',
    load: { ...SMALL_50, connections: 8, path: '/upload', bodySize: MIB },
    main: 'mbps',
  },
  {
    id: 5,
    title: 'new connection per request, 16 connections',
    mode: 'http',
    load: { ...SMALL_50, connections: 16, newConn: true },
    main: 'rps',
  },
  {
    id: 6,
    title: 'TCP passthrough, scenario 1 load',
    mode: 'tcp',
    load: SMALL_50,
    main: 'rps',
  },
  // web acceleration: each row does the same job (nginx: gzip, proxy_cache, root)
  {
    id: 7,
    title: '100 KiB JSON compressed with gzip, 8 connections',
    mode: 'compress',
    load: { ...SMALL_50, connections: 8, path: '/json100k', acceptEncoding: 'gzip' },
    main: 'rps',
  },
  {
    id: 8,
    title: '100 KiB JSON compressed with brotli, 8 connections',
    mode: 'compress-br',
    load: { ...SMALL_50, connections: 8, path: '/json100k', acceptEncoding: 'br' },
    main: 'rps',
  },
  {
    id: 9,
    title: 'cache hit, small response, 50 connections',
    mode: 'cache',
    load: { ...SMALL_50, path: '/cached/small' },
    main: 'rps',
  },
  {
    id: 10,
    title: 'cache hit, 1 MiB response, 8 connections',
    mode: 'cache',
    load: { ...SMALL_50, connections: 8, path: '/cached/1m' },
    main: 'mbps',
  },
  {
    id: 11,
    title: 'static file, small, 50 connections',
    mode: 'static',
    load: { ...SMALL_50, path: '/small' },
    main: 'rps',
  },
  {
    id: 12,
    title: 'static file, 1 MiB, 8 connections',
    mode: 'static',
    load: { ...SMALL_50, connections: 8, path: '/1m' },
    main: 'mbps',
  },
  {
    id: 13,
    title: 'TCP passthrough, new connection per request, 16 connections',
    mode: 'tcp',
    load: { ...SMALL_50, connections: 16, newConn: true },
    main: 'rps',
  },
  {
    id: 14,
    title: 'TCP passthrough, 1 MiB responses, 8 connections',
    mode: 'tcp',
    load: { ...SMALL_50, connections: 8, path: '/1m' },
    main: 'mbps',
  },
]

export function loadgenArgs (load: LoadSpec, port: number, durationS: number): string[] {
  const args = [
    '--port', String(port),
    '--connections', String(load.connections),
    '--pipeline', String(load.pipeline),
    '--duration', String(durationS),
    '--path', load.path,
  ]
  if (load.bodySize > 0) args.push('--body-size', String(load.bodySize))
  if (load.newConn) args.push('--new-conn')
  if (load.acceptEncoding !== undefined) args.push('--accept-encoding', load.acceptEncoding)
  return args
}

export function describeLoad (load: LoadSpec): string {
  const parts = [`${load.connections} conn`, load.newConn ? 'new conn/request' : 'keep-alive']
  if (load.pipeline > 1) parts.push(`pipeline ${load.pipeline}`)
  parts.push(load.bodySize > 0 ? `POST ${load.path} ${load.bodySize} B` : `GET ${load.path}`)
  if (load.acceptEncoding !== undefined) parts.push(`Accept-Encoding: ${load.acceptEncoding}`)
  return parts.join(', ')
}
