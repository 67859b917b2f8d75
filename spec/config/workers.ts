/**
 * `workers` and `workerScheduling`: auto is one per core unless RP4_WORKERS says otherwise, a
 * number is taken as given, anything else is refused naming the key or the flag.
 */
import os from 'node:os'
import t from 'tap'
import { buildModel } from '../../lib/config/build.js'
import { ConfigError } from '../../lib/config/problems.js'
import { flagsToOptions, parseCommandLine } from '../../lib/config/flags.js'

const BASE = { listen: '127.0.0.1:0', targets: ['127.0.0.1:1'] }

function withEnv<T> (value: string | undefined, run: () => T): T {
  const saved = process.env.RP4_WORKERS
  if (value === undefined) delete process.env.RP4_WORKERS
  else process.env.RP4_WORKERS = value
  try {
    return run()
  } finally {
    if (saved === undefined) delete process.env.RP4_WORKERS
    else process.env.RP4_WORKERS = saved
  }
}

function problems (run: () => unknown): string[] {
  try {
    run()
  } catch (err) {
    if (err instanceof ConfigError) return [...err.lines]
    throw err
  }
  return []
}

t.test('auto: one per core, or RP4_WORKERS; a number as given; the kernel spreads connections by default', async t => {
  t.equal(withEnv(undefined, () => buildModel(BASE).workers), os.availableParallelism())
  t.equal(withEnv(undefined, () => buildModel({ ...BASE, workers: 'auto' }).workers), os.availableParallelism())
  t.equal(withEnv('3', () => buildModel(BASE).workers), 3)
  t.equal(withEnv('auto', () => buildModel(BASE).workers), os.availableParallelism())
  t.equal(withEnv('3', () => buildModel({ ...BASE, workers: 5 }).workers), 5, 'the file wins over the environment')
  t.equal(buildModel(BASE).workerScheduling, 'kernel')
  t.equal(buildModel({ ...BASE, workerScheduling: 'round-robin' }).workerScheduling, 'round-robin')
})

t.test('refused: 0, 1025, a fraction, a word, a bad RP4_WORKERS, an unknown policy', async t => {
  t.same(problems(() => buildModel({ ...BASE, workers: 0 })), ['option workers: 0: at least 1'])
  t.same(problems(() => buildModel({ ...BASE, workers: 1025 })), ['option workers: 1025: at most 1024'])
  t.match(problems(() => buildModel({ ...BASE, workers: 1.5 })), [/^option workers: must be auto or a whole number of processes from 1 to 1024/])
  t.match(problems(() => buildModel({ ...BASE, workers: 'many' as 'auto' })), [/^option workers: must be auto or a whole number of processes from 1 to 1024, got "many"/])
  t.same(withEnv('0', () => problems(() => buildModel(BASE))), ['option workers: auto: the environment\'s RP4_WORKERS="0" must be auto or a whole number from 1 to 1024'])
  t.match(problems(() => buildModel({ ...BASE, workerScheduling: 'random' as 'kernel' })), [/^option workerScheduling: must be one of round-robin, kernel/])
})

t.test('--workers N and auto, --worker-scheduling', async t => {
  const options = (args: string[]): Record<string, unknown> => flagsToOptions('127.0.0.1:0', parseCommandLine(['listen', '127.0.0.1:0', '--to', '127.0.0.1:1', ...args])) as Record<string, unknown>
  t.equal(options(['--workers', '4']).workers, 4)
  t.equal(options(['--workers', 'auto']).workers, 'auto')
  t.equal(options(['--worker-scheduling', 'kernel']).workerScheduling, 'kernel')
  t.throws(() => options(['--workers', 'x']), /--workers: must be auto or a whole number of processes from 1 to 1024, got "x"/)
  t.throws(() => options(['--workers', '0']), /--workers 0: at least 1/)
})
