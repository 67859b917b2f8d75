/**
 * Turning results into what a reader sees: the table on stdout, the ratios of rp4 against the
 * other rows, and the same data as JSON. Nothing here measures anything.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import type { RowResult } from './measure.js'
import type { RowName } from './rows.js'
import type { MainMetric } from './scenarios.js'

export interface ScenarioResult {
  id: number
  title: string
  load: string
  main: MainMetric
  /** Set when the whole scenario did not run. */
  skipped?: string
  rows: RowResult[]
}

export interface Ratio {
  scenario: number
  metric: MainMetric
  against: RowName
  /** rp4's figure divided by the other row's; for latency, above 1 means rp4 is slower. */
  value: number
}

export function formatLatency (micros: number): string {
  if (micros <= 0) return '-'
  if (micros < 1000) return `${micros}µs`
  if (micros < 100_000) return `${(micros / 1000).toFixed(2)}ms`
  return `${(micros / 1000).toFixed(0)}ms`
}

export function formatBytes (bytes: number | null): string {
  if (bytes === null || bytes <= 0) return '-'
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KiB`
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`
}

function percent (share: number): string {
  return `${Math.round(share * 100)}%`
}

function formatNumber (value: number, digits: number): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

const COLUMNS = ['row', 'req/s', 'MB/s', 'p50', 'p99', 'p99.9', 'errors', 'CPU µs/req', 'proxy CPU', 'peak RSS', 'gen CPU', 'other load'] as const

function rowCells (row: RowResult): string[] {
  if (row.status !== 'ok') return [row.row, `${row.status}: ${row.note ?? ''}`]
  return [
    row.row,
    formatNumber(row.rps, 0),
    formatNumber(row.mbps, 1),
    formatLatency(row.p50Us),
    formatLatency(row.p99Us),
    formatLatency(row.p999Us),
    String(row.errors),
    row.cpuUsPerRequest === null ? '-' : formatNumber(row.cpuUsPerRequest, 1),
    row.proxyCoreShare === null ? '-' : percent(row.proxyCoreShare),
    formatBytes(row.peakRssBytes),
    percent(row.loadgenCoreShare),
    percent(row.otherLoad),
  ]
}

/** Fixed-width columns; a skipped or failed row's note runs across the figures. */
function table (rows: string[][]): string {
  const widths = COLUMNS.map((title, i) => Math.max(title.length, ...rows.filter(r => r.length > 2).map(r => (r[i] ?? '').length)))
  const line = (cells: readonly string[]): string => {
    if (cells.length === 2) return `  ${cells[0].padEnd(widths[0])}  ${cells[1]}`
    return '  ' + cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ')
  }
  return [line(COLUMNS), line(COLUMNS.map((_, i) => '-'.repeat(widths[i]))), ...rows.map(line)].join('\n')
}

function mainValue (row: RowResult, metric: MainMetric): number {
  switch (metric) {
    case 'rps': return row.rps
    case 'mbps': return row.mbps
    case 'p50': return row.p50Us
  }
}

export function ratios (scenarios: ScenarioResult[]): Ratio[] {
  const result: Ratio[] = []
  for (const scenario of scenarios) {
    const rp4 = scenario.rows.find(row => row.row === 'rp4' && row.status === 'ok')
    if (rp4 === undefined) continue
    for (const other of scenario.rows) {
      if (other.row === 'rp4' || other.status !== 'ok') continue
      const base = mainValue(other, scenario.main)
      if (base > 0) result.push({ scenario: scenario.id, metric: scenario.main, against: other.row, value: mainValue(rp4, scenario.main) / base })
    }
  }
  return result
}

const METRIC_NAMES: Record<MainMetric, string> = {
  rps: 'req/s (higher is better)',
  mbps: 'MB/s (higher is better)',
  p50: 'p50 latency (lower is better)',
}

export function renderText (scenarios: ScenarioResult[], ratioList: Ratio[]): string {
  const parts: string[] = []
  for (const scenario of scenarios) {
    parts.push(`\n[${scenario.id}] ${scenario.title} — ${scenario.load}`)
    if (scenario.skipped !== undefined) {
      parts.push(`  skipped: ${scenario.skipped}`)
      continue
    }
    parts.push(table(scenario.rows.map(rowCells)))
  }
  parts.push('\nrp4 ratios on each scenario\'s main figure:')
  if (ratioList.length === 0) parts.push('  none (rp4 did not run)')
  for (const scenario of scenarios) {
    const mine = ratioList.filter(r => r.scenario === scenario.id)
    if (mine.length === 0) continue
    const text = mine.map(r => `rp4/${r.against} ${r.value.toFixed(2)}`).join(', ')
    parts.push(`  [${scenario.id}] ${METRIC_NAMES[scenario.main]}: ${text}`)
  }
  return parts.join('\n') + '\n'
}

export function writeJson (file: string, data: unknown): void {
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, JSON.stringify(data, null, 2) + '\n')
}
