/**
 * The `middleware:` lists (top level and per route): each entry is a mapping
 * with exactly one key, the middleware's name, whose value holds its options:
 *
 * ```yaml
 * middleware:
 *   - headers: { response: { set: { x-frame-options: DENY } } }
 * ```
 *
 * The options of every built-in middleware are declared in this folder, one
 * file each, with the rest of the schema (config is data: the middleware folders receive the validated,
 * normalised options). Middleware defined outside Loom's tree add theirs with
 * {@link registerMiddlewareOptions} before the config is loaded.
 *
 * @module
 */
import { type Field, opt, t, type Type } from "../dsl.ts";
import { headersOptions, securityHeadersOptions } from "./headers.ts";
import { corsOptions } from "./cors.ts";
import { ipFilterOptions } from "./ip_filter.ts";
import { basicAuthOptions } from "./basic_auth.ts";
import { forwardAuthOptions } from "./forward_auth.ts";
import { mtlsOptions } from "./mtls.ts";
import { jwtOptions } from "./jwt.ts";
import { apiKeyOptions } from "./api_key.ts";
import { bodyLimitOptions } from "./body_limit.ts";
import { compressOptions } from "./compress.ts";
import { rateLimitOptions } from "./rate_limit.ts";
import { mirrorOptions } from "./mirror.ts";
import { faultOptions } from "./fault.ts";
import { cacheOptions } from "./cache.ts";

/** A middleware entry after validation: its name and normalised options. */
export interface MiddlewareEntry {
  name: string;
  options: unknown;
}

/** Field per middleware name; shared with the entry type below, so registrations made later apply. */
const fields: Record<string, Field> = {
  headers: headersOptions,
  security_headers: securityHeadersOptions,
  cors: corsOptions,
  ip_filter: ipFilterOptions,
  basic_auth: basicAuthOptions,
  forward_auth: forwardAuthOptions,
  mtls: mtlsOptions,
  jwt: jwtOptions,
  api_key: apiKeyOptions,
  body_limit: bodyLimitOptions,
  compress: compressOptions,
  rate_limit: rateLimitOptions,
  mirror: mirrorOptions,
  fault: faultOptions,
  cache: cacheOptions,
};

/** Declares the options of a middleware named `name` (used by middleware outside the built-in set). */
export function registerMiddlewareOptions(name: string, options: Type, description?: string): void {
  fields[name] = opt(options, undefined, description);
}

/** One list entry: `{<name>: <options>}` normalised to `{name, options}`. */
export const middlewareEntry: Type = t.object(fields, {
  minFields: 1,
  maxFields: 1,
  description: "One middleware: its name as the only key, its options as the value ({} for none).",
  normalize: (v: Record<string, unknown>): MiddlewareEntry => {
    const name = Object.keys(v)[0];
    return { name, options: v[name] };
  },
});

/** A `middleware:` list. */
export const middlewareList: Field = opt(
  t.list(middlewareEntry),
  [],
  "Middleware run in list order (top-level ones before a route's own).",
);
