/** Options of the `forward_auth` middleware (src/middleware/forward_auth/). */
import { type Field, opt, req, t } from "../dsl.ts";
import { headerName } from "./headers.ts";

/** `forward_auth: {...}` in a middleware list. */
export const forwardAuthOptions: Field = opt(
  t.object({
    upstream: req(t.string(), "The configured upstream of the auth service."),
    path: opt(
      t.string({
        pattern: "^/[\\x21-\\x7e]*$",
        patternMessage: "path must start with / and hold visible ASCII only (percent-encode the rest)",
      }),
      "/",
      "Path (and query) the check is sent to.",
    ),
    method: opt(t.enum(["GET", "HEAD", "POST"]), "GET", "Method of the check (it never carries a body)."),
    timeout: opt(t.duration(), "5s", "How long to wait for the auth service's whole answer."),
    on_error: opt(
      t.enum(["deny", "allow"]),
      "deny",
      "When the auth service cannot be reached, times out or answers garbage: deny (503) or allow.",
    ),
    request_headers: opt(
      t.list(headerName),
      ["authorization", "cookie"],
      "Client request fields sent to the auth service (X-Forwarded-* are always sent).",
    ),
    response_headers: opt(
      t.list(headerName),
      [],
      "Fields of a 2xx answer copied onto the request going upstream (client-sent copies are removed).",
    ),
  }),
  undefined,
  "Asks an auth service whether to let each request through (Traefik forwardAuth, nginx auth_request).",
);

/** The normalised options. */
export interface ForwardAuthOptions {
  upstream: string;
  path: string;
  method: "GET" | "HEAD" | "POST";
  /** Milliseconds. */
  timeout: number;
  on_error: "deny" | "allow";
  request_headers: string[];
  response_headers: string[];
}
