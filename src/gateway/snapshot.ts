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
import { createMiddleware, loadMiddleware } from "../middleware/registry.ts";
import { cors } from "../middleware/cors/index.ts";
import { requestIdHeader } from "../middleware/request_id/index.ts";
import { entryScope, scopedEnv, sharedRegionsOf } from "../middleware/shared.ts";
import { topLevelRateLimit } from "../config/middleware/rate_limit.ts";
import { topLevelCache } from "../config/middleware/cache.ts";
import { GatewayMetrics } from "../observability/gateway_metrics.ts";
import {
  compileRouteChains,
  forwardOptionsFor,
  loadRouteCode,
  middlewareEnv,
  type RouteChains,
  routeMiddleware,
  routeTerminal,
} from "./route_chain.ts";
import type { RouteRef } from "../core/context.ts";
import type { PluginChain, PluginManager } from "../wasm/mod.ts";
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
  readonly plugins: Plugins;
  /** `trusted_proxies`: peers whose X-Forwarded-For / Forwarded name the client; null = none. */
  readonly trustedProxies: CidrSet | null;
}

let versions = 0;

/** What a snapshot's plugins offer (a PluginManager, or {@link NO_PLUGINS}). */
export type Plugins = Pick<
  PluginManager,
  "update" | "chain" | "get" | "retireReplaced" | "describe" | "attachMetrics"
>;

/** The plugins of an isolate whose configs never had any: the Wasm host is not even loaded. */
const NO_PLUGINS: Plugins = {
  update() {},
  chain: () => null,
  get: () => undefined,
  retireReplaced() {},
  describe: () => [],
  attachMetrics() {},
};

/**
 * Code only some configs use, loaded by {@link loadSnapshotCode}: the Wasm
 * host and top-level tracing (OpenTelemetry); middleware come from the
 * registry's loaders. Left unset, none of it is compiled, which keeps a plain
 * proxy's memory down (bench/README.md, Memory).
 */
const code: {
  PluginManager?: typeof PluginManager;
  tracing?: typeof import("../middleware/tracing/index.ts").tracing;
} = {};

/** `value`, which {@link loadSnapshotCode} loads for a config that uses it. */
function loaded<T>(value: T | undefined, what: string): T {
  if (value === undefined) {
    throw new Error(`${what} is not loaded (loadSnapshotCode runs before buildSnapshot)`);
  }
  return value;
}

/**
 * The names of every middleware `config` uses: its entries (top level, routes,
 * backends) and the top-level `rate_limit` and `cache` blocks, which are those
 * middleware in front of every route.
 */
function middlewareNames(config: LoomConfig): string[] {
  const names = config.middleware.map((m) => m.name);
  if (topLevelRateLimit(config.rate_limit) !== null) names.push("rate_limit");
  if (topLevelCache(config.cache) !== null) names.push("cache");
  for (const r of config.routes) {
    for (const m of r.middleware) names.push(m.name);
    for (const b of r.backends ?? []) for (const m of b.middleware) names.push(m.name);
  }
  return names;
}

/**
 * Loads the code `config` needs that a snapshot does not always use (plugins,
 * middleware, HTTP/2 forwarding): awaited before {@link buildSnapshot} of it,
 * at start and on each reload, so that requests never wait for a module.
 */
export async function loadSnapshotCode(config: LoomConfig): Promise<void> {
  await loadMiddleware(middlewareNames(config));
  await loadRouteCode(config);
  if (config.plugins.length > 0) code.PluginManager ??= (await import("../wasm/mod.ts")).PluginManager;
  if (config.tracing?.enabled) code.tracing ??= (await import("../middleware/tracing/index.ts")).tracing;
}

/** Scope (shared-memory id prefix) of the top-level `rate_limit` block's middleware. */
const TOP_RATE_LIMIT = "rate_limit";
/** Scope of the top-level `cache` block's middleware (its store is kept across reloads by it). */
const TOP_CACHE = "cache";

/**
 * The shared memory blocks `config`'s middleware need (the supervisor reserves them before posting it).
 * Their code is loaded first: a middleware declares its blocks when its module loads.
 */
export async function sharedRegionsFor(config: LoomConfig): Promise<Map<string, number>> {
  await loadMiddleware(middlewareNames(config));
  const top = topLevelRateLimit(config.rate_limit);
  return sharedRegionsOf(
    config,
    top === null ? [] : [[TOP_RATE_LIMIT, { name: "rate_limit", options: top }]],
  );
}

/**
 * Compiles `config` into a snapshot (its code loaded by {@link loadSnapshotCode}).
 * Endpoints present in `previous` keep their pools (and, through CounterSlots,
 * their in-flight counts).
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
  let plugins = previous?.plugins ?? NO_PLUGINS;
  // The first config with plugins brings the Wasm host; it stays for later reloads (their VMs' state).
  if (plugins === NO_PLUGINS && config.plugins.length > 0) {
    plugins = new (loaded(code.PluginManager, "the Wasm plugin host"))();
    if (previous !== undefined && obs instanceof GatewayMetrics) plugins.attachMetrics(obs.registry);
  }
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
  if (topCache !== null) {
    global.unshift(createMiddleware({ name: "cache", options: topCache }, scopedEnv(env, TOP_CACHE)));
  }
  // The Loom format's top-level `rate_limit` block: a limit per client IP in front of every route.
  const topLimit = topLevelRateLimit(config.rate_limit);
  if (topLimit !== null) {
    global.unshift(
      createMiddleware({ name: "rate_limit", options: topLimit }, scopedEnv(env, TOP_RATE_LIMIT)),
    );
  }
  // The Loom format's top-level `cors` block: CORS in front of every route (and of its limit's 429s).
  if (config.cors !== undefined && config.cors.enabled) global.unshift(cors(config.cors));
  // The top-level `request_id` block: the request id on every response.
  if (config.request_id?.response_header) global.unshift(requestIdHeader(config.request_id.header));
  // The top-level `tracing` block: first of all, so its span holds every other middleware's.
  if (config.tracing !== undefined && config.tracing.enabled) {
    global.unshift(loaded(code.tracing, "tracing")(config.tracing));
  }
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
