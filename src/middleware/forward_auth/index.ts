/**
 * `forward_auth`: asks an auth service about each request before it goes on
 * (Traefik's forwardAuth, nginx's auth_request).
 *
 * ```yaml
 * upstreams:
 *   - { name: auth, endpoints: ["127.0.0.1:9000"] }
 * middleware:
 *   - forward_auth:
 *       upstream: auth
 *       path: /verify
 *       request_headers: [authorization, cookie]   # copied to the check
 *       response_headers: [x-user, x-user-groups]  # copied from a 2xx onto the request
 *       timeout: 2s
 *       on_error: deny                             # or allow
 * ```
 *
 * The check is a sub-request to a configured upstream (its pools, balancing
 * and TLS; HTTP/1.1) with `method` and `path`, the listed client fields and
 * `X-Forwarded-Method`, `-Uri` (the request target as received), `-Host`,
 * `-Proto` and `-For` (the client address Loom sees), plus `X-Request-ID`.
 * It never carries the request body, which stays for the upstream.
 *
 * - 2xx: the request goes on; the `response_headers` fields of the answer
 *   replace any the client sent (a client cannot forge `x-user`) and are in
 *   `ctx.vars.get(FORWARD_AUTH_HEADERS_VAR)`.
 * - any other status (401, 403, a 302 to a login page, ...): the client gets
 *   the auth service's answer as it was, status, headers and body (hop-by-hop
 *   fields dropped). Rejection reasons: `unauthorized` (401), `forbidden`
 *   (403), `redirect` (3xx), `denied` (others). gRPC clients get the gRPC
 *   status instead.
 * - no answer within `timeout`, connection refused or a malformed answer:
 *   `on_error: deny` answers 503 (reasons `timeout`, `unavailable`);
 *   `allow` lets the request through without the response fields.
 *
 * @module
 */
import type { RequestContext } from "../../core/context.ts";
import { HeaderList } from "../../core/headers.ts";
import type { Middleware } from "../../core/middleware.ts";
import type { ForwardAuthOptions } from "../../config/middleware/forward_auth.ts";
import { logger } from "../../observability/logger.ts";
import type { CallResponse } from "../../proxy/call.ts";
import type { MiddlewareEnv } from "../registry.ts";
import { reject, rejectWith } from "../reject.ts";

export type { ForwardAuthOptions };

/** Key in `ctx.vars` of the fields copied from the auth service's 2xx answer (`[name, value][]`). */
export const FORWARD_AUTH_HEADERS_VAR = "loom.forward_auth.headers";

const NAME = "forward_auth";
const NO_BODY = new Uint8Array(0);
/** Fields Loom writes on the check itself; a client's are never copied. */
const OWN = new Set([
  "x-forwarded-method",
  "x-forwarded-uri",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-for",
  "x-request-id",
  "host",
  "content-length",
]);

function reasonOf(status: number): string {
  if (status === 401) return "unauthorized";
  if (status === 403) return "forbidden";
  if (status >= 300 && status < 400) return "redirect";
  return "denied";
}

/** The middleware for `o`; `env.call` reaches the auth service. */
export function forwardAuth(o: ForwardAuthOptions, env: MiddlewareEnv): Middleware {
  if (!env.hasUpstream(o.upstream)) throw new Error(`forward_auth: upstream "${o.upstream}" is not defined`);
  const copy = new Set(o.request_headers.map((n) => n.toLowerCase()).filter((n) => !OWN.has(n)));
  const take = [...new Set(o.response_headers.map((n) => n.toLowerCase()))];
  const takeSet = new Set(take);
  const { upstream, path, method, timeout } = o;
  const allowOnError = o.on_error === "allow";
  let lastWarn = 0;

  /** Removes client-sent copies of the fields the auth service owns. */
  const scrub = (ctx: RequestContext) => {
    for (const k of take) ctx.headers.delete(k);
  };

  return {
    name: NAME,
    request: async (ctx, next) => {
      const fields: [string, string][] = [];
      const { names, keys, values } = ctx.headers;
      for (let i = 0; i < keys.length; i++) if (copy.has(keys[i])) fields.push([names[i], values[i]]);
      fields.push(
        ["x-forwarded-method", ctx.method],
        ["x-forwarded-uri", ctx.target],
        ["x-forwarded-host", ctx.authority],
        ["x-forwarded-proto", ctx.scheme],
        ["x-forwarded-for", ctx.clientIp],
      );
      if (ctx.id !== "") fields.push(["x-request-id", ctx.id]);
      let res: CallResponse;
      try {
        res = await env.call(upstream, { method, path, headers: fields, body: NO_BODY }, timeout);
      } catch (e) {
        const message = (e as Error).message ?? String(e);
        const now = Date.now();
        if (now - lastWarn >= 1000) {
          lastWarn = now;
          logger.warn("forward_auth: auth service failed", {
            upstream,
            error: message,
            action: allowOnError ? "allow" : "deny",
          });
        }
        if (allowOnError) {
          scrub(ctx);
          return next();
        }
        const reason = /timed out/.test(message) ? "timeout" : "unavailable";
        return reject(ctx, NAME, reason, 503, "authentication service unavailable", [["retry-after", "1"]]);
      }
      if (res.status >= 200 && res.status < 300) {
        scrub(ctx);
        if (take.length > 0) {
          const got: [string, string][] = [];
          for (const [n, v] of res.headers) {
            if (!takeSet.has(n.toLowerCase())) continue;
            ctx.headers.append(n, v);
            got.push([n, v]);
          }
          ctx.vars.set(FORWARD_AUTH_HEADERS_VAR, got);
        }
        return next();
      }
      const h = new HeaderList();
      for (const [n, v] of res.headers) h.append(n, v);
      return rejectWith(
        ctx,
        NAME,
        reasonOf(res.status),
        res.status,
        "request refused by the authentication service",
        h,
        res.body,
      );
    },
  };
}
