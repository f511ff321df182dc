/**
 * `rate_limit`: token bucket and sliding window limits per client IP, header,
 * JWT claim, API key (consumer), route, or a composite of these; counted once
 * per process across its workers (`store: local`) or across Loom instances
 * through Redis (`store: redis`).
 *
 * ```yaml
 * middleware:
 *   - rate_limit:
 *       limits:
 *         - { name: ip, key: client_ip, rate: 20, burst: 40 }            # 20/s, bursts of 40
 *         - name: plan                                                    # per API-key plan
 *           key: consumer
 *           algorithm: sliding_window
 *           class: metadata:x-plan
 *           classes: { gold: { limit: 10000, window: 1m }, free: { limit: 100, window: 1m } }
 *           store: redis
 *           fail: open
 *       redis: { address: "127.0.0.1:6379", timeout: 50ms }
 * ```
 *
 * - A request passes when every limit passes; limits are checked in order
 *   and the units taken by the ones that passed are given back when a later
 *   one refuses (an abusive client refused per IP does not drain a global
 *   limit). Refused: 429 through {@link reject} (`rate_limit/limited`) with
 *   `Retry-After`, `RateLimit-Policy: "ip";q=20;w=1` and `RateLimit: "ip";r=0;t=1`
 *   (draft-ietf-httpapi-ratelimit-headers); allowed responses carry the two
 *   RateLimit fields too unless `headers: false`.
 * - Token bucket = GCRA (one number per key, the theoretical arrival time):
 *   `rate` per `per` (1 s), `burst` at once. Sliding window counter: the
 *   current fixed window's count plus the previous one's weighted by its
 *   overlap (an estimate: exact for even traffic, at most the previous
 *   window's count off otherwise; two numbers per key instead of a log).
 *
 * ## Local store: one table per limit in shared memory
 *
 * `workers: N` runs N isolates; a per-isolate count would let N times the
 * limit through. Each local limit (and each class of it) owns a fixed-size
 * open-addressed hash table in a SharedArrayBuffer ({@link LocalTable}),
 * reserved by the supervisor for the config (`scope/limitN.class:algorithm:slots`,
 * scope = the entry's place in the config, see ../shared.ts) and posted to
 * every worker with the config; a reload that keeps the limit keeps its
 * table and counts. 32 bytes a slot: a lock word, a 64-bit key hash, and the
 * algorithm's state (GCRA: the arrival time; window: start, count, previous count).
 *
 * - Lookup: hash the key string (cyrb53-style, 64 bits; keys are not stored,
 *   a collision — about 1 in 10^9 for 100 000 live keys — merges two keys),
 *   probe up to 16 slots from `hash & mask` with atomic loads, then take the
 *   slot's spinlock (Atomics.compareExchange), re-check, update, release.
 *   Critical sections are a few float operations; no allocation per request
 *   beyond the key string.
 * - Bounded memory: `max_keys` (rounded up to a power of two) × 32 bytes,
 *   fixed. A slot whose state carries no information any more (a full bucket,
 *   a window two windows old) is reclaimed in place by the next key probing
 *   it; when all 16 probed slots are live, the one closest to expiry is
 *   evicted (its key starts afresh: the only way a local limit lets more through).
 * - Time is `performance.timeOrigin + performance.now()`, the same clock in every isolate.
 * - Measured on a 2-core machine: one table update 0.17 µs, 0.27 µs with two
 *   Worker isolates updating at once (one key or 10 000); through the gateway
 *   (bench/middleware.ts `rate-limit-local`) +1.4 µs of CPU per request with
 *   the RateLimit fields, +0.7 µs without (`headers: false`). Exactness: two
 *   workers taking 60 000 units from buckets of 20 000 get exactly 20 000
 *   (index_test.ts); through a `workers: 2` gateway at 130 times the limit
 *   for 5 s, within 1 % of burst + rate × time (tests/mw_rate_limit_test.ts).
 *
 * ## Redis store
 *
 * See redis.ts: one script call per limit (EVALSHA, atomic on the server),
 * all of a request's limits in one pipelined round trip, `timeout` (50 ms)
 * at most, `fail: open|closed` when Redis is down or slow. A refusal is held
 * in the isolate until its retry time (no unit can appear earlier): a client
 * far over its limit costs a round trip per retry period. `prefetch: N`
 * takes up to N units per round trip and spends them in this isolate for at
 * most {@link LEASE_MS}: fewer round trips, at the cost of an error bound of
 * (N−1) units per isolate and key (units granted but not yet spent count
 * against the limit early; leases that expire unspent are lost).
 *
 * @module
 */
import type { RequestContext } from "../../core/context.ts";
import type { Middleware, ResponseHead } from "../../core/middleware.ts";
import {
  keyParts,
  limitName,
  type LimitOptions,
  type RateFields,
  type RateLimitOptions,
} from "../../config/middleware/rate_limit.ts";
import { reject } from "../reject.ts";
import type { MiddlewareEnv, MiddlewareMetrics } from "../registry.ts";
import { defineSharedNeeds, sharedBlock } from "../shared.ts";
import { JWT_CLAIMS_VAR } from "../template.ts";
import { API_KEY_CONSUMER_VAR, apiKeyMetadata } from "../api_key/index.ts";
import { last, type LimitParams, LocalTable, nowMs, tableBytes, tableSlots } from "./table.ts";
import { type RedisLink, redisLink, type ScriptReply } from "./redis.ts";

/** ms a prefetched unit may wait in an isolate before it is dropped. */
export const LEASE_MS = 1000;
/** Key strings longer than this are shortened (prefix + hash): a huge header must not make a huge key. */
const MAX_KEY = 256;

/** A part of a key read from the request; undefined when the request lacks it. */
type KeyPart = (ctx: RequestContext) => string | undefined;

function claim(ctx: RequestContext, name: string): string | undefined {
  const claims = ctx.vars.get(JWT_CLAIMS_VAR) as Record<string, unknown> | undefined;
  const v = claims?.[name];
  return v === undefined || v === null ? undefined : typeof v === "string" ? v : JSON.stringify(v);
}

/** Compiles one key part (validated by the config schema). */
export function compileKeyPart(part: string): KeyPart {
  switch (part) {
    case "client_ip":
      return (c) => c.clientIp;
    case "route":
      return (c) => c.route?.id ?? "";
    case "global":
      return () => "";
    case "consumer":
      return (c) => {
        const v = c.vars.get(API_KEY_CONSUMER_VAR) as string | undefined;
        return v === "" ? undefined : v;
      };
  }
  const colon = part.indexOf(":");
  const kind = part.slice(0, colon);
  const arg = part.slice(colon + 1);
  if (kind === "header") {
    const name = arg.toLowerCase();
    return (c) => c.headers.getJoined(name);
  }
  if (kind === "jwt") return (c) => claim(c, arg);
  if (kind === "metadata") {
    const name = arg.toLowerCase();
    return (c) => apiKeyMetadata(c, name);
  }
  throw new Error(`rate_limit: unknown key part "${part}"`);
}

/** FNV-1a of `s` as 8 hex digits (shortening long keys). */
function fnv(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}

/** The key of a request (null: skip the limit), from parts joined with U+001F. */
export function compileKey(
  parts: readonly string[],
  skipMissing: boolean,
): (ctx: RequestContext) => string | null {
  const fs = parts.map(compileKeyPart);
  const bound = (k: string) => k.length <= MAX_KEY ? k : k.slice(0, MAX_KEY - 9) + "#" + fnv(k);
  if (fs.length === 1) {
    const f = fs[0];
    return (c) => {
      const v = f(c);
      return v === undefined ? (skipMissing ? null : "") : bound(v);
    };
  }
  return (c) => {
    let k = "";
    for (let i = 0; i < fs.length; i++) {
      const v = fs[i](c);
      if (v === undefined && skipMissing) return null;
      k += i === 0 ? (v ?? "") : "\x1f" + (v ?? "");
    }
    return bound(k);
  };
}

/** One limit or one class of it: what a decision needs. */
interface Policy {
  /** Name in the RateLimit fields. */
  readonly name: string;
  readonly params: LimitParams;
  /** `"name";q=..;w=..` */
  readonly policyField: string;
  readonly table: LocalTable | null;
  /** Redis key prefix (store: redis). */
  readonly redisPrefix: string;
  readonly alg: "t" | "w";
}

/** A compiled limit. */
interface Limit {
  readonly key: (ctx: RequestContext) => string | null;
  /** The limit's own policy (null: only classes). */
  readonly base: Policy | null;
  readonly classOf: KeyPart | null;
  readonly classes: ReadonlyMap<string, Policy>;
  readonly link: RedisLink | null;
  readonly failClosed: boolean;
  readonly prefetch: number;
  /** Prefetched units by Redis key (prefetch > 1). */
  readonly leases: Map<string, Lease>;
}

/** Units prefetched from Redis and spent locally until `until`, or (units -1) a refusal held until then. */
interface Lease {
  units: number;
  until: number;
  remaining: number;
  resetAt: number;
}

/** Most leases kept per limit (oldest dropped first). */
const MAX_LEASES = 10_000;

function setLease(l: Limit, key: string, lease: Lease): void {
  if (l.leases.size >= MAX_LEASES && !l.leases.has(key)) l.leases.delete(l.leases.keys().next().value!);
  l.leases.set(key, lease);
}

/** The limit parameters of `r` (a limit or a class), or null when it sets none. */
function paramsOf(r: RateFields, algorithm: string): LimitParams | null {
  if (algorithm === "token_bucket") {
    if (r.rate === undefined || r.rate <= 0) return null;
    const per = r.per ?? 1000;
    return {
      algorithm: "token_bucket",
      interval: per / r.rate,
      capacity: r.burst ?? Math.max(1, Math.ceil(r.rate)),
    };
  }
  if (r.limit === undefined || r.window === undefined || r.window <= 0) return null;
  return { algorithm: "sliding_window", interval: r.window, capacity: r.limit };
}

/** `"name";q=..;w=..`: quota per window (token bucket: `rate` per `per`). */
function policyField(name: string, r: RateFields, p: LimitParams): string {
  const q = p.algorithm === "token_bucket" ? Math.max(1, Math.round(r.rate!)) : p.capacity;
  const w = Math.max(1, Math.ceil((p.algorithm === "token_bucket" ? r.per ?? 1000 : p.interval) / 1000));
  return `"${name}";q=${q};w=${w}`;
}

/** The name of the shared block of limit `i`'s class `cls` ("" = its own rates). */
function blockName(i: number, cls: string, l: LimitOptions): string {
  return `limit${i}.${cls}:${l.algorithm}:${tableSlots(l.max_keys)}`;
}

/** Shared blocks of a rate_limit entry: one table per local limit and class. */
export function rateLimitNeeds(o: RateLimitOptions): [string, number][] {
  const out: [string, number][] = [];
  o.limits.forEach((l, i) => {
    if (l.store !== "local") return;
    const bytes = tableBytes(l.max_keys);
    if (paramsOf(l, l.algorithm) !== null) out.push([blockName(i, "", l), bytes]);
    for (const cls of Object.keys(l.classes ?? {})) out.push([blockName(i, cls, l), bytes]);
  });
  return out;
}

defineSharedNeeds("rate_limit", rateLimitNeeds);

/** Seconds for a header: whole, rounded up, at least `min`. */
function secs(ms: number, min: number): number {
  const s = Math.ceil(ms / 1000 - 1e-9);
  return s < min ? min : s;
}

/** Figures of one limit's decision, for the RateLimit fields. */
interface Outcome {
  policy: Policy;
  remaining: number;
  resetMs: number;
}

/** Request-scoped record of the decisions (for the response hook). */
interface Decided {
  policies: string;
  limits: string;
}

/** The middleware for `o`. Throws on options the config check would refuse. */
export function rateLimit(o: RateLimitOptions, env: MiddlewareEnv): Middleware {
  const metrics: MiddlewareMetrics | null = env.metrics ?? null;
  const holder = {};
  const scope = env.scope ?? "";
  const limits: Limit[] = o.limits.map((l, i) => {
    const name = limitName(l);
    let link: RedisLink | null = null;
    if (l.store === "redis") {
      if (o.redis === undefined) throw new Error("rate_limit: store: redis needs a redis block");
      link = redisLink(o.redis, holder);
      if (metrics !== null) link.metrics = metrics;
    }
    const policy = (cls: string, r: RateFields): Policy | null => {
      const params = paramsOf(r, l.algorithm);
      if (params === null) return null;
      const pname = cls === "" ? name : `${name}.${cls}`;
      return {
        name: pname,
        params,
        policyField: policyField(pname, r, params),
        table: l.store === "local"
          ? new LocalTable(sharedBlock(env, blockName(i, cls, l), tableBytes(l.max_keys)))
          : null,
        redisPrefix: `${o.redis?.prefix ?? ""}${scope}|${pname}|`,
        alg: l.algorithm === "token_bucket" ? "t" : "w",
      };
    };
    const classes = new Map<string, Policy>();
    for (const [cls, r] of Object.entries(l.classes ?? {})) {
      const p = policy(cls, r);
      if (p !== null) classes.set(cls, p);
    }
    return {
      key: compileKey(keyParts(l), l.missing === "skip"),
      base: policy("", l),
      classOf: l.class !== undefined ? compileKeyPart(l.class) : null,
      classes,
      link,
      failClosed: l.fail === "closed",
      prefetch: l.prefetch,
      leases: new Map(),
    };
  });
  const hasRedis = limits.some((l) => l.link !== null);
  const decidedVar = `loom.rate_limit.${scope}`;
  const withHeaders = o.headers;

  const policyFor = (l: Limit, ctx: RequestContext): Policy | null => {
    if (l.classOf === null) return l.base;
    const cls = l.classOf(ctx);
    return (cls === undefined ? undefined : l.classes.get(cls)) ?? l.base;
  };

  const record = (ctx: RequestContext, result: string) =>
    metrics?.rateLimitDecision(ctx.route?.id ?? "", result);

  // The local decisions of the request being decided now (synchronous, so one set per middleware):
  // no array per request. Entries [0, nLocal) are the figures of the local limits decided.
  const nLimits = limits.length;
  const sPolicy: (Policy | null)[] = new Array(nLimits).fill(null);
  const sKey: string[] = new Array(nLimits).fill("");
  const sRemaining = new Float64Array(nLimits);
  const sReset = new Float64Array(nLimits);
  let nLocal = 0;

  /** Stores the RateLimit fields of the local figures and `outcomes` for the response hook. */
  const remember = (ctx: RequestContext, local: number, outcomes: readonly Outcome[] | null) => {
    let policies = "";
    let fields = "";
    for (let i = 0; i < local; i++) {
      const p = sPolicy[i]!;
      const sep = i === 0 ? "" : ", ";
      policies += sep + p.policyField;
      fields += sep + `"${p.name}";r=${sRemaining[i]};t=${secs(sReset[i], 0)}`;
    }
    for (const x of outcomes ?? []) {
      const sep = policies === "" ? "" : ", ";
      policies += sep + x.policy.policyField;
      fields += sep + `"${x.policy.name}";r=${x.remaining};t=${secs(x.resetMs, 0)}`;
    }
    if (policies !== "") ctx.vars.set(decidedVar, { policies, limits: fields } satisfies Decided);
  };

  const refuse = (ctx: RequestContext, local: number, outcomes: Outcome[] | null, retryMs: number) => {
    record(ctx, "limited");
    remember(ctx, local, outcomes);
    return reject(ctx, "rate_limit", "limited", 429, o.message, [["retry-after", String(secs(retryMs, 1))]]);
  };

  const unavailable = (ctx: RequestContext) => {
    record(ctx, "error");
    return reject(ctx, "rate_limit", "unavailable", 503, "rate limit store unavailable", [[
      "retry-after",
      "1",
    ]]);
  };

  /**
   * Local limits, in order, with no await: figures into the scratch arrays
   * (`nLocal` of them). Returns the retry ms of a refusal (units taken
   * before it are given back), or -1.
   */
  const decideLocal = (ctx: RequestContext): number => {
    nLocal = 0;
    for (let i = 0; i < nLimits; i++) {
      const l = limits[i];
      if (l.link !== null) continue;
      const key = l.key(ctx);
      if (key === null) continue;
      const p = policyFor(l, ctx);
      if (p === null) continue;
      p.table!.take(key, p.params);
      const n = nLocal++;
      sPolicy[n] = p;
      sKey[n] = key;
      sRemaining[n] = last.remaining;
      sReset[n] = last.granted > 0 ? last.resetMs : last.retryMs;
      if (last.granted === 0) {
        const retry = last.retryMs;
        for (let j = 0; j < n; j++) sPolicy[j]!.table!.take(sKey[j], sPolicy[j]!.params, -1);
        return retry;
      }
    }
    return -1;
  };

  /**
   * A Redis limit's decision: from this isolate's lease when it has units
   * (prefetch) or holds a refusal whose retry time has not come (no unit can
   * appear before it), else a round trip.
   */
  const redisTake = (l: Limit, p: Policy, key: string): ScriptReply | null | Promise<ScriptReply | null> => {
    const rkey = p.redisPrefix + key;
    const lease = l.leases.get(rkey);
    if (lease !== undefined) {
      const now = nowMs();
      if (now < lease.until) {
        if (lease.units > 0) {
          lease.units--;
          return [1, lease.remaining, "0", String(lease.resetAt - now)];
        }
        if (lease.units < 0) return [0, 0, String(lease.until - now), String(lease.resetAt - now)];
      }
    }
    return l.link!.take(rkey, p.alg, p.params.interval, p.params.capacity, l.prefetch).then((r) => {
      if (r === null || r[0] === 1) return r;
      const now = nowMs();
      const cur = l.leases.get(rkey);
      const holding = cur !== undefined && cur.units > 0 && now < cur.until;
      if (r[0] === 0) {
        // A refusal is held until its retry time (unless this isolate still holds units).
        if (!holding) {
          setLease(l, rkey, {
            units: -1,
            until: now + Number(r[2]),
            remaining: 0,
            resetAt: now + Number(r[3]),
          });
        }
      } else if (holding) {
        cur.units += r[0] - 1; // concurrent round trips of one isolate add up
        cur.until = now + LEASE_MS;
      } else {
        setLease(l, rkey, {
          units: r[0] - 1,
          until: now + LEASE_MS,
          remaining: r[1],
          resetAt: now + Number(r[3]),
        });
      }
      return r;
    });
  };

  const decideRedis = async (ctx: RequestContext, next: () => Promise<void>): Promise<void> => {
    // The local figures, out of the scratch arrays before the await.
    const outcomes: Outcome[] = [];
    const taken: [Policy, string][] = [];
    for (let i = 0; i < nLocal; i++) {
      outcomes.push({ policy: sPolicy[i]!, remaining: sRemaining[i], resetMs: sReset[i] });
      taken.push([sPolicy[i]!, sKey[i]]);
    }
    const calls: [Limit, Policy, string][] = [];
    const replies: (ScriptReply | null | Promise<ScriptReply | null>)[] = [];
    for (const l of limits) {
      if (l.link === null) continue;
      const key = l.key(ctx);
      if (key === null) continue;
      const p = policyFor(l, ctx);
      if (p === null) continue;
      calls.push([l, p, key]);
      replies.push(redisTake(l, p, key));
    }
    const got = await Promise.all(replies);
    let retryMs = -1;
    let failed = false;
    let closed = false;
    const granted: [Limit, Policy, string][] = [];
    for (let i = 0; i < calls.length; i++) {
      const [l, p] = calls[i];
      const r = got[i];
      if (r === null) {
        failed = true;
        if (l.failClosed) closed = true;
        continue;
      }
      const ok = r[0] > 0;
      outcomes.push({ policy: p, remaining: r[1], resetMs: Number(ok ? r[3] : r[2]) });
      if (ok) granted.push(calls[i]);
      else retryMs = Math.max(retryMs, Number(r[2]));
    }
    if (retryMs >= 0 || closed) {
      for (const [p, key] of taken) p.table!.take(key, p.params, -1);
      // Only units this request took from Redis itself go back (a lease's unit is simply spent).
      for (const [l, p, key] of granted) {
        if (l.prefetch === 1) {
          l.link!.send(p.redisPrefix + key, p.alg, p.params.interval, p.params.capacity, -1);
        }
      }
      return closed && retryMs < 0 ? unavailable(ctx) : refuse(ctx, 0, outcomes, retryMs);
    }
    record(ctx, failed ? "error" : "allowed");
    if (withHeaders) remember(ctx, 0, outcomes);
    return next();
  };

  return {
    name: "rate_limit",
    request: (ctx, next) => {
      const retryMs = decideLocal(ctx);
      if (retryMs >= 0) return refuse(ctx, nLocal, null, retryMs);
      if (hasRedis) return decideRedis(ctx, next);
      record(ctx, "allowed");
      if (withHeaders && nLocal > 0) remember(ctx, nLocal, null);
      return next();
    },
    response: (ctx: RequestContext, head: ResponseHead) => {
      const d = ctx.vars.get(decidedVar) as Decided | undefined;
      if (d === undefined) return;
      head.headers.append("ratelimit-policy", d.policies);
      head.headers.append("ratelimit", d.limits);
    },
  };
}
