/**
 * The Redis store of rate limits: one connection per isolate and Redis
 * config (ioredis, loaded on first use), shared by every limit and snapshot
 * that uses it, and the Lua script that decides atomically on the server.
 *
 * - One EVALSHA per limit (ioredis `defineCommand`: EVALSHA, EVAL once after
 *   NOSCRIPT, e.g. after a Redis restart); the commands of one request are
 *   written in the same tick, so they travel in one pipelined write and come
 *   back in one round trip. Single-key scripts: Redis Cluster routes each by
 *   its key's slot.
 * - The script reads the server's clock (TIME): Loom hosts need no clock sync.
 * - Never stalls a request: no offline queue (a command while disconnected
 *   fails at once), no retry of a command after a disconnect, a timeout per
 *   call, and a cap on commands in flight. Reconnection with exponential
 *   backoff (50 ms doubling to 2 s, with jitter) is ioredis' own.
 * - One log line per state change (up → down, down → up), and metrics.
 *
 * @module
 */
import type { Cluster, Redis, RedisOptions as IoRedisOptions } from "ioredis";
import type { RedisOptions } from "../../config/middleware/rate_limit.ts";
import type { MiddlewareMetrics } from "../registry.ts";
import { logger } from "../../observability/logger.ts";

/**
 * KEYS[1]: the key. ARGV: algorithm ("t" token bucket as GCRA, "w" sliding
 * window), interval (ms per token / window ms), capacity (burst / limit), n
 * (units to take, at most; negative: give back). Returns {granted, remaining,
 * retry ms, reset ms}. GCRA keeps the theoretical arrival time in a string key
 * that expires when the bucket is full again; the sliding window keeps
 * {s: window start, c: count, p: previous count} in a hash that expires two
 * windows after its start.
 */
export const SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local iv = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
if ARGV[1] == 't' then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  if tat < now then tat = now end
  if n < 0 then
    tat = tat + n * iv
    if tat > now then
      redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now))
    else
      redis.call('DEL', KEYS[1])
    end
    return {0, 0, '0', '0'}
  end
  local tau = cap * iv
  local avail = math.floor((now + tau - tat) / iv + 1e-6)
  if avail < 1 then
    return {0, 0, tostring(tat + iv - tau - now), tostring(tat - now)}
  end
  local k = math.min(n, avail)
  tat = tat + k * iv
  redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.max(1, math.ceil(tat - now)))
  return {k, math.floor((now + tau - tat) / iv + 1e-6), '0', tostring(tat - now)}
end
local st = redis.call('HMGET', KEYS[1], 's', 'c', 'p')
local start = math.floor(now / iv) * iv
local s = tonumber(st[1]) or -1
local c = tonumber(st[2]) or 0
local p = tonumber(st[3]) or 0
if n < 0 then
  if s == start then redis.call('HSET', KEYS[1], 'c', math.max(0, c + n)) end
  return {0, 0, '0', '0'}
end
if s ~= start then
  if s == start - iv then p = c else p = 0 end
  c = 0
end
local el = now - start
local est = p * (iv - el) / iv + c
local avail = math.floor(cap - est + 1e-6)
if avail < 1 then
  local retry
  if c + 1 <= cap then
    if p > 0 then retry = math.max(0, iv * (1 - (cap - 1 - c) / p) - el) else retry = 0 end
  else
    retry = iv - el + math.max(0, iv * (1 - (cap - 1) / c))
  end
  return {0, 0, tostring(retry), tostring(iv - el)}
end
local k = math.min(n, avail)
c = c + k
redis.call('HSET', KEYS[1], 's', string.format('%.0f', start), 'c', c, 'p', p)
redis.call('PEXPIRE', KEYS[1], math.ceil(2 * iv - el) + 1)
return {k, math.max(0, math.floor(cap - est - k + 1e-6)), '0', tostring(iv - el)}
`;

/** The script's answer: granted, remaining, retry ms, reset ms. */
export type ScriptReply = [number, number, string, string];

/** Commands in flight past which new ones fail at once (a stalled Redis must not pile up memory). */
const MAX_IN_FLIGHT = 10_000;
/** Consecutive failed calls (timeouts, errors) that mark a connected Redis as down. */
const DOWN_AFTER = 3;

type Client = (Redis | Cluster) & {
  loomRateLimit(key: string, alg: string, iv: number, cap: number, n: number): Promise<ScriptReply>;
};

/** `host:port` (IPv6 in brackets) as ioredis wants it; port 6379 when absent. */
export function hostPort(a: string): { host: string; port: number } {
  const i = a.lastIndexOf(":");
  const host = i === -1 ? a : a.slice(0, i).replace(/^\[|\]$/g, "");
  return { host: host || "127.0.0.1", port: i === -1 ? 6379 : Number(a.slice(i + 1)) || 6379 };
}

/** Backoff of reconnection attempt `times` (1, 2, ...): 50 ms doubling to 2 s, ±20 % jitter. */
export function backoff(times: number): number {
  const base = Math.min(2000, 50 * 2 ** Math.min(times - 1, 6));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/**
 * ioredis options that never make a request wait: nothing queued while
 * disconnected, nothing re-sent after a disconnect, reconnection with
 * {@linkcode backoff} (the cache's Redis store uses them too).
 */
export function failFastOptions(
  o: Pick<RedisOptions, "username" | "password" | "db" | "tls" | "connect_timeout">,
): IoRedisOptions {
  return {
    username: o.username,
    password: o.password,
    db: o.db,
    tls: o.tls ? {} : undefined,
    connectTimeout: o.connect_timeout,
    // Fail fast: nothing queued while disconnected, nothing re-sent after a disconnect.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: backoff,
    keepAlive: 10_000,
    noDelay: true,
    lazyConnect: false,
  };
}

/** One Redis connection of this isolate. */
export class RedisLink {
  #client: Client | null = null;
  /** Resolves when the connection is first up (waited for at most a timeout by early requests). */
  readonly #firstReady: Promise<void>;
  #resolveReady!: () => void;
  /** null until first known. */
  #up: boolean | null = null;
  #failures = 0;
  #inFlight = 0;
  #closed = false;
  /** Where state changes and latencies go (this isolate's; set by every user). */
  metrics: MiddlewareMetrics | null = null;
  /** Limits using this link (it closes when the last one is collected). */
  users = 0;

  constructor(readonly options: RedisOptions) {
    this.#firstReady = new Promise((r) => this.#resolveReady = r);
    this.#connect().catch((e) =>
      logger.error("rate_limit: cannot load the Redis client", { error: String(e) })
    );
  }

  /** Whether the last known state is up. */
  get up(): boolean {
    return this.#up === true;
  }

  async #connect(): Promise<void> {
    const { Redis: IoRedis, Cluster: IoCluster } = await import("ioredis");
    if (this.#closed) return;
    const o = this.options;
    const common = failFastOptions(o);
    let client: Redis | Cluster;
    if (o.cluster !== undefined) {
      client = new IoCluster(o.cluster.map(hostPort), {
        redisOptions: common,
        enableOfflineQueue: false,
        clusterRetryStrategy: backoff,
        keyPrefix: "",
      });
    } else if (o.sentinels !== undefined) {
      client = new IoRedis({ ...common, sentinels: o.sentinels.map(hostPort), name: o.master });
    } else {
      client = new IoRedis({ ...common, ...hostPort(o.address) });
    }
    client.defineCommand("loomRateLimit", { numberOfKeys: 1, lua: SCRIPT });
    client.on("ready", () => {
      this.#resolveReady();
      this.#failures = 0;
      this.#state(true, "connected");
    });
    client.on("close", () => this.#state(false, "connection closed"));
    client.on("error", (e: Error) => {
      if (this.#up !== false) this.#state(false, e.message);
    });
    this.#client = client as Client;
  }

  #state(up: boolean, why: string): void {
    if (this.#up === up || this.#closed) return;
    const first = this.#up === null;
    this.#up = up;
    this.metrics?.redisState(up);
    const where = this.options.cluster?.join(",") ?? this.options.sentinels?.join(",") ??
      this.options.address;
    if (up) {
      logger.info(first ? "rate_limit: redis connected" : "rate_limit: redis is up again", { redis: where });
    } else {logger.warn("rate_limit: redis is down; limits use their fail mode", {
        redis: where,
        reason: why,
      });}
  }

  /**
   * Runs the script for `key`; resolves null (never rejects) when Redis
   * fails or does not answer within the timeout. A request waits for a
   * connection only before the first one was made (start-up), at most the timeout.
   */
  async take(
    key: string,
    alg: "t" | "w",
    interval: number,
    capacity: number,
    n: number,
  ): Promise<ScriptReply | null> {
    const c = this.#client;
    if (c === null || (this.#up === null && c.status !== "ready")) {
      // Start-up: the client is loading or connecting.
      const timeout = this.options.timeout;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const ok = await Promise.race([
        this.#firstReady.then(() => true),
        new Promise<boolean>((r) => timer = setTimeout(() => r(false), timeout)),
      ]);
      clearTimeout(timer);
      if (!ok) return this.#fail("unavailable");
    }
    return this.#call(key, alg, interval, capacity, n);
  }

  #call(
    key: string,
    alg: string,
    interval: number,
    capacity: number,
    n: number,
  ): Promise<ScriptReply | null> {
    const c = this.#client!;
    if (c.status !== "ready" || this.#inFlight >= MAX_IN_FLIGHT) {
      return Promise.resolve(this.#fail("unavailable"));
    }
    this.#inFlight++;
    const start = performance.now();
    return new Promise<ScriptReply | null>((resolve) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        resolve(this.#fail("timeout"));
      }, this.options.timeout);
      c.loomRateLimit(key, alg, interval, capacity, n).then((r) => {
        this.#inFlight--;
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.metrics?.redisRequest((performance.now() - start) / 1000);
        this.#failures = 0;
        if (this.#up === false && c.status === "ready") this.#state(true, "answered");
        resolve(r);
      }, (e: Error) => {
        this.#inFlight--;
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(this.#fail(/writeable|closed|connect/i.test(e.message) ? "unavailable" : "reply", e));
      });
    });
  }

  #fail(type: string, e?: Error): null {
    this.metrics?.redisError(type);
    if (++this.#failures >= DOWN_AFTER && this.#up !== false) {
      this.#state(false, type === "reply" ? String(e?.message) : type);
    }
    return null;
  }

  /** Sends without waiting (give-backs): errors are counted, never surfaced. */
  send(key: string, alg: "t" | "w", interval: number, capacity: number, n: number): void {
    const c = this.#client;
    if (c === null || c.status !== "ready") return;
    c.loomRateLimit(key, alg, interval, capacity, n).catch(() => this.metrics?.redisError("reply"));
  }

  /** Closes the connection. */
  close(): void {
    this.#closed = true;
    this.#client?.disconnect();
    this.#client = null;
  }
}

const links = new Map<string, RedisLink>();
const released = new FinalizationRegistry<string>((id) => {
  const l = links.get(id);
  if (l !== undefined && --l.users <= 0) {
    l.close();
    links.delete(id);
  }
});

/**
 * The link of this isolate for `o`, shared by every limit with the same
 * options (a reload keeps the connection). `holder` is the middleware using
 * it: once it is collected (its snapshot retired) the link loses a user, and
 * closes with the last.
 */
export function redisLink(o: RedisOptions, holder: object): RedisLink {
  const id = JSON.stringify(o);
  let l = links.get(id);
  if (l === undefined) links.set(id, l = new RedisLink(o));
  l.users++;
  released.register(holder, id);
  return l;
}

/** Closes every link of this isolate (tests, shutdown). */
export function closeRedisLinks(): void {
  for (const l of links.values()) l.close();
  links.clear();
}
