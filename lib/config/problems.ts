/**
 * What is wrong with a configuration, each problem tied to the key path the user wrote, so that
 * every front end can point at it its own way: a file as `rp4.yaml:14:12: routes[1].proxy: ...`,
 * the CLI by the flag as typed (`--tcp-idle-timeout 25h: at most 24h`), the library by the option.
 */

export type Path = ReadonlyArray<string | number>

export interface Problem {
  path: Path
  message: string
  /** The offending value as the user wrote it, in their units; shown before the message. */
  value?: string
  /** What to point at in a file: the key (an unknown key), or its value (the default). */
  at?: 'key' | 'value'
  /** A key missing under `path`; `message`, when not empty, says what it is for. */
  missing?: string
  /** The other key of a conflict, named where the message says `{with}`. */
  with?: Path
}

/** `routes[2].match.hots`, `upstreams.api.targets[0]`, `tls.passthrough["db.example.com"]`. */
export function formatPath (path: Path): string {
  let out = ''
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`
    else if (/^[A-Za-z_$][\w$-]*$/.test(part)) out += (out === '' ? '' : '.') + part
    else out += `[${JSON.stringify(part)}]`
  }
  return out
}

/** `path: value: message`, or without the parts that are empty. */
export function describe (problem: Problem): string {
  const where = formatPath(problem.path)
  const text = problem.missing !== undefined
    ? `missing ${problem.missing}${problem.message !== '' ? ` (${problem.message})` : ''}`
    : (problem.value !== undefined ? `${problem.value}: ` : '') + problem.message.replace('{with}', formatPath(problem.with ?? []))
  return where === '' ? text : `${where}: ${text}`
}

/** At most this many problems are listed; the rest are counted, so a huge broken file cannot flood a terminal. */
export const MAX_LISTED = 100

export function listProblems (lines: readonly string[]): string {
  if (lines.length <= MAX_LISTED) return lines.join('\n')
  return [...lines.slice(0, MAX_LISTED), `... and ${lines.length - MAX_LISTED} more problems`].join('\n')
}

/** Thrown with every problem found, not only the first; `message` has one line per problem. */
export class ConfigError extends TypeError {
  readonly problems: readonly Problem[]
  /** The lines of `message`, as rendered for where the configuration came from. */
  readonly lines: readonly string[]

  constructor (problems: readonly Problem[], render: (problem: Problem) => string = p => 'option ' + describe(p)) {
    const lines = problems.map(render)
    super(listProblems(lines))
    this.name = 'ConfigError'
    this.problems = problems
    this.lines = lines
  }
}

/** A short, exact rendering of a value the user gave, for "got ..." messages. */
export function show (value: unknown): string {
  if (value === null || value === undefined) return 'nothing'
  if (typeof value === 'string') return JSON.stringify(value)
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  return String(value)
}

/** The closest of `candidates` to a misspelt `word`, if one is close enough to be what was meant. */
export function suggest (word: string, candidates: Iterable<string>): string | null {
  let best: string | null = null
  let bestDistance = Infinity
  const lower = word.toLowerCase()
  for (const candidate of candidates) {
    const d = distance(lower, candidate.toLowerCase())
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best !== null && bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : null
}

/** Optimal string alignment distance: a swap of two letters (`hots`) counts as one edit. */
function distance (a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return Infinity
  const d: number[][] = []
  for (let i = 0; i <= a.length; i++) d.push([i])
  for (let j = 1; j <= b.length; j++) d[0][j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  }
  return d[a.length][b.length]
}

export interface ValidateContext {
  /** Names of the filters the library user registered (`createProxy({ filters })`); none from the CLI. */
  filters?: Iterable<string>
}

/** Paths whose value was found wrong: nothing under them is checked again. */
export class BadPaths {
  readonly #keys = new Set<string>()

  add (path: Path): void {
    this.#keys.add(JSON.stringify(path))
  }

  /** `path` or a path above it was found wrong. */
  has (path: Path): boolean {
    for (let i = path.length; i >= 0; i--) {
      if (this.#keys.has(JSON.stringify(path.slice(0, i)))) return true
    }
    return false
  }
}
