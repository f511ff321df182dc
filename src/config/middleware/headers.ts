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
