/** Seeded random numbers (mulberry32, perf/random.ts): specs that draw random inputs repeat the same ones, so a failure repeats. */
export { prng as seeded } from '../../perf/random.js'
