/**
 * `cors`: cross-origin resource sharing per the Fetch standard.
 *
 * - A real preflight (OPTIONS with `Origin` and `Access-Control-Request-Method`)
 *   is answered by Loom: 204 with the allowed methods and headers for an
 *   allowed origin, 403 (counted as `cors/origin`) for another. Other OPTIONS
 *   requests go upstream.
 * - Other requests with an allowed `Origin` get `Access-Control-Allow-Origin`
 *   (and credentials / exposed headers) on their response; a disallowed origin
 *   gets no CORS headers at all. `Vary: Origin` is added whenever the answer
 *   depends on the origin.
 *
 * ```yaml
 * middleware:
 *   - cors:
 *       allow_origins: ["https://app.example", "https://*.example.org", "regex:^https://pr-\\d+\\.preview\\.example$"]
 *       allow_credentials: true
 *       expose_headers: [x-request-id]
 *       max_age: 600
 * ```
 *
 * @module
 */
import type { RequestContext } from "../../core/context.ts";
import { addVary, HeaderList } from "../../core/headers.ts";
import type { Middleware } from "../../core/middleware.ts";
import type { CorsOptions } from "../../config/middleware/cors.ts";
import { reject } from "../reject.ts";

export type { CorsOptions };

/** Compiles the origin list into one test. */
export function originMatcher(origins: readonly string[]): { any: boolean; test(origin: string): boolean } {
  if (origins.includes("*")) return { any: true, test: () => true };
  const exact = new Set<string>();
  const patterns: RegExp[] = [];
  for (const o of origins) {
    if (o.startsWith("regex:")) patterns.push(new RegExp(o.slice(6)));
    else if (o.includes("://*.")) {
      // "https://*.example.org" matches any subdomain (one label or more), not the apex.
      const [scheme, rest] = o.split("://*.");
      patterns.push(
        new RegExp(
          `^${escape(scheme.toLowerCase())}://[^/.:]+(\\.[^/.:]+)*\\.${escape(rest.toLowerCase())}$`,
        ),
      );
    } else exact.add(o.toLowerCase());
  }
  return {
    any: false,
    test: (origin) => {
      const o = origin.toLowerCase();
      return exact.has(o) || patterns.some((p) => p.test(origin));
    },
  };
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The middleware for `o` (built once per snapshot); `enabled: false` hooks nothing. */
export function cors(o: CorsOptions): Middleware {
  if (!o.enabled) return { name: "cors" };
  const origins = originMatcher(o.allow_origins);
  const methods = o.allow_methods.map((m) => m.toUpperCase()).join(", ");
  const anyHeader = o.allow_headers.includes("*");
  const allowHeaders = o.allow_headers.join(", ");
  const expose = o.expose_headers.join(", ");
  const maxAge = String(o.max_age);
  // "*" is only valid without credentials; with them the origin is echoed.
  const star = origins.any && !o.allow_credentials;

  const allowOrigin = (h: HeaderList, origin: string) => {
    h.set("access-control-allow-origin", star ? "*" : origin);
    if (o.allow_credentials) h.set("access-control-allow-credentials", "true");
  };

  const preflight = (ctx: RequestContext, origin: string): Promise<void> => {
    if (!origins.test(origin)) return reject(ctx, "cors", "origin", 403, "CORS origin not allowed");
    const h = new HeaderList();
    allowOrigin(h, origin);
    h.append("access-control-allow-methods", methods);
    const requested = ctx.headers.getJoined("access-control-request-headers");
    if (anyHeader) {
      if (requested !== undefined && requested !== "") h.append("access-control-allow-headers", requested);
    } else if (allowHeaders !== "") h.append("access-control-allow-headers", allowHeaders);
    if (o.allow_private_network && ctx.headers.get("access-control-request-private-network") === "true") {
      h.append("access-control-allow-private-network", "true");
    }
    h.append("access-control-max-age", maxAge);
    h.append("vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
    ctx.res.writeHead(204, h, 0);
    return ctx.res.end();
  };

  return {
    name: "cors",
    request: (ctx, next) => {
      if (ctx.method === "OPTIONS") {
        const origin = ctx.headers.get("origin");
        if (origin !== undefined && ctx.headers.get("access-control-request-method") !== undefined) {
          return preflight(ctx, origin);
        }
      }
      return next();
    },
    response: (ctx, head) => {
      const h = head.headers;
      const origin = ctx.headers.get("origin");
      if (!star) addVary(h, "Origin");
      if (origin === undefined || !origins.test(origin)) return;
      allowOrigin(h, origin);
      if (expose !== "") h.set("access-control-expose-headers", expose);
    },
  };
}
