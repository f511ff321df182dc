/**
 * The Redis store of the cache: one connection (ioredis, the client the
 * rate limiter uses too, loaded on first use) per cache and isolate; items
 * as bytes (store.ts `encodeItem`) under `prefix + key`, each with a TTL of
 * its lifetime plus its stale windows (`keepUntil`).
 *
 * Never stalls a request: a lookup while disconnected is a miss at once, a
 * lookup waits at most `timeout` (then it is a miss), writes are sent
 * without waiting, nothing is queued while disconnected; reconnection with
 * backoff (50 ms doubling to 2 s): the connection options are the rate
 * limiter's (rate_limit/redis.ts `failFastOptions`). A purge by prefix SCANs the keys (MATCH
 * `prefix*`) and UNLINKs them in batches.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { CacheRedisOptions } from "../../config/middleware/cache.ts";
import { logger } from "../../observability/logger.ts";
import { type CacheStore, decodeItem, encodeItem, type Item } from "./store.ts";
import { failFastOptions, hostPort } from "../rate_limit/redis.ts";

/** The commands the store sends (a subset of ioredis' client, so tests can stand in). */
export interface RedisCommands {
  readonly status: string;
  getBuffer(key: string): Promise<Uint8Array | null>;
  set(key: string, value: Uint8Array, px: "PX", ms: number): Promise<unknown>;
  unlink(...keys: string[]): Promise<number>;
  scan(
    cursor: string,
    match: "MATCH",
    pattern: string,
    count: "COUNT",
    n: number,
  ): Promise<[string, string[]]>;
  disconnect(): void;
}

/** `*`, `?`, `[`, `]` and `\` escaped for a SCAN MATCH pattern. */
export function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => "\\" + c);
}

/** Opens an ioredis connection for `o` that fails fast (the rate limiter's options: one way to talk to Redis). */
async function connect(o: CacheRedisOptions): Promise<RedisCommands> {
  const { Redis: IoRedis } = await import("ioredis");
  const client = new IoRedis({ ...failFastOptions(o), ...hostPort(o.address) });
  const where = o.address;
  let up: boolean | null = null;
  const state = (next: boolean, why: string) => {
    if (up === next) return;
    up = next;
    if (next) logger.info("cache: redis connected", { redis: where });
    else logger.warn("cache: redis is down; lookups are misses", { redis: where, reason: why });
  };
  client.on("ready", () => state(true, "ready"));
  client.on("close", () => state(false, "connection closed"));
  client.on("error", (e: Error) => state(false, e.message));
  return client as unknown as RedisCommands;
}

/** Items in Redis, shared by every worker and Loom instance that uses the same server and prefix. */
export class RedisStore implements CacheStore {
  #client: RedisCommands | null = null;
  #closed = false;

  constructor(readonly options: CacheRedisOptions, client?: RedisCommands) {
    if (client !== undefined) this.#client = client;
    else {
      connect(options).then((c) => {
        if (this.#closed) c.disconnect();
        else this.#client = c;
      }, (e) => logger.error("cache: cannot load the Redis client", { error: String(e) }));
    }
  }

  #ready(): RedisCommands | null {
    const c = this.#client;
    return c !== null && c.status === "ready" ? c : null;
  }

  get(key: string): Promise<Item | undefined> | undefined {
    const c = this.#ready();
    if (c === null) return undefined;
    return new Promise((resolve) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        resolve(undefined);
      }, this.options.timeout);
      c.getBuffer(this.options.prefix + key).then((b) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(b === null ? undefined : decodeItem(key, b));
      }, () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(undefined);
      });
    });
  }

  set(key: string, item: Item): void {
    const c = this.#ready();
    if (c === null) return;
    const ms = Math.max(1000, Math.ceil(item.keepUntil - Date.now()));
    const bytes = encodeItem(item);
    // A Buffer: ioredis sends other typed arrays as text.
    const value = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    c.set(this.options.prefix + key, value, "PX", ms).catch(() => {});
  }

  async purge(key: string, exact: boolean): Promise<number> {
    const c = this.#ready();
    if (c === null) throw new Error("redis is not connected");
    const p = this.options.prefix;
    let n = 0;
    if (exact) n += await c.unlink(p + key);
    const pattern = globEscape(p + (exact ? key + "\0" : key)) + "*";
    let cursor = "0";
    do {
      const [next, keys] = await c.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) n += await c.unlink(...keys);
    } while (cursor !== "0");
    return n;
  }

  invalidate(key: string): void {
    this.#ready()?.unlink(this.options.prefix + key).catch(() => {});
  }

  close(): void {
    this.#closed = true;
    this.#client?.disconnect();
    this.#client = null;
  }
}
