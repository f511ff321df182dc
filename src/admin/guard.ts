/**
 * Admin API rules against browser-driven attacks and for listeners beyond
 * loopback:
 *
 * - every write (any method but GET, HEAD, OPTIONS) must be a request a web
 *   page cannot send without a CORS preflight: a JSON content type, an
 *   `X-Loom-Admin` header or a bearer token (so a cross-origin `text/plain`
 *   form POST cannot drain an endpoint, even with cached Basic credentials);
 * - on loopback without auth, the `Host` must name a loopback address
 *   (DNS rebinding turns `attacker.example` into 127.0.0.1);
 * - beyond loopback without auth (`admin.insecure: true`), writes are refused
 *   (and `GET /config`, see server.ts).
 *
 * @module
 */

import type { Context, MiddlewareHandler } from "hono";
import { isLoopbackHostname } from "../config/admin_exposure.ts";

/** The custom header that marks a write as sent on purpose (any value). */
export const ADMIN_HEADER = "X-Loom-Admin";

const SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);

/** Settings of {@link adminGuard}. */
export interface GuardOptions {
  /** The admin listener is bound to loopback only. */
  loopback: boolean;
  /** admin.auth defines credentials (token or users). */
  authenticated: boolean;
}

/**
 * True when a `Host` header value names loopback: 127.0.0.0/8, `[::1]` or
 * `localhost`, with or without a port.
 */
export function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  let name = host;
  let port = "";
  if (name.startsWith("[")) {
    const end = name.indexOf("]");
    if (end < 0) return false;
    port = name.slice(end + 1);
    name = name.slice(1, end);
  } else if (name.includes(":")) {
    port = name.slice(name.indexOf(":"));
    name = name.slice(0, name.indexOf(":"));
  }
  if (port !== "" && !/^:[0-9]{1,5}$/.test(port)) return false;
  return isLoopbackHostname(name);
}

/** True for a request a browser only sends cross-origin after a CORS preflight. */
export function isDeliberate(header: (name: string) => string | undefined): boolean {
  const media = (header("content-type") ?? "").split(";")[0].trim().toLowerCase();
  if (media === "application/json" || /^application\/[!#$%&'*.^_`|~0-9a-z-]+\+json$/.test(media)) return true;
  if (header(ADMIN_HEADER) !== undefined) return true;
  return /^bearer\s/i.test(header("authorization") ?? "");
}

/** Whether `GET /config` and writes must be refused: beyond loopback without credentials. */
export function exposedWithoutAuth(opts: GuardOptions): boolean {
  return !opts.loopback && !opts.authenticated;
}

/** A 403 with a JSON error. */
export function forbidden(c: Context, reason: string): Response {
  return c.json({ error: `forbidden: ${reason}` }, 403);
}

/** Hono middleware applying the rules above; runs after authentication. */
export function adminGuard(opts: GuardOptions): MiddlewareHandler {
  const checkHost = opts.loopback && !opts.authenticated;
  const exposed = exposedWithoutAuth(opts);
  return async (c, next) => {
    if (checkHost && !isLoopbackHost(c.req.header("host"))) {
      return forbidden(c, "the Host header must name a loopback address (127.0.0.1, [::1] or localhost)");
    }
    if (!SAFE_METHODS.has(c.req.method)) {
      if (exposed) return forbidden(c, "writes need admin.auth on an admin address beyond loopback");
      if (!isDeliberate((name) => c.req.header(name))) {
        return forbidden(
          c,
          `a write needs Content-Type: application/json, an ${ADMIN_HEADER} header or a bearer token`,
        );
      }
    }
    await next();
  };
}
