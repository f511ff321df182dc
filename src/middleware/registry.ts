/**
 * Middleware by name: what a `middleware:` entry of the config turns into.
 * Built-in middleware are registered here, their code loaded when a config
 * first names them ({@link loadMiddleware}, before its snapshot is built); a
 * middleware defined elsewhere registers itself with {@link defineMiddleware}
 * (options schema and factory) before the config is loaded.
 *
 * @module
 */
import type { Reroute } from "./wasm/index.ts";
import type { Middleware } from "../core/middleware.ts";
import type { Type } from "../config/dsl.ts";
import { type MiddlewareEntry, registerMiddlewareOptions } from "../config/middleware/mod.ts";
import type { CallRequest, CallResponse } from "../proxy/call.ts";
import type { HeadersOptions, SecurityHeadersOptions } from "./headers/index.ts";
import type { CorsOptions } from "./cors/index.ts";
import type { IpFilterOptions } from "./ip_filter/index.ts";
import type { BasicAuthOptions } from "./basic_auth/index.ts";
import type { ForwardAuthOptions } from "./forward_auth/index.ts";
import type { MtlsOptions } from "./mtls/index.ts";
import type { JwtOptions } from "./jwt/index.ts";
import type { ApiKeyOptions } from "./api_key/index.ts";
import type { BodyLimitOptions } from "../config/middleware/body_limit.ts";
import type { CompressOptions } from "../config/middleware/compress.ts";
import type { SharedRegions } from "../core/shared_memory.ts";
import type { RateLimitOptions } from "../config/middleware/rate_limit.ts";
import type { MirrorOptions } from "../config/middleware/mirror.ts";
import type { FaultOptions } from "../config/middleware/fault.ts";
import type { RequestContext } from "../core/context.ts";
import type { CacheOptions } from "../config/middleware/cache.ts";

/** What a middleware may use besides its options, given when the snapshot is built. */
export interface MiddlewareEnv {
  /**
   * Sends a buffered request to a configured upstream (its balancer, pools and
   * TLS settings; the authority defaults to the endpoint). Throws on connect
   * failure or timeout.
   */
  call(
    upstream: string,
    req: Omit<CallRequest, "authority"> & { authority?: string },
    timeoutMs: number,
  ): Promise<CallResponse>;
  /** Whether an upstream of that name is configured. */
  hasUpstream(name: string): boolean;
  /**
   * The proxy to `upstream` as a terminal (its balancer, pools, TLS; the plain path, no retries; at most
   * `timeoutMs` in all), to send a request context of one's own (a mirror's copy); null when not defined.
   * `onConnectFailure` is called when a connection to an endpoint cannot be made. Absent in tools and
   * unit tests.
   */
  proxy?(
    upstream: string,
    timeoutMs: number,
    onConnectFailure?: () => void,
  ): ((ctx: RequestContext) => Promise<void>) | null;
  /** Routes a request again after plugins changed it (proxy_clear_route_cache); absent in tools and unit tests. */
  reroute?: Reroute;
  /** Shared memory of this process's isolates (see shared.ts `sharedBlock`); absent in tools and unit tests. */
  regions?: SharedRegions;
  /** The entry's place in the config ("middleware[0]", "routes.api.middleware[1]"): a stable id for shared state. */
  scope?: string;
  /** This isolate's metrics (GatewayMetrics); absent in tools and unit tests. */
  metrics?: MiddlewareMetrics | null;
}

/** Metrics a middleware may record (implemented by GatewayMetrics). */
export interface MiddlewareMetrics {
  /** A rate_limit decision on `route`: "allowed", "limited" or "error". */
  rateLimitDecision(route: string, result: string): void;
  /** A Redis round trip that answered, in seconds. */
  redisRequest(seconds: number): void;
  /** A Redis request that failed: "timeout", "unavailable" or "reply". */
  redisError(type: string): void;
  /** The Redis connection went up or down. */
  redisState(up: boolean): void;
  /** A request a mirror saw on `route`: sent, skipped_in_flight, skipped_body, skipped_down, aborted_body. */
  mirrorRequest?(route: string, upstream: string, result: string): void;
  /** A GET/HEAD the cache saw on `route`: "hit", "miss", "stale", "revalidated" or "bypass". */
  cacheRequest?(route: string, result: string): void;
}

/** An environment with no upstreams (unit tests, tools). */
export const NO_ENV: MiddlewareEnv = {
  call: (name) => Promise.reject(new Error(`upstream "${name}" is not defined`)),
  hasUpstream: () => false,
};

/** Builds a middleware from its validated, normalised options (once per snapshot). */
export type MiddlewareFactory = (options: never, env: MiddlewareEnv) => Middleware;

/**
 * Built-in middleware by name, each loaded by its first config that names it
 * ({@link loadMiddleware}): a Loom that uses none of them never compiles
 * their code, nor the npm packages behind some (jose, hash-wasm, zlib).
 */
const builtins = new Map<string, () => Promise<MiddlewareFactory>>([
  ["headers", () => import("./headers/index.ts").then((m) => (o: HeadersOptions) => m.headers(o))],
  [
    "security_headers",
    () => import("./headers/index.ts").then((m) => (o: SecurityHeadersOptions) => m.securityHeaders(o)),
  ],
  ["cors", () => import("./cors/index.ts").then((m) => (o: CorsOptions) => m.cors(o))],
  ["ip_filter", () => import("./ip_filter/index.ts").then((m) => (o: IpFilterOptions) => m.ipFilter(o))],
  ["basic_auth", () => import("./basic_auth/index.ts").then((m) => (o: BasicAuthOptions) => m.basicAuth(o))],
  [
    "forward_auth",
    () =>
      import("./forward_auth/index.ts").then((m) => (o: ForwardAuthOptions, env) => m.forwardAuth(o, env)),
  ],
  ["mtls", () => import("./mtls/index.ts").then((m) => (o: MtlsOptions) => m.mtls(o))],
  ["jwt", () => import("./jwt/index.ts").then((m) => (o: JwtOptions, env) => m.jwt(o, env))],
  ["api_key", () => import("./api_key/index.ts").then((m) => (o: ApiKeyOptions) => m.apiKey(o))],
  ["body_limit", () => import("./body_limit/index.ts").then((m) => (o: BodyLimitOptions) => m.bodyLimit(o))],
  ["compress", () => import("./compress/index.ts").then((m) => (o: CompressOptions) => m.compress(o))],
  [
    "rate_limit",
    () => import("./rate_limit/index.ts").then((m) => (o: RateLimitOptions, env) => m.rateLimit(o, env)),
  ],
  ["mirror", () => import("./mirror/index.ts").then((m) => (o: MirrorOptions, env) => m.mirror(o, env))],
  ["fault", () => import("./fault/index.ts").then((m) => (o: FaultOptions) => m.fault(o))],
  ["cache", () => import("./cache/index.ts").then((m) => (o: CacheOptions, env) => m.cache(o, env))],
]);

/** Factories ready to use: built-ins once loaded, and every {@link defineMiddleware}. */
const factories = new Map<string, MiddlewareFactory>();

/** Names of the built-in middleware (tools and tests that load them all). */
export function builtinMiddleware(): string[] {
  return [...builtins.keys()];
}

/**
 * Loads the code of the middleware named in `names` (unknown names are left to
 * {@link createMiddleware}'s error). Runs before a snapshot is built, never per request.
 */
export async function loadMiddleware(names: Iterable<string>): Promise<void> {
  for (const name of new Set(names)) {
    if (factories.has(name)) continue;
    const load = builtins.get(name);
    if (load !== undefined) factories.set(name, await load());
  }
}

/**
 * Adds a middleware named `name`: `options` describes its config (validated
 * like the rest, with line numbers and "did you mean"), `create` builds it.
 */
export function defineMiddleware<O>(
  name: string,
  options: Type,
  create: (options: O, env: MiddlewareEnv) => Middleware,
  description?: string,
): void {
  registerMiddlewareOptions(name, options, description);
  factories.set(name, create as MiddlewareFactory);
}

/** The middleware for a validated config entry (its code loaded by {@link loadMiddleware}). */
export function createMiddleware(entry: MiddlewareEntry, env: MiddlewareEnv = NO_ENV): Middleware {
  const f = factories.get(entry.name);
  if (f === undefined) {
    throw new Error(
      builtins.has(entry.name)
        ? `middleware "${entry.name}" is not loaded (loadMiddleware runs before a snapshot is built)`
        : `middleware "${entry.name}" is not defined`,
    );
  }
  return (f as (o: unknown, env: MiddlewareEnv) => Middleware)(entry.options, env);
}
