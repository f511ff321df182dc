/**
 * The `middleware:` lists (top level and per route): each entry is a mapping
 * with exactly one key, the middleware's name, whose value holds its options:
 *
 * ```yaml
 * middleware:
 *   - headers: { response: { set: { x-frame-options: DENY } } }
 * ```
 *
 * The options of every built-in middleware are declared here, with the rest
 * of the schema (config is data: the middleware folders receive the validated,
 * normalised options). Middleware defined outside Loom's tree add theirs with
 * {@link registerMiddlewareOptions} before the config is loaded.
 *
 * @module
 */
import { type Field, opt, t, type Type } from "./dsl.ts";
import { REQUEST_VARIABLE } from "./env.ts";

/** A middleware entry after validation: its name and normalised options. */
export interface MiddlewareEntry {
  name: string;
  options: unknown;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** A field name: an RFC 9110 token. */
export const headerName = t.string({
  pattern: TOKEN.source,
  patternMessage: "not a valid header field name (RFC 9110 token characters only)",
});

/** A field value template: no CR, LF or NUL; `${...}` only for known request variables. */
export const headerValue = t.string({
  coerce: true,
  check: (v) => {
    if (/[\r\n\0]/.test(v)) return "header values may not contain CR, LF or NUL";
    for (const m of v.matchAll(/\$\{([^}]*)\}/g)) {
      if (!REQUEST_VARIABLE.test(m[1])) {
        return `unknown variable "\${${m[1]}}"; known: client_ip, route_id, request_id, upstream, method, ` +
          "path, host, scheme, header.NAME, query.NAME, jwt.CLAIM";
      }
    }
    return undefined;
  },
});

const headerEdits = t.object({
  set: opt(t.map(headerValue, { keys: headerName }), undefined, "Replace (or add) these fields."),
  add: opt(t.map(headerValue, { keys: headerName }), undefined, "Append these fields."),
  remove: opt(t.list(headerName), undefined, "Drop these fields."),
});

/** Field per middleware name; shared with the entry type below, so registrations made later apply. */
const fields: Record<string, Field> = {
  headers: opt(
    t.object({
      request: opt(headerEdits, undefined, "Edits of the request head sent upstream."),
      response: opt(headerEdits, undefined, "Edits of the response head sent to the client."),
    }),
    undefined,
    "Add, set or remove request and response header fields.",
  ),
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
