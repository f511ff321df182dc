/**
 * The routing snapshot: config compiled once into plain objects (router,
 * per-route forwarding options, upstreams with their pools). A snapshot is
 * immutable; reload builds a new one and swaps a single reference, so a
 * request that started on the old snapshot finishes on it.
 */
import type { LoomConfig, RouteConfig } from "../config/types.ts";
import { compileRewrite, Router, type Substitute } from "../router/mod.ts";
import { specsFromConfig } from "./route_specs.ts";
import type { CounterSlots } from "../upstream/counters.ts";
import { Upstream } from "../upstream/upstream.ts";
import type { ForwardOptions, ProxyObserver } from "../proxy/forward.ts";
import { CidrSet } from "../net/cidr.ts";
import { createMiddleware } from "../middleware/registry.ts";
import { cors } from "../middleware/cors/index.ts";
import { tracing } from "../middleware/tracing/index.ts";
import { requestIdHeader } from "../middleware/request_id/index.ts";
import { rateLimit } from "../middleware/rate_limit/index.ts";
import { entryScope, scopedEnv, sharedRegionsOf } from "../middleware/shared.ts";
import { topLevelRateLimit } from "../config/middleware/rate_limit.ts";
import { cache } from "../middleware/cache/index.ts";
import { topLevelCache } from "../config/middleware/cache.ts";
import { GatewayMetrics } from "../observability/gateway_metrics.ts";
import {
  compileRouteChains,
  forwardOptionsFor,
  middlewareEnv,
  type RouteChains,
  routeMiddleware,
  routeTerminal,
} from "./route_chain.ts";
import type { RouteRef } from "../core/context.ts";
import { type PluginChain, PluginManager } from "../wasm/mod.ts";
import { rerouter } from "./reroute.ts";

/** A route compiled for the request path. */
export interface RouteRuntime extends RouteRef, RouteChains {
  readonly id: string;
  readonly config: RouteConfig;
  readonly upstream: Upstream | null;
  readonly stripPrefix: boolean;
  readonly rewrite: Substitute | null;
  readonly forward: ForwardOptions;
  /** Proxy-Wasm plugins of this route in run order; null = none. */
  readonly plugins: PluginChain | null;
}

/** One immutable, compiled configuration. */
export interface Snapshot {
  readonly version: number;
  readonly config: LoomConfig;
  readonly router: Router<RouteRuntime>;
  readonly routes: readonly RouteRuntime[];
  readonly upstreams: ReadonlyMap<string, Upstream>;
  /** Plugin VMs of this isolate; carried over by reload so unchanged plugins keep their state. */
  readonly plugins: PluginManager;
  /** `trusted_proxies`: peers whose X-Forwarded-For / Forwarded name the client; null = none. */
  readonly trustedProxies: CidrSet | null;
}

let versions = 0;

/** Scope (shared-memory id prefix) of the top-level `rate_limit` block's middleware. */
const TOP_RATE_LIMIT = "rate_limit";
/** Scope of the top-level `cache` block's middleware (its store is kept across reloads by it). */
const TOP_CACHE = "cache";

/** The shared memory blocks `config`'s middleware need (the supervisor reserves them before posting it). */
export function sharedRegionsFor(config: LoomConfig): Map<string, number> {
  const top = topLevelRateLimit(config.rate_limit);
  return sharedRegionsOf(
    config,
    top === null ? [] : [[TOP_RATE_LIMIT, { name: "rate_limit", options: top }]],
  );
}

/**
 * Compiles `config` into a snapshot. Endpoints present in `previous` keep
 * their pools (and, through CounterSlots, their in-flight counts).
 */
export function buildSnapshot(
  config: LoomConfig,
  counters: CounterSlots,
  previous?: Snapshot,
  obs: ProxyObserver | null = null,
): Snapshot {
  const upstreams = new Map<string, Upstream>();
  for (const u of config.upstreams) {
    upstreams.set(u.name, new Upstream(u, counters, undefined, previous?.upstreams.get(u.name)));
  }
  const plugins = previous?.plugins ?? new PluginManager();
  let router: Router<RouteRuntime> | null = null;
  plugins.update(config, upstreams);
  // One matcher for every route: proxies in front of Loom whose forwarding fields are kept.
  const trustedProxies = config.trusted_proxies.length > 0 ? new CidrSet(config.trusted_proxies) : null;
  // Top-level middleware are built once and shared by every route (one state, e.g. one limit).
  const env = {
    ...middlewareEnv(upstreams, obs, trustedProxies),
    regions: counters.regions,
    // proxy_clear_route_cache: plugins' requests routed again through this snapshot's router.
    reroute: rerouter(() => router, obs),
    metrics: obs instanceof GatewayMetrics ? obs : null,
  };
  const global = config.middleware.map((m, i) => createMiddleware(m, scopedEnv(env, entryScope(null, i))));
  // The Loom format's top-level `cache` block: a cache in front of every route (behind the limit and CORS).
  const topCache = topLevelCache(config.cache);
  if (topCache !== null) global.unshift(cache(topCache, scopedEnv(env, TOP_CACHE)));
  // The Loom format's top-level `rate_limit` block: a limit per client IP in front of every route.
  const topLimit = topLevelRateLimit(config.rate_limit);
  if (topLimit !== null) global.unshift(rateLimit(topLimit, scopedEnv(env, TOP_RATE_LIMIT)));
  // The Loom format's top-level `cors` block: CORS in front of every route (and of its limit's 429s).
  if (config.cors !== undefined && config.cors.enabled) global.unshift(cors(config.cors));
  // The top-level `request_id` block: the request id on every response.
  if (config.request_id?.response_header) global.unshift(requestIdHeader(config.request_id.header));
  // The top-level `tracing` block: first of all, so its span holds every other middleware's.
  if (config.tracing !== undefined && config.tracing.enabled) global.unshift(tracing(config.tracing));
  const routes: RouteRuntime[] = [];
  const specs = specsFromConfig(config.routes, (r) => {
    const up = r.upstream !== undefined ? upstreams.get(r.upstream) ?? null : null;
    const forward = forwardOptionsFor(r, up, trustedProxies);
    const chain = plugins.chain(r.plugins);
    const list = routeMiddleware(r, chain, global, env);
    const terminal = routeTerminal(r, list, upstreams, env, trustedProxies, obs);
    const rt: RouteRuntime = {
      id: r.id,
      config: r,
      upstream: up,
      stripPrefix: r.strip_prefix,
      rewrite: r.rewrite !== undefined ? compileRewrite(r.rewrite) : null,
      forward,
      plugins: chain,
      ...compileRouteChains(list, terminal),
    };
    routes.push(rt);
    return rt;
  });
  return {
    version: ++versions,
    config,
    router: router = new Router(specs),
    routes,
    upstreams,
    plugins,
    trustedProxies,
  };
}

/** Closes the pools of `old` that `next` no longer uses (busy connections close when released). */
export function retireSnapshot(old: Snapshot, next: Snapshot): void {
  for (const [name, u] of old.upstreams) {
    for (const p of u.poolsDroppedBy(next.upstreams.get(name))) p.close();
  }
  next.plugins.retireReplaced();
}
