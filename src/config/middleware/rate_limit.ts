/**
 * Options of the `rate_limit` middleware (src/middleware/rate_limit/), and
 * the Loom format's top-level `rate_limit` block, which is the same
 * middleware with one limit per client IP in front of every route.
 *
 * @module
 */
import { type Field, opt, req, t, type Type } from "../dsl.ts";

/** One part of a key: what identifies the caller a limit counts. */
export const KEY_PART_HELP =
  "client_ip, route, global, consumer (the API key's name), header:NAME, jwt:CLAIM, " +
  "metadata:NAME (the API key's metadata)";

/** Why `v` is not a key part, or undefined. */
export function keyPartError(v: string): string | undefined {
  if (v === "client_ip" || v === "route" || v === "global" || v === "consumer") return undefined;
  const colon = v.indexOf(":");
  const kind = colon === -1 ? v : v.slice(0, colon);
  const arg = colon === -1 ? "" : v.slice(colon + 1);
  if (kind === "header" || kind === "metadata") {
    return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(arg)
      ? undefined
      : `${kind}: needs a header field name (${kind}:x-name)`;
  }
  if (kind === "jwt") return arg === "" ? "jwt: needs a claim name (jwt:sub)" : undefined;
  return `unknown key part "${v}" (one of: ${KEY_PART_HELP})`;
}

const keyPart = t.string({ check: keyPartError, description: `A key part: ${KEY_PART_HELP}.` });

/** Fields shared by a limit and a class of it. */
const rateFields: Record<string, Field> = {
  rate: opt(
    t.number({ min: 0 }),
    undefined,
    "token_bucket: tokens added per `per` (requests per second by default).",
  ),
  per: opt(t.duration(), undefined, "token_bucket: the period of `rate` (default 1s)."),
  burst: opt(
    t.int({ min: 1 }),
    undefined,
    "token_bucket: bucket size, requests allowed at once (default: rate, at least 1).",
  ),
  limit: opt(t.int({ min: 1 }), undefined, "sliding_window: requests per window."),
  window: opt(t.duration(), undefined, "sliding_window: the window."),
};

/** One limit. */
const limitType: Type = t.object({
  name: opt(
    t.string({ pattern: "^[A-Za-z0-9_.:+-]+$", patternMessage: "letters, digits and _ . : + - only" }),
    undefined,
    "Policy name in the RateLimit headers and the Redis key (default: the key parts joined with +).",
  ),
  key: opt(
    t.oneOf([keyPart, t.list(keyPart, { minItems: 1 })]),
    "client_ip",
    "What is counted separately: one key part, or a list of them (a composite key).",
  ),
  algorithm: opt(t.enum(["token_bucket", "sliding_window"]), "token_bucket", "Counting algorithm."),
  ...rateFields,
  class: opt(
    keyPart,
    undefined,
    "Key part choosing the limit from `classes` (e.g. metadata:x-plan, jwt:plan).",
  ),
  classes: opt(
    t.map(t.object(rateFields)),
    undefined,
    "Limit per class value (same fields as the limit); other values get the limit's own rate, or none without one.",
  ),
  missing: opt(
    t.enum(["share", "skip"]),
    "share",
    "A key part the request lacks (no such header, claim or API key): share one bucket with every such request, or skip this limit.",
  ),
  store: opt(
    t.enum(["local", "redis"]),
    "local",
    "local: exact across this process's workers; redis: across Loom instances.",
  ),
  fail: opt(
    t.enum(["open", "closed"]),
    "open",
    "redis: when Redis is down or slow, let requests pass (open) or refuse them with 503 (closed).",
  ),
  prefetch: opt(
    t.int({ min: 1, max: 1000 }),
    1,
    "redis: tokens taken per round trip and spent locally (1 = none; see the error bound in the README).",
  ),
  max_keys: opt(
    t.int({ min: 16, max: 1 << 24 }),
    65536,
    "local: keys tracked (fixed shared memory, 32 bytes a key).",
  ),
});

/** `redis: {...}`. */
/** Where and how to connect: the first fields of every `redis:` block (rate_limit, cache). */
export const redisConnectionFields: Record<string, Field> = {
  address: opt(t.string(), "127.0.0.1:6379", "host:port of the Redis server."),
  username: opt(t.string(), undefined, "ACL user."),
  password: opt(t.string(), undefined, "Password (AUTH)."),
  db: opt(t.int({ min: 0 }), 0, "Database number."),
  tls: opt(t.bool(), false, "Connect with TLS."),
};

const redisType: Type = t.object({
  ...redisConnectionFields,
  timeout: opt(t.duration(), "50ms", "Longest a request waits for Redis; then `fail` decides."),
  connect_timeout: opt(t.duration(), "1s", "Time to establish a connection."),
  prefix: opt(t.string(), "loom:rl:", "Prefix of every key Loom writes."),
  sentinels: opt(
    t.list(t.string()),
    undefined,
    "Redis Sentinel addresses (host:port); `master` names the set.",
  ),
  master: opt(t.string(), undefined, "Sentinel master name."),
  cluster: opt(t.list(t.string()), undefined, "Redis Cluster seed nodes (host:port) instead of `address`."),
});

/** `rate_limit: {...}`. */
export const rateLimitOptions: Field = opt(
  t.object({
    limits: req(
      t.list(limitType, { minItems: 1 }),
      "Limits checked in order; a request passes only if all pass.",
    ),
    headers: opt(
      t.bool(),
      true,
      "RateLimit-Policy and RateLimit on allowed responses too (429s always have them).",
    ),
    message: opt(t.string(), "rate limit exceeded", "Error message of the 429."),
    redis: opt(redisType, undefined, "Redis for limits with `store: redis`."),
  }),
  undefined,
  "Rate limits (token bucket or sliding window) per client IP, header, JWT claim, API key, route or composite; 429 with Retry-After and RateLimit headers.",
);

/** Rates of a limit or a class, as written. */
export interface RateFields {
  rate?: number;
  /** ms. */
  per?: number;
  burst?: number;
  limit?: number;
  /** ms. */
  window?: number;
}

/** One normalised limit. */
export interface LimitOptions extends RateFields {
  name?: string;
  key: string | string[];
  algorithm: "token_bucket" | "sliding_window";
  class?: string;
  classes?: Record<string, RateFields>;
  missing: "share" | "skip";
  store: "local" | "redis";
  fail: "open" | "closed";
  prefetch: number;
  max_keys: number;
}

/** The normalised Redis options. */
export interface RedisOptions {
  address: string;
  username?: string;
  password?: string;
  db: number;
  tls: boolean;
  /** ms. */
  timeout: number;
  /** ms. */
  connect_timeout: number;
  prefix: string;
  sentinels?: string[];
  master?: string;
  cluster?: string[];
}

/** The normalised options. */
export interface RateLimitOptions {
  limits: LimitOptions[];
  headers: boolean;
  message: string;
  redis?: RedisOptions;
}

/** Problems of rates written for `algorithm` (a limit's own or a class's), as [field, message]. */
function rateProblems(r: RateFields, algorithm: string, own: boolean): [string, string][] {
  const out: [string, string][] = [];
  const tb = algorithm === "token_bucket";
  const wrong = tb ? ["limit", "window"] : ["rate", "per", "burst"];
  for (const f of wrong) {
    if ((r as Record<string, unknown>)[f] !== undefined) out.push([f, `"${f}" is not a ${algorithm} field`]);
  }
  if (!own) return out;
  if (tb && r.rate === 0) out.push(["rate", "must be more than 0"]);
  if (!tb && (r.limit === undefined) !== (r.window === undefined)) {
    out.push([r.limit === undefined ? "limit" : "window", "sliding_window needs both limit and window"]);
  }
  if (!tb && r.window === 0) out.push(["window", "must be more than 0"]);
  if (tb && r.rate === undefined && (r.burst !== undefined || r.per !== undefined)) {
    out.push(["rate", "token_bucket needs rate"]);
  }
  return out;
}

/** Cross-field problems of `o` as [sub-path, message] (config/semantic.ts reports them with positions). */
export function rateLimitProblems(o: RateLimitOptions): [string, string][] {
  const out: [string, string][] = [];
  let redis = false;
  o.limits.forEach((l, i) => {
    const at = `limits[${i}]`;
    for (const [f, m] of rateProblems(l, l.algorithm, true)) out.push([`${at}.${f}`, m]);
    const hasOwn = l.algorithm === "token_bucket" ? l.rate !== undefined : l.limit !== undefined;
    const classes = Object.entries(l.classes ?? {});
    if (!hasOwn && classes.length === 0) {
      out.push([
        at,
        l.algorithm === "token_bucket" ? "needs rate (or classes)" : "needs limit and window (or classes)",
      ]);
    }
    if ((l.class === undefined) !== (l.classes === undefined)) {
      out.push([at, "class and classes go together"]);
    }
    for (const [name, c] of classes) {
      for (const [f, m] of rateProblems(c, l.algorithm, true)) out.push([`${at}.classes.${name}.${f}`, m]);
      if (l.algorithm === "token_bucket" && c.rate === undefined) {
        out.push([`${at}.classes.${name}`, "needs rate"]);
      }
      if (l.algorithm === "sliding_window" && c.limit === undefined && c.window === undefined) {
        out.push([`${at}.classes.${name}`, "needs limit and window"]);
      }
    }
    if (l.store === "redis") redis = true;
    else if (l.prefetch !== 1) out.push([`${at}.prefetch`, "prefetch is for store: redis"]);
  });
  if (redis && o.redis === undefined) {
    out.push(["limits", "a limit has store: redis but there is no redis block"]);
  }
  const names = o.limits.map(limitName);
  names.forEach((n, i) => {
    if (names.indexOf(n) !== i) out.push([`limits[${i}].name`, `two limits named "${n}" (give them names)`]);
  });
  if (o.redis?.sentinels !== undefined && o.redis.master === undefined) {
    out.push(["redis.master", "sentinels need the master name"]);
  }
  return out;
}

/** The key parts of a limit. */
export function keyParts(l: LimitOptions): string[] {
  return typeof l.key === "string" ? [l.key] : l.key;
}

/** A limit's policy name: its `name`, else its key parts joined with "+". */
export function limitName(l: LimitOptions): string {
  return l.name ?? keyParts(l).join("+");
}

/** The Loom format's top-level block (normalised). */
export interface TopLevelRateLimit {
  enabled?: boolean;
  /** Requests per second. */
  rate?: number;
  burst?: number;
  /** ms; accepted (expired entries are reclaimed in place, so nothing needs a sweep). */
  cleanup_interval?: number;
}

/** The block as one limit per client IP (rate default 100/s, burst default rate), or null when off. */
export function topLevelRateLimit(block: TopLevelRateLimit | undefined): RateLimitOptions | null {
  if (block === undefined || block.enabled === false) return null;
  const rate = block.rate ?? 100;
  if (rate <= 0) return null;
  return {
    limits: [{
      name: "default",
      key: "client_ip",
      algorithm: "token_bucket",
      rate,
      // burst 0 (or none): the rate, at least 1 (a bucket of 0 would refuse everything).
      burst: block.burst || Math.max(1, Math.ceil(rate)),
      missing: "share",
      store: "local",
      fail: "open",
      prefetch: 1,
      max_keys: 65536,
    }],
    headers: true,
    message: "rate limit exceeded",
  };
}

/** Schema of the top-level block (Loom format). */
export const topLevelRateLimitType: Type = t.object({
  enabled: opt(t.bool(), undefined, "Turn the limit on (default true when the block is present)."),
  rate: opt(t.number({ min: 0 }), undefined, "Requests per second per client IP (default 100)."),
  burst: opt(t.int({ min: 0 }), undefined, "Requests a client may send at once (default: rate)."),
  cleanup_interval: opt(
    t.duration(),
    undefined,
    "Accepted for compatibility: expired entries are reclaimed in place, nothing needs a sweep.",
  ),
});
