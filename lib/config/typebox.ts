/**
 * TypeBox, the one way rp4's code reaches it: the schema's builders (schema.ts) and the validator
 * (validate.ts). The build (bin/bundle.mjs) writes this module as one file with TypeBox inside:
 * imported from node_modules, TypeBox's 266 modules took every process 120 ms and 12 MiB of RSS
 * to load, bundled 17 ms and 1.3 MiB. The specs, run from the sources, import it unbundled.
 */
export { Kind, Type } from '@sinclair/typebox'
export { TypeCompiler } from '@sinclair/typebox/compiler'
export { ValueErrorType } from '@sinclair/typebox/errors'
export { Value } from '@sinclair/typebox/value'
