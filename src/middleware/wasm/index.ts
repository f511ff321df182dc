/**
 * `wasm`: a route's Proxy-Wasm plugin list as one middleware. The plugins may
 * pause, answer locally or rewrite `:path`; the (possibly rewritten) target
 * goes on to the rest of the chain in `ctx.upstreamTarget`.
 *
 * @module
 */
import type { Middleware } from "../../core/middleware.ts";
import { type PluginChain, runPlugins } from "../../wasm/mod.ts";

/** The middleware running `chain`; `pauseTimeout` bounds a paused plugin (the route's timeout). */
export function wasmPlugins(chain: PluginChain, pauseTimeout: number): Middleware {
  return {
    name: "wasm",
    request: (ctx, next) =>
      runPlugins(ctx, chain, pauseTimeout, ctx.upstreamTarget, (target) => {
        ctx.upstreamTarget = target;
        return next();
      }),
  };
}
