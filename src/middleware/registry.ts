/**
 * Middleware by name: what a `middleware:` entry of the config turns into.
 * Built-in middleware are registered here; a middleware defined elsewhere
 * registers itself with {@link defineMiddleware} (options schema and
 * factory) before the config is loaded.
 *
 * @module
 */
import type { Reroute } from "./wasm/index.ts";
import type { Middleware } from "../core/middleware.ts";
import type { Type } from "../config/dsl.ts";
import { type MiddlewareEntry, registerMiddlewareOptions } from "../config/middleware/mod.ts";
import type { CallRequest, CallResponse } from "../proxy/call.ts";
import {
  headers,
  type HeadersOptions,
  securityHeaders,
  type SecurityHeadersOptions,
} from "./headers/index.ts";
import { cors, type CorsOptions } from "./cors/index.ts";
import { ipFilter, type IpFilterOptions } from "./ip_filter/index.ts";
import { basicAuth, type BasicAuthOptions } from "./basic_auth/index.ts";
import { forwardAuth, type ForwardAuthOptions } from "./forward_auth/index.ts";
import { mtls, type MtlsOptions } from "./mtls/index.ts";
import { jwt, type JwtOptions } from "./jwt/index.ts";
import { apiKey, type ApiKeyOptions } from "./api_key/index.ts";
import { bodyLimit } from "./body_limit/index.ts";
import { compress } from "./compress/index.ts";
import type { BodyLimitOptions } from "../config/middleware/body_limit.ts";
import type { CompressOptions } from "../config/middleware/compress.ts";
import type { SharedRegions } from "../core/shared_memory.ts";
import { rateLimit } from "./rate_limit/index.ts";
import type { RateLimitOptions } from "../config/middleware/rate_limit.ts";
import { mirror } from "./mirror/index.ts";
import type { MirrorOptions } from "../config/middleware/mirror.ts";
import { fault } from "./fault/index.ts";
import type { FaultOptions } from "../config/middleware/fault.ts";
import type { RequestContext } from "../core/context.ts";
import { cache } from "./cache/index.ts";
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

const factories = new Map<string, MiddlewareFactory>([
  ["headers", (o: HeadersOptions) => headers(o)],
  ["cors", (o: CorsOptions) => cors(o)],
  ["ip_filter", (o: IpFilterOptions) => ipFilter(o)],
  ["basic_auth", (o: BasicAuthOptions) => basicAuth(o)],
  ["forward_auth", (o: ForwardAuthOptions, env) => forwardAuth(o, env)],
  ["mtls", (o: MtlsOptions) => mtls(o)],
  ["jwt", (o: JwtOptions, env) => jwt(o, env)],
  ["api_key", (o: ApiKeyOptions) => apiKey(o)],
  ["security_headers", (o: SecurityHeadersOptions) => securityHeaders(o)],
  ["body_limit", (o: BodyLimitOptions) => bodyLimit(o)],
  ["compress", (o: CompressOptions) => compress(o)],
  ["rate_limit", (o: RateLimitOptions, env) => rateLimit(o, env)],
  ["mirror", (o: MirrorOptions, env) => mirror(o, env)],
  ["fault", (o: FaultOptions) => fault(o)],
  ["cache", (o: CacheOptions, env) => cache(o, env)],
]);

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

/** The middleware for a validated config entry. */
export function createMiddleware(entry: MiddlewareEntry, env: MiddlewareEnv = NO_ENV): Middleware {
  const f = factories.get(entry.name);
  if (f === undefined) throw new Error(`middleware "${entry.name}" is not defined`);
  return (f as (o: unknown, env: MiddlewareEnv) => Middleware)(entry.options, env);
}
