/**
 * Options of the `cache` middleware (src/middleware/cache/), and the Loom
 * format's top-level `cache` block, which is the same middleware in front of
 * every route.
 *
 * @module
 */
import { type Field, opt, t, type Type } from "../dsl.ts";
import { redisConnectionFields, type RedisOptions } from "./rate_limit.ts";

const TOKEN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
const fieldName = t.string({ pattern: TOKEN, patternMessage: "a header field name" });

const checkPath = (p: string): string | undefined =>
  p.startsWith("/") ? undefined : 'a path starting with "/" (a trailing * matches every path under it)';
const pathList = t.list(t.string({ check: checkPath }));

/** `key: {...}`: what a stored response is found by. */
const keyType: Type = t.object({
  method: opt(t.bool(), true, "GET (HEAD is answered from the GET entry) in the key."),
  host: opt(t.bool(), true, "The request's host (lower-case, without port) in the key."),
  path: opt(t.bool(), true, "The path in the key."),
  query: opt(
    t.oneOf([t.enum(["all", "none"]), t.list(t.string(), { minItems: 1 })]),
    "all",
    "all: the query as sent; none: no query; a list: only these parameters (others do not split the cache).",
  ),
  headers: opt(
    t.list(fieldName),
    [],
    "Request header values that are part of the key (besides the response's Vary).",
  ),
});

/** `redis: {...}` of the cache. */
const redisType: Type = t.object({
  ...redisConnectionFields,
  timeout: opt(
    t.duration(),
    "100ms",
    "Longest a lookup or a write waits for Redis; a lookup then counts as a miss.",
  ),
  connect_timeout: opt(t.duration(), "1s", "Time to establish a connection."),
  prefix: opt(t.string(), "loom:cache:", "Prefix of every key Loom writes."),
});

/** The fields of the middleware (also the top-level block's, with other defaults). */
const fields = {
  store: opt(
    t.enum(["memory", "redis"]),
    "memory",
    "memory: per worker, LRU bounded by max_size; redis: shared by every worker and Loom instance.",
  ),
  max_size: opt(
    t.size(),
    "100MB",
    "memory: bytes of responses kept per worker (least recently used dropped first).",
  ),
  max_object_size: opt(
    t.size(),
    "1MB",
    "Responses with a bigger body are never stored (streamed ones stop being copied).",
  ),
  default_ttl: opt(
    t.duration(),
    "0s",
    "Freshness of a response without Cache-Control max-age/s-maxage or Expires (0: none; statuses 200, 301, 404, ... only).",
  ),
  heuristic: opt(
    t.bool(),
    false,
    "RFC 9111 4.2.2 heuristic freshness: 10% of the time since Last-Modified, for responses without explicit freshness.",
  ),
  stale_while_revalidate: opt(
    t.duration(),
    "0s",
    "Serve a stale response this long past its freshness while one background request refreshes it (when the response sets none).",
  ),
  stale_if_error: opt(
    t.duration(),
    "0s",
    "Serve a stale response this long past its freshness when the upstream fails or answers 500/502/503/504 (when the response sets none).",
  ),
  keep_stale: opt(
    t.duration(),
    "10m",
    "How long an expired response with an ETag or Last-Modified is kept to be revalidated (304) instead of fetched again.",
  ),
  lock_timeout: opt(
    t.duration(),
    "5s",
    "Requests for a key being fetched wait this long for that fetch, then go upstream themselves.",
  ),
  cleanup_interval: opt(t.duration(), "1m", "memory: how often expired responses are swept out."),
  key: opt(keyType, {}, "The cache key."),
  excluded_paths: opt(pathList, [], "Paths never cached (`/auth/*` = the prefix)."),
  included_paths: opt(pathList, [], "When set, only these paths are cached."),
  bypass_header: opt(fieldName, undefined, "A request with this header (any value) skips the cache."),
  redis: opt(redisType, undefined, "Redis for store: redis (default: 127.0.0.1:6379)."),
};

/** `cache: {...}`. */
export const cacheOptions: Field = opt(
  t.object(fields),
  undefined,
  "RFC 9111 response cache (GET and HEAD): Cache-Control, Expires, Vary, revalidation, stale-while-revalidate, stale-if-error, request coalescing; memory or Redis.",
);

/** The normalised key options. */
export interface CacheKeyOptions {
  method: boolean;
  host: boolean;
  path: boolean;
  query: "all" | "none" | string[];
  headers: string[];
}

/** The normalised Redis options (the rate limiter's, without Sentinel and Cluster). */
export type CacheRedisOptions = Omit<RedisOptions, "sentinels" | "master" | "cluster">;

/** The normalised options (durations in ms, sizes in bytes). */
export interface CacheOptions {
  store: "memory" | "redis";
  max_size: number;
  max_object_size: number;
  default_ttl: number;
  heuristic: boolean;
  stale_while_revalidate: number;
  stale_if_error: number;
  keep_stale: number;
  lock_timeout: number;
  cleanup_interval: number;
  key: CacheKeyOptions;
  excluded_paths: string[];
  included_paths: string[];
  bypass_header?: string;
  redis?: CacheRedisOptions;
}

/** The Loom format's top-level block (normalised; absent fields keep their documented defaults). */
export interface TopLevelCache {
  enabled?: boolean;
  max_size?: number;
  default_ttl?: number;
  cleanup_interval?: number;
  stale_while_revalidate?: number;
  excluded_paths?: string[];
  included_paths?: string[];
  bypass_header?: string;
}

/** Schema of the top-level block (Loom format). */
export const topLevelCacheType: Type = t.object({
  enabled: opt(t.bool(), undefined, "Turn the cache on (default true when the block is present)."),
  max_size: opt(t.size(), undefined, "Bytes of responses kept per worker (default 100MB)."),
  default_ttl: opt(
    t.duration(),
    undefined,
    "Freshness of responses without Cache-Control/Expires (default 5m).",
  ),
  cleanup_interval: opt(t.duration(), undefined, "How often expired responses are swept out (default 1m)."),
  stale_while_revalidate: opt(
    t.duration(),
    undefined,
    "Serve stale this long while refreshing in the background (default 30s).",
  ),
  excluded_paths: opt(pathList, undefined, "Paths never cached (`/auth/*` = the prefix)."),
  included_paths: opt(pathList, undefined, "When set, only these paths are cached."),
  bypass_header: opt(
    fieldName,
    undefined,
    "A request with this header skips the cache (default X-Cache-Bypass).",
  ),
});

/** The block as cache options with the Loom format's defaults, or null when off. */
export function topLevelCache(block: TopLevelCache | undefined): CacheOptions | null {
  if (block === undefined || block.enabled === false) return null;
  return {
    store: "memory",
    max_size: block.max_size ?? 100 * 1024 * 1024,
    max_object_size: 1024 * 1024,
    default_ttl: block.default_ttl ?? 5 * 60_000,
    heuristic: false,
    stale_while_revalidate: block.stale_while_revalidate ?? 30_000,
    stale_if_error: 0,
    keep_stale: 10 * 60_000,
    lock_timeout: 5000,
    cleanup_interval: block.cleanup_interval ?? 60_000,
    key: { method: true, host: true, path: true, query: "all", headers: [] },
    excluded_paths: block.excluded_paths ?? [],
    included_paths: block.included_paths ?? [],
    bypass_header: block.bypass_header ?? "X-Cache-Bypass",
  };
}
