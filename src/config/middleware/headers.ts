/** Options of the `headers` middleware (src/middleware/headers/). */
import { type Field, opt, t } from "../dsl.ts";
import { REQUEST_VARIABLE } from "../env.ts";

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

/** set/add/remove of one side. */
export const headerEdits = t.object({
  set: opt(t.map(headerValue, { keys: headerName }), undefined, "Replace (or add) these fields."),
  add: opt(t.map(headerValue, { keys: headerName }), undefined, "Append these fields."),
  remove: opt(t.list(headerName), undefined, "Drop these fields."),
  rename: opt(
    t.map(headerName, { keys: headerName }),
    undefined,
    "Rename fields (old name → new name), values kept.",
  ),
});

/** `headers: {request, response}`. */
export const headersOptions: Field = opt(
  t.object({
    request: opt(headerEdits, undefined, "Edits of the request head sent upstream."),
    response: opt(headerEdits, undefined, "Edits of the response head sent to the client."),
  }),
  undefined,
  "Add, set or remove request and response header fields.",
);

const onOff = (v: string) =>
  t.oneOf([t.bool(), t.string({ check: (x) => /[\r\n\0]/.test(x) ? "no CR, LF or NUL" : undefined })], {
    description: v,
  });

/** `security_headers`: a preset of response headers; each may be a value, true (default value) or false (off). */
export const securityHeadersOptions: Field = opt(
  t.object({
    hsts: opt(
      t.object({
        max_age: opt(t.duration(), "8760h", "Strict-Transport-Security max-age (one year by default)."),
        include_subdomains: opt(t.bool(), true),
        preload: opt(t.bool(), false),
      }),
      {},
      "Strict-Transport-Security, sent on https requests only (RFC 6797).",
    ),
    content_type_options: opt(t.bool(), true, "X-Content-Type-Options: nosniff."),
    frame_options: opt(onOff("X-Frame-Options (default DENY)."), true),
    referrer_policy: opt(onOff("Referrer-Policy (default strict-origin-when-cross-origin)."), true),
    content_security_policy: opt(
      onOff("Content-Security-Policy (default \"default-src 'self'; frame-ancestors 'none'\")."),
      true,
    ),
    override: opt(t.bool(), false, "Replace values the upstream set (default: keep them)."),
  }),
  undefined,
  "Security response headers preset (HSTS, nosniff, frame options, referrer policy, CSP).",
);
