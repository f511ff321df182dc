/**
 * What a route does instead of (or besides) proxying to one upstream, in the
 * config format: `redirect` (a URL template, or built from parts taken from
 * the request when absent), `direct_response`, a weighted split across
 * `backends` with optional `sticky` assignment, and `mirror` (shadow traffic).
 * Each maps onto a Gateway API HTTPRoute feature: RequestRedirect, a rule
 * whose backends are all invalid (500), weighted backendRefs with their own
 * filters, RequestMirror.
 *
 * @module
 */
import { opt, req, t, type Type } from "./dsl.ts";
import { type MiddlewareEntry, middlewareList } from "./middleware/mod.ts";
import { type MirrorOptions, mirrorType } from "./middleware/mirror.ts";
import { headerName } from "./middleware/headers.ts";

/** A redirect's status. */
export type RedirectStatus = 301 | 302 | 303 | 307 | 308;

/**
 * A route's `redirect`, normalised. With `url` the Location is that template
 * (`{param}` captures filled in); without it, from parts: each of `scheme`,
 * `hostname`, `port` and the path (`path` replaces it whole, `prefix_path`
 * replaces the matched prefix) is the request's when absent. The request's
 * query is kept unless `url` has its own.
 */
export interface RedirectConfig {
  /** Target URL or path; may use `{param}` captures like `rewrite`. Excludes the parts below. */
  url?: string;
  /** 301, 302, 303, 307 or 308 (written `code` or `status`). Default 302. */
  code: RedirectStatus;
  scheme?: "http" | "https";
  /** Lower-case host name. */
  hostname?: string;
  port?: number;
  /** Replaces the whole path; may use `{param}` captures. */
  path?: string;
  /** Replaces the prefix the route matched (the path before its catch-all). */
  prefix_path?: string;
}

/** A fixed answer: `direct_response: {status, body, content_type}`. */
export interface DirectResponseConfig {
  status: number;
  body?: string;
  /** Default "text/plain; charset=utf-8" when there is a body. */
  content_type?: string;
}

/** One entry of a route's `backends`. */
export interface BackendConfig {
  /** Exactly one of `upstream` and `direct_response`. */
  upstream?: string;
  direct_response?: DirectResponseConfig;
  /** What the sticky cookie names; default the upstream's name (or "backend<i>"). */
  name?: string;
  /** Relative share; 0 = never chosen. */
  weight: number;
  /** Run after the route's middleware, for requests sent to this backend only. */
  middleware: MiddlewareEntry[];
}

/** `sticky`: keep a client on the backend it was given. */
export interface StickyConfig {
  /** Cookie naming the chosen backend (set on the answer when absent or stale). */
  cookie?: string;
  /** Cookie Max-Age in ms; a session cookie when absent. */
  ttl?: number;
  /** Cookie Path. */
  path: string;
  /** Or: a lower-case request header whose value is hashed onto the weights. */
  header?: string;
}

export type { MirrorOptions };

const redirectStatus = t.enum([301, 302, 303, 307, 308], { description: "HTTP status of the redirect." });

/** RFC 1123 host name (lower-cased). */
const HOSTNAME =
  "^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$";

const pathPart = (description: string) =>
  t.string({
    pattern: "^/[\\x21-\\x7e]*$",
    patternMessage: "must start with / and hold visible ASCII only (percent-encode the rest)",
    description,
  });

/** `redirect:` — a URL (302), `{url, code}`, or parts. */
export const redirectType: Type = t.oneOf([
  t.string({
    description: "Target URL (302).",
    normalize: (url: string): RedirectConfig => ({ url, code: 302 }),
  }),
  t.object({
    url: opt(
      t.string(),
      undefined,
      "Target URL or path; may use {param} captures of the route path. Not with the parts below.",
    ),
    code: opt(redirectStatus, undefined, "Status (default 302); also written status."),
    status: opt(redirectStatus, undefined, "Status (default 302); also written code."),
    scheme: opt(t.enum(["http", "https"]), undefined, "Scheme of the Location (default: the request's)."),
    hostname: opt(
      t.string({
        pattern: HOSTNAME,
        patternMessage: "not a valid host name",
        normalize: (s: string) => s.toLowerCase(),
      }),
      undefined,
      "Host of the Location (default: the request's).",
    ),
    port: opt(
      t.int({ min: 1, max: 65535 }),
      undefined,
      "Port of the Location (default: the well-known port of scheme when scheme is set, else the " +
        "request's); never written when it is the scheme's default.",
    ),
    path: opt(pathPart("Replaces the whole path; may use {param} captures."), undefined),
    prefix_path: opt(
      pathPart('Replaces the prefix the route matched ("/api" of "/api/*"), the rest kept.'),
      undefined,
    ),
  }, {
    normalize: (v: RedirectConfig & { status?: RedirectStatus }): RedirectConfig => {
      const { status, ...rest } = v;
      return { ...rest, code: v.code ?? status ?? 302 };
    },
  }),
], {
  description: "Answer with a redirect instead of proxying: a URL (302), {url, code}, or parts taken " +
    "from the request when absent: {scheme, hostname, port, path | prefix_path, status}. The query is kept.",
});

/** `direct_response: {status, body, content_type}`. */
export const directResponseType: Type = t.object({
  status: req(t.int({ min: 200, max: 599 }), "Status of the answer."),
  body: opt(t.string(), undefined, "Body of the answer."),
  content_type: opt(
    t.string({ check: (s) => /[\r\n\0]/.test(s) ? "no CR, LF or NUL" : undefined }),
    undefined,
    'Content-Type (default "text/plain; charset=utf-8" when there is a body).',
  ),
}, { description: "Answer with a fixed status and body; nothing goes upstream." });

const backend = t.object({
  upstream: opt(t.string(), undefined, "Upstream of this backend."),
  direct_response: opt(directResponseType, undefined, "Or a fixed answer (e.g. 500 for an invalid backend)."),
  name: opt(
    t.string({ pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", patternMessage: "token characters only" }),
    undefined,
    "Value of the sticky cookie (default: the upstream's name).",
  ),
  weight: opt(t.int({ min: 0 }), 1, "Relative share of requests; 0 = never chosen."),
  middleware: middlewareList,
}, {
  description: "One backend of a weighted split: an upstream (or a fixed answer), a weight, middleware.",
});

/** `backends: [...]`. */
export const backendsType: Type = t.list(backend, { minItems: 1 });

/** `sticky: {cookie, ttl, path} | {header}`. */
export const stickyType: Type = t.object({
  cookie: opt(
    t.string({ pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", patternMessage: "not a valid cookie name" }),
    undefined,
    "Cookie naming the chosen backend; set on the answer when the request has none (or a stale one).",
  ),
  ttl: opt(t.duration(), undefined, "The cookie's Max-Age; a session cookie when absent."),
  path: opt(t.string({ pattern: "^/[\\x21-\\x3a\\x3c-\\x7e]*$" }), "/", "The cookie's Path."),
  header: opt(headerName, undefined, "Or: a request header whose value is hashed onto the weights."),
}, { description: "Keep a client on one backend: by a cookie Loom sets, or by hashing a request header." });

/** A route's `mirror:` — one mirror or a list. */
export const routeMirrorType: Type = t.oneOf([
  t.object(mirrorType.kind === "object" ? mirrorType.fields : {}, {
    description: mirrorType.description,
    normalize: (m: MirrorOptions): MirrorOptions[] => [m],
  }),
  t.list(mirrorType),
], {
  description:
    "Shadow traffic: one mirror or a list ({upstream, percent, max_in_flight, max_body, timeout}).",
});
