/**
 * Routing again after plugins changed a request (`proxy_clear_route_cache`,
 * or request headers / `:path` edited in on_request_headers), as Envoy
 * clears its route cache: the request is matched anew against the
 * snapshot's router and, when another route matches, goes to that route's
 * upstream terminal (the filters that already ran are not run again, as in
 * Envoy's one filter chain). A request re-routes once.
 *
 * @module
 */
import type { RequestContext } from "../core/context.ts";
import { respondError } from "../core/respond.ts";
import type { Endpoint } from "../middleware/compose.ts";
import type { Reroute } from "../middleware/wasm/index.ts";
import type { ProxyObserver } from "../proxy/forward.ts";
import { encodePath, normalizePath, type Router, splitTarget, stripPrefix } from "../router/mod.ts";
import { hostForRouting } from "./gateway.ts";
import { proxyTerminal } from "./route_chain.ts";
import type { RouteRuntime } from "./snapshot.ts";

const notFound: Endpoint = (ctx) => respondError(ctx, 404, "no route matched");
const badPath: Endpoint = (ctx) => respondError(ctx, 400, "invalid request path");

/** The re-routing hook of a snapshot whose router `router()` returns (built after the routes). */
export function rerouter(router: () => Router<RouteRuntime> | null, obs: ProxyObserver | null): Reroute {
  const terminals = new WeakMap<RouteRuntime, Endpoint>();
  const done = new WeakSet<RequestContext>();
  const terminalOf = (rt: RouteRuntime): Endpoint => {
    let t = terminals.get(rt);
    if (t === undefined) {
      const up = rt.upstream;
      // A route without an upstream (redirect, fixed answer, split): its whole chain.
      t = up !== null ? proxyTerminal(up, rt.forward, up.config.protocol, obs) : rt.handler;
      terminals.set(rt, t);
    }
    return t;
  };
  return (ctx: RequestContext, target: string): Endpoint | null => {
    const r = router();
    if (r === null || done.has(ctx)) return null;
    done.add(ctx);
    const { path: rawPath, query } = splitTarget(target);
    const path = normalizePath(rawPath);
    if (path === null) return badPath;
    ctx.path = path;
    ctx.query = query;
    ctx.host = hostForRouting(ctx.authority);
    const m = r.match(ctx);
    if (m === null) return notFound;
    const rt = m.route.data;
    if (rt === ctx.route) return null;
    const { params, rest, prefix } = m;
    // The new route's own target rules (gateway.ts applies the same on the first match).
    const upPath = rt.rewrite?.(params, rest) ??
      encodePath(rt.stripPrefix ? stripPrefix(path, prefix) : path);
    Object.assign(ctx, {
      route: rt,
      params,
      pathRest: rest,
      upstreamTarget: query ? `${upPath}?${query}` : upPath,
    });
    return terminalOf(rt);
  };
}
