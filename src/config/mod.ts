/**
 * Loom configuration: loading, validation and normalisation of `loom.yaml`.
 * @module
 */

export { formatErrors, formatWarnings, loadConfig, parseConfig } from "./load.ts";
export { parseDuration } from "./duration.ts";
export type { DurationResult } from "./duration.ts";
export { parseSize } from "./size.ts";
export type { SizeResult } from "./size.ts";
export { expandEnv } from "./env.ts";
export { parseAddress } from "./address.ts";
export type { AddressResult, HostPort } from "./address.ts";
export { loomSchema } from "./schema.ts";
export { loomJsonSchema, schemaText } from "./json_schema.ts";
export type * from "./types.ts";
