/**
 * A route's compiled chain: the top-level middleware, the route's own, its
 * Proxy-Wasm plugins, then the terminal (the proxy for its upstream, or a
 * redirect). Built once per snapshot; a route without any of these calls the
 * proxy directly.
 *
 * @module
 */
import type { RequestContext } from "../core/context.ts";
import type { Middleware } from "../core/middleware.ts";
import { respondError } from "../core/respond.ts";
import type { RouteConfig } from "../config/types.ts";
import { forward, type ForwardOptions, type ProxyObserver } from "../proxy/forward.ts";
import { forwardH2 } from "../proxy/h2_forward.ts";
import type { PluginChain } from "../wasm/mod.ts";
import type { Upstream } from "../upstream/upstream.ts";
import { compileChain, type Endpoint } from "../middleware/compose.ts";
import { createMiddleware, type MiddlewareEnv } from "../middleware/registry.ts";
import { call } from "../proxy/call.ts";
import { redirect } from "../middleware/redirect/index.ts";
import { grpcWebEntry } from "../middleware/grpc_web/index.ts";
import { wasmPlugins } from "../middleware/wasm/index.ts";
import { entryScope, scopedEnv } from "../middleware/shared.ts";

/** The two entry points of a route: every method, and OPTIONS (behind the gRPC-Web entry). */
export interface RouteChains {
  readonly handler: Endpoint;
  readonly optionsHandler: Endpoint;
}

/** The upstream phase: HTTP/2 for gRPC (trailers) and h2/h2c upstreams, else pooled HTTP/1.1. */
export function proxyTerminal(
  up: Upstream,
  opt: ForwardOptions,
  protocol: string | undefined,
  obs: ProxyObserver | null,
): Endpoint {
  if (protocol === "h2" || protocol === "h2c") {
    return (ctx) => forwardH2(ctx, up, ctx.upstreamTarget, opt, obs);
  }
  return (ctx: RequestContext) =>
    ctx.grpc !== 0
      ? forwardH2(ctx, up, ctx.upstreamTarget, opt, obs)
      : forward(ctx, up, ctx.upstreamTarget, opt, obs);
}

const noUpstream: Endpoint = (ctx) => respondError(ctx, 503, "route has no upstream");

/** What middleware of a snapshot may call: its upstreams, through their balancers and pools. */
export function middlewareEnv(upstreams: ReadonlyMap<string, Upstream>): MiddlewareEnv {
  return {
    hasUpstream: (name) => upstreams.has(name),
    call: (name, req, timeoutMs) => {
      const up = upstreams.get(name);
      if (up === undefined) return Promise.reject(new Error(`upstream "${name}" is not defined`));
      const ep = up.select({ header: () => undefined, clientIp: "" });
      if (ep === null) return Promise.reject(new Error(`upstream "${name}" has no healthy endpoint`));
      return call(up.pool(ep), { ...req, authority: req.authority ?? ep.address }, timeoutMs);
    },
  };
}

/** The middleware list of `route` in run order (top level, route, plugins, redirect). */
export function routeMiddleware(
  route: RouteConfig,
  plugins: PluginChain | null,
  global: readonly Middleware[],
  env: MiddlewareEnv,
): Middleware[] {
  const list = [
    ...global,
    ...route.middleware.map((m, i) => createMiddleware(m, scopedEnv(env, entryScope(route.id, i)))),
  ];
  if (plugins !== null) list.push(wasmPlugins(plugins, route.timeout));
  if (route.redirect !== undefined) list.push(redirect(route.redirect.url, route.redirect.code));
  return list;
}

function withGrpcWebEntry(list: readonly Middleware[]): Middleware[] {
  const i = list.findIndex((m) => m.name === "wasm" || m.name === "redirect");
  const at = i === -1 ? list.length : i;
  return [...list.slice(0, at), grpcWebEntry, ...list.slice(at)];
}

/** Compiles the chains of a route around `terminal` (null: the route has no upstream). */
export function compileRouteChains(list: readonly Middleware[], terminal: Endpoint | null): RouteChains {
  const end = terminal ?? noUpstream;
  return {
    handler: compileChain(list, end),
    // After the configured middleware (a cors middleware answers preflights first), before plugins.
    optionsHandler: compileChain(withGrpcWebEntry(list), end),
  };
}
