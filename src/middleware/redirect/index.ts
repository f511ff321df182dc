/**
 * `redirect`: answers a route's requests with a redirect and never calls
 * `next`. Two forms (src/config/route_actions.ts):
 *
 * - `url`: the Location is that template, its `{param}` captures and
 *   catch-all filled in (encoded per URL part).
 * - parts (Gateway API RequestRedirect): each of `scheme`, `hostname`,
 *   `port` and the path is the request's unless given; `path` replaces the
 *   whole path (captures allowed), `prefix_path` the prefix the route matched
 *   (`/api` of `/api/*`: `/api/a/b` with `prefix_path: /v2` → `/v2/a/b`). The
 *   Location is then absolute. Without `port` the port is the well-known one
 *   of `scheme` when `scheme` is given, else the request's (from Host /
 *   :authority); a scheme's default port (http 80, https 443) is never
 *   written, so `{scheme: https}` on `http://example.com:80/x` gives
 *   `https://example.com/x`.
 *
 * Either way the request's query string is kept (appended), unless `url`
 * has a query of its own. A request whose Host cannot go into a Location
 * (it is checked only where the request's host is used) gets 400.
 *
 * ```yaml
 * routes:
 *   - { id: tls, path: /*, redirect: { scheme: https, status: 301 } }
 *   - { id: v2, path: /api/*, redirect: { prefix_path: /v2, status: 308 } }
 *   - { id: old, path: "/u/{id}", redirect: { url: "https://users.example.com/{id}", code: 301 } }
 * ```
 *
 * @module
 */
import type { RequestContext } from "../../core/context.ts";
import type { Middleware } from "../../core/middleware.ts";
import { HeaderList } from "../../core/headers.ts";
import { respond } from "../../core/respond.ts";
import type { RedirectConfig } from "../../config/route_actions.ts";
import { compileRedirect, compileRewrite, encodePath, type Substitute } from "../../router/mod.ts";
import { reject } from "../reject.ts";

const DEFAULT_PORT: Record<string, number> = { http: 80, https: 443 };

/** A host as received that may go into a Location: a reg-name or IPv4 (lower-cased), or an IPv6 literal. */
const SAFE_HOST = /^(?:[a-z0-9\-._~%!$&'()*+,;=]+|\[[0-9a-f:.]+\])$/;

/** The port of a Host / :authority value, or 0 when it has none (or a malformed one). */
export function authorityPort(authority: string): number {
  const close = authority.lastIndexOf("]");
  const colon = authority.lastIndexOf(":");
  if (colon === -1 || colon < close) return 0;
  const text = authority.slice(colon + 1);
  if (text.length === 0 || text.length > 5 || !/^[0-9]+$/.test(text)) return 0;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : 0;
}

/**
 * The request path with the prefix the route matched replaced by `prefix`:
 * the matched part is the path before the route's catch-all rest (all of it
 * on a route without one). A trailing slash of the request is kept.
 */
export function replacePrefix(path: string, rest: string, prefix: string): string {
  const base = prefix.endsWith("/") ? prefix.slice(0, -1) : prefix;
  if (rest === "") {
    // "/api/" under "/api/*": the request's trailing slash stays.
    const slash = path.length > 1 && path.endsWith("/");
    return base === "" ? "/" : slash ? base + "/" : base;
  }
  return base + "/" + rest;
}

/** Compiles the Location of `o` into a function of the request; null for a request whose host cannot be used. */
export function compileLocation(o: RedirectConfig): (ctx: RequestContext) => string | null {
  if (o.url !== undefined) {
    const target = compileRedirect(o.url);
    const ownQuery = o.url.includes("?");
    return (ctx) => {
      const location = target(ctx.params, ctx.pathRest);
      return ownQuery || ctx.query === "" ? location : location + "?" + ctx.query;
    };
  }
  const scheme = o.scheme;
  const fixedHost = o.hostname;
  const fixedPort = o.port;
  const fullPath: Substitute | null = o.path !== undefined ? compileRewrite(o.path) : null;
  const prefix = o.prefix_path;
  return (ctx) => {
    const s = scheme ?? ctx.scheme;
    let host = fixedHost;
    if (host === undefined) {
      host = ctx.host;
      if (!SAFE_HOST.test(host)) return null;
    }
    const port = fixedPort ?? (scheme !== undefined ? 0 : authorityPort(ctx.authority));
    const path = fullPath !== null
      ? fullPath(ctx.params, ctx.pathRest)
      : prefix !== undefined
      ? encodePath(replacePrefix(ctx.path, ctx.pathRest, prefix))
      : encodePath(ctx.path);
    const authority = port === 0 || port === DEFAULT_PORT[s] ? host : host + ":" + port;
    const location = s + "://" + authority + path;
    return ctx.query === "" ? location : location + "?" + ctx.query;
  };
}

/** The redirect middleware for a route's `redirect`. */
export function redirect(o: RedirectConfig): Middleware {
  const location = compileLocation(o);
  const code = o.code;
  return {
    name: "redirect",
    request: (ctx) => {
      const to = location(ctx);
      if (to === null) {
        return reject(ctx, "redirect", "bad_host", 400, "the request's Host cannot be redirected");
      }
      const h = new HeaderList(["location", "content-type"], ["location", "content-type"], [
        to,
        "text/plain",
      ]);
      return respond(ctx, code, h, "");
    },
  };
}
