/**
 * Options of the `api_key` middleware (src/middleware/api_key/). A key given
 * in plain text is replaced by its SHA-256 at load (`sha256:<hex>`), so the
 * normalised config (what `GET /config` shows, what workers receive) never
 * holds a plain key.
 */
import { createHash } from "node:crypto";
import { type Field, opt, req, t } from "../dsl.ts";
import { headerName } from "./headers.ts";

/** A key as stored: `sha256:` and 64 lower-case hex digits. */
export const HASHED_KEY = /^sha256:[0-9a-f]{64}$/;

/** `key` as stored: a `sha256:<hex>` form kept (lower-cased), anything else hashed. */
export function hashApiKey(key: string): string {
  const lower = key.toLowerCase();
  if (HASHED_KEY.test(lower)) return lower;
  return "sha256:" + createHash("sha256").update(key).digest("hex");
}

/** Why `expires` is not a usable date, or undefined. */
export function expiryProblem(v: string): string | undefined {
  return Number.isNaN(Date.parse(v)) ? "not a date (RFC 3339, e.g. 2027-01-31T00:00:00Z)" : undefined;
}

/** A metadata value sent upstream: no CR, LF or NUL. */
const metadataValue = t.string({
  coerce: true,
  check: (v) => /[\r\n\0]/.test(v) ? "header values may not contain CR, LF or NUL" : undefined,
});

/** A header name, or "" for none. */
const headerOrNone = t.string({
  check: (v) =>
    v === "" || /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(v) ? undefined : "not a valid header field name",
});

/** One key (inline, or an entry of `file`). */
export const apiKeyEntry = t.object({
  key: req(
    t.string({
      coerce: true,
      check: (v) => v.length === 0 ? "must not be empty" : undefined,
      normalize: (v: string) => hashApiKey(v),
    }),
    "The key, or `sha256:<hex>` of it; plain keys are hashed at load and never kept.",
  ),
  name: opt(t.string(), undefined, "Consumer name: sent upstream in `name_header`, shown in logs."),
  metadata: opt(
    t.map(metadataValue, { keys: headerName }),
    undefined,
    "Request headers sent upstream for this key (client-sent values of these names are dropped).",
  ),
  expires: opt(t.string({ check: expiryProblem }), undefined, "After this instant the key is refused (401)."),
});

/** `api_key: {...}`. */
export const apiKeyOptions: Field = opt(
  t.object({
    header: opt(
      headerOrNone,
      "x-api-key",
      'Request header holding the key ("" for none).',
    ),
    query: opt(t.string({ pattern: "^[^&=#\\s]+$" }), undefined, "Query parameter holding the key."),
    keys: opt(t.list(apiKeyEntry), [], "Accepted keys."),
    file: opt(
      t.string({ file: true }),
      undefined,
      "YAML or JSON file with more keys (a list of entries like `keys`); read at load and on every reload.",
    ),
    name_header: opt(
      headerOrNone,
      "x-consumer",
      'Request header carrying the key\'s name upstream ("" for none).',
    ),
    strip: opt(t.bool(), true, "Remove the key (header and query parameter) from the request sent upstream."),
  }),
  undefined,
  "Requires a known, unexpired API key in a header or query parameter (401 otherwise).",
);
