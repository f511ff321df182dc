/**
 * `wasm`: a route's Proxy-Wasm plugin list as one middleware. The plugins may
 * pause, answer locally or rewrite `:path`; the (possibly rewritten) target
 * goes on to the rest of the chain in `ctx.upstreamTarget`. When they changed
 * the request's headers or path in on_request_headers (or called
 * `proxy_clear_route_cache`), the gateway's {@link Reroute} hook routes the
 * request again and may switch it to another route's upstream.
 *
 * @module
 */
import type { RequestContext } from "../../core/context.ts";
import type { Middleware } from "../../core/middleware.ts";
import { type PluginChain, runPlugins } from "../../wasm/mod.ts";

/**
 * Routes a request again for `target` (the gateway provides it): the new
 * route's upstream terminal (its `ctx.upstreamTarget` set), or null to go on
 * as routed (the same route matched, or the request re-routed already).
 */
export type Reroute = (
  ctx: RequestContext,
  target: string,
) => ((ctx: RequestContext) => Promise<void>) | null;

/** The middleware running `chain`; `pauseTimeout` bounds a paused plugin (the route's timeout). */
export function wasmPlugins(chain: PluginChain, pauseTimeout: number, reroute?: Reroute): Middleware {
  return {
    name: "wasm",
    request: (ctx, next) =>
      runPlugins(ctx, chain, pauseTimeout, ctx.upstreamTarget, (target, routeAgain) => {
        const other = routeAgain !== null && reroute !== undefined ? reroute(ctx, routeAgain) : null;
        if (other !== null) return other(ctx);
        ctx.upstreamTarget = target;
        return next();
      }),
  };
}
