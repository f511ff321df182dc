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
import type { LoomConfig, RouteConfig, StickyConfig } from "../config/types.ts";
import { forward, type ForwardOptions, type ProxyObserver } from "../proxy/forward.ts";
import type { PluginChain } from "../wasm/mod.ts";
import type { Upstream } from "../upstream/upstream.ts";
import { compileChain, compileInnerChain, type Endpoint } from "../middleware/compose.ts";
import { createMiddleware, type MiddlewareEnv } from "../middleware/registry.ts";
import { call } from "../proxy/call.ts";
import { redirect } from "../middleware/redirect/index.ts";
import { grpcWebEntry } from "../middleware/grpc_web/index.ts";
import { backendEntryScope, entryScope, scopedEnv } from "../middleware/shared.ts";
import { mirror } from "../middleware/mirror/index.ts";
import { directResponse } from "../middleware/direct_response/index.ts";
import { stickyCookie, type WeightedBackend, weightedSplit } from "../middleware/backends/index.ts";
import { compileRetry } from "../upstream/retry.ts";
import type { CidrSet } from "../net/cidr.ts";

/** The two entry points of a route: every method, and OPTIONS (behind the gRPC-Web entry). */
export interface RouteChains {
  readonly handler: Endpoint;
  readonly optionsHandler: Endpoint;
}

type ForwardH2 = typeof import("../proxy/h2_forward.ts").forwardH2;

/**
 * Code only some configs use, set by {@link loadRouteCode}: HTTP/2 forwarding
 * (with the HTTP/2 codec and client pool under it) and the Proxy-Wasm filter.
 */
let forwardH2: ForwardH2 | null = null;
let wasmPlugins: typeof import("../middleware/wasm/index.ts").wasmPlugins | null = null;
let loadingH2: Promise<ForwardH2> | null = null;

function loadForwardH2(): Promise<ForwardH2> {
  return loadingH2 ??= import("../proxy/h2_forward.ts").then((m) => forwardH2 = m.forwardH2);
}

/**
 * Loads what `config`'s routes need beyond HTTP/1.1 proxying: HTTP/2 forwarding
 * when a listener can carry HTTP/2 or an upstream speaks it, the plugin filter
 * when plugins are defined. Awaited before a snapshot of `config` is built.
 */
export async function loadRouteCode(config: LoomConfig): Promise<void> {
  const h2 = config.listeners.some((l) => l.protocol !== "http" && l.protocol !== "tcp") ||
    config.upstreams.some((u) => u.protocol === "h2" || u.protocol === "h2c");
  if (h2) await loadForwardH2();
  if (config.plugins.length > 0) wasmPlugins ??= (await import("../middleware/wasm/index.ts")).wasmPlugins;
}

/**
 * gRPC over HTTP/1.1 listeners (gRPC-Web) is forwarded over HTTP/2 too; where
 * the config gave no sign of HTTP/2, the first such request loads that code.
 * Every later one calls it directly.
 */
function grpcOverH2(
  ctx: RequestContext,
  up: Upstream,
  opt: ForwardOptions,
  obs: ProxyObserver | null,
): Promise<void> {
  if (forwardH2 !== null) return forwardH2(ctx, up, ctx.upstreamTarget, opt, obs);
  return loadForwardH2().then((f) => f(ctx, up, ctx.upstreamTarget, opt, obs));
}

/** The upstream phase: HTTP/2 for gRPC (trailers) and h2/h2c upstreams, else pooled HTTP/1.1. */
export function proxyTerminal(
  up: Upstream,
  opt: ForwardOptions,
  protocol: string | undefined,
  obs: ProxyObserver | null,
): Endpoint {
  if (protocol === "h2" || protocol === "h2c") {
    const h2 = forwardH2;
    if (h2 === null) {
      throw new Error("HTTP/2 forwarding is not loaded (loadRouteCode runs before a snapshot)");
    }
    return (ctx) => h2(ctx, up, ctx.upstreamTarget, opt, obs);
  }
  return (ctx: RequestContext) =>
    ctx.grpc !== 0 ? grpcOverH2(ctx, up, opt, obs) : forward(ctx, up, ctx.upstreamTarget, opt, obs);
}

const noUpstream: Endpoint = (ctx) => respondError(ctx, 503, "route has no upstream");

/** How requests of route `r` are forwarded to `up` (null: defaults of a route without upstream). */
export function forwardOptionsFor(
  r: RouteConfig,
  up: Upstream | null,
  trustedProxies: CidrSet | null,
): ForwardOptions {
  const ucfg = up?.config;
  return {
    preserveHost: r.preserve_host,
    hostRewrite: r.host_rewrite,
    connectTimeout: r.connect_timeout ?? ucfg?.connect_timeout ?? 5000,
    perTryTimeout: r.per_try_timeout ?? ucfg?.per_try_timeout ?? 30000,
    totalTimeout: r.timeout,
    resilient: up?.resilience != null,
    retry: compileRetry(ucfg?.retry, r.retry_non_idempotent),
    trustedProxies,
  };
}

/**
 * What middleware of a snapshot may call: its upstreams, through their balancers and pools
 * (`obs` and `trustedProxies` for the requests of `proxy`, a mirror's copies).
 */
export function middlewareEnv(
  upstreams: ReadonlyMap<string, Upstream>,
  obs: ProxyObserver | null = null,
  trustedProxies: CidrSet | null = null,
): MiddlewareEnv {
  return {
    hasUpstream: (name) => upstreams.has(name),
    proxy: (name, timeoutMs, onConnectFailure) => {
      const up = upstreams.get(name);
      if (up === undefined) return null;
      const watched: ProxyObserver | null = onConnectFailure === undefined ? obs : {
        upstream: (u, ep, status, seconds) => obs?.upstream(u, ep, status, seconds),
        upstreamError: (u, ep, type) => {
          obs?.upstreamError(u, ep, type);
          if (type.startsWith("connect_")) onConnectFailure();
        },
      };
      const ucfg = up.config;
      const opt: ForwardOptions = {
        preserveHost: true,
        hostRewrite: undefined,
        connectTimeout: Math.min(ucfg.connect_timeout, timeoutMs),
        perTryTimeout: timeoutMs,
        totalTimeout: timeoutMs,
        trustedProxies,
      };
      return proxyTerminal(up, opt, ucfg.protocol, watched);
    },
    call: (name, req, timeoutMs) => {
      const up = upstreams.get(name);
      if (up === undefined) return Promise.reject(new Error(`upstream "${name}" is not defined`));
      const ep = up.select({ header: () => undefined, clientIp: "" });
      if (ep === null) return Promise.reject(new Error(`upstream "${name}" has no healthy endpoint`));
      return call(up.pool(ep), { ...req, authority: req.authority ?? ep.address }, timeoutMs);
    },
  };
}

/** The middleware list of `route` in run order (top level, route, plugins, mirrors, redirect). */
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
  if (plugins !== null) {
    if (wasmPlugins === null) throw new Error("the plugin filter is not loaded (loadRouteCode runs first)");
    list.push(wasmPlugins(plugins, route.timeout, env.reroute));
  }
  route.mirror?.forEach((m, i) => list.push(mirror(m, scopedEnv(env, `routes.${route.id}.mirror[${i}]`))));
  if (route.redirect !== undefined) list.push(redirect(route.redirect));
  return list;
}

/**
 * The terminal of `route` after its middleware list `list`: a fixed answer, the weighted
 * split of its backends (each backend's middleware compiled around its own terminal), or the
 * proxy to its upstream; null when it has none of these (a redirect route).
 */
export function routeTerminal(
  route: RouteConfig,
  list: readonly Middleware[],
  upstreams: ReadonlyMap<string, Upstream>,
  env: MiddlewareEnv,
  trustedProxies: CidrSet | null,
  obs: ProxyObserver | null,
): Endpoint | null {
  const proxyTo = (name: string | undefined): Endpoint | null => {
    const up = name === undefined ? undefined : upstreams.get(name);
    if (up === undefined) return null;
    return proxyTerminal(up, forwardOptionsFor(route, up, trustedProxies), up.config.protocol, obs);
  };
  if (route.direct_response !== undefined) return directResponse(route.direct_response);
  if (route.backends === undefined) return proxyTo(route.upstream);
  const sticky: StickyConfig | undefined = route.sticky;
  const backends: WeightedBackend[] = route.backends.map((b, i) => {
    const terminal = b.direct_response !== undefined
      ? directResponse(b.direct_response)
      : proxyTo(b.upstream) ?? noUpstream;
    const own = b.middleware.map((m, j) =>
      createMiddleware(m, scopedEnv(env, backendEntryScope(route.id, i, j)))
    );
    const name = b.name ?? b.upstream ?? `backend${i}`;
    return {
      name,
      weight: b.weight,
      handler: compileInnerChain(list, own, terminal),
      assign: sticky?.cookie !== undefined
        ? compileInnerChain(list, [...own, stickyCookie(sticky, name)], terminal)
        : undefined,
    };
  });
  return weightedSplit(backends, sticky);
}

function withGrpcWebEntry(list: readonly Middleware[]): Middleware[] {
  const i = list.findIndex((m) => m.name === "wasm" || m.name === "mirror" || m.name === "redirect");
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
