/**
 * `cache`: an RFC 9111 shared cache of GET (and HEAD) responses, in memory
 * per worker or in Redis for many Loom instances.
 *
 * ```yaml
 * middleware:
 *   - cache:
 *       max_size: 256MB            # memory store, per worker, least recently used dropped first
 *       max_object_size: 1MB       # bigger bodies are never stored
 *       stale_if_error: 1h         # when the response sets none
 *       key: { query: [page, sort], headers: [accept-language] }
 * ```
 *
 * - **Storing** (RFC 9111 3, a shared cache): final responses to GET whose
 *   status allows it, without `no-store` or `private` (nor `Vary: *`,
 *   `Set-Cookie`, trailers); a request with `Authorization` only when the
 *   response says `public`, `s-maxage` or `must-revalidate` (3.5). A
 *   response is kept when it is fresh for a while, or has a validator
 *   (ETag / Last-Modified, kept `keep_stale` past its expiry to be
 *   revalidated), or sets stale-while-revalidate / stale-if-error.
 * - **Freshness** (4.2): `s-maxage` (it wins), `max-age`, `Expires − Date`;
 *   without them the configured `default_ttl`, or with `heuristic: true` 10%
 *   of the time since Last-Modified (4.2.2). Age per 4.2.3 (Date, Age, the
 *   request's round trip); every answer from the cache carries `Age`.
 * - **Reuse**: a fresh response answers at once (a conditional request from
 *   the client, If-None-Match / If-Modified-Since, gets 304); `no-cache` (the
 *   response's, or the request's `no-cache`, `max-age=0`, `Pragma: no-cache`)
 *   forces a revalidation; the request's `max-age`, `min-fresh`, `max-stale`
 *   and `only-if-cached` (504 when nothing fits) are honoured; `no-store` in a
 *   request keeps its response out of the cache.
 * - **Revalidation**: a stale response with a validator is revalidated with
 *   If-None-Match / If-Modified-Since: a 304 refreshes its stored fields (4.3.4)
 *   and the stored body is served; any other answer replaces it.
 * - **Stale**: within `stale-while-revalidate` a stale response is served at
 *   once and one background request refreshes it; within `stale-if-error` it
 *   is served when the upstream answers 500/502/503/504 or cannot be
 *   reached. `must-revalidate`, `proxy-revalidate` and `no-cache` forbid both;
 *   the configured windows apply when the response sets none (and not after
 *   `s-maxage`, which implies proxy-revalidate).
 * - **Vary**: the listed request fields select a variant (a second key);
 *   `Vary: *` is never stored.
 * - **Cache-Status** (RFC 9211) on every GET/HEAD answer: `loom; hit; ttl=42`,
 *   `loom; fwd=miss; fwd-status=200; stored`, `loom; fwd=stale; fwd-status=304; ttl=60`,
 *   `loom; fwd=stale; ttl=-3; detail=stale-while-revalidate`, `loom; fwd=bypass`.
 * - **Coalescing**: one upstream request per key and worker at a time; the
 *   others wait (`lock_timeout` at most) and are answered from what it stored,
 *   or go upstream themselves when it stored nothing.
 * - **Streaming**: the response goes to the client as it arrives; the cache
 *   copies the chunks on the side (a writer around `ctx.res`, under the
 *   route's response hooks, so they run on hits too) and stops copying once a
 *   body passes `max_object_size`.
 * - A non-error answer to an unsafe method (POST, PUT, DELETE, PATCH) drops
 *   the stored responses of its URI (4.4).
 *
 * ## Why the memory store is per worker
 *
 * Each worker isolate keeps its own LRU map, so a hit is a Map lookup and a
 * write of bytes the isolate already holds: about 4.5 µs of CPU for the
 * whole request (bench/middleware.ts `cache-hit`, HTTP/1.1 engine included;
 * proxying the same request costs about 8.5 µs). A store shared by the
 * workers of a process would live in one isolate, and every hit would cross
 * isolates: bench/cache_clone.ts measures 26 µs of CPU per lookup through
 * postMessage with a 1 KiB body (78 µs with 64 KiB; structured clone both
 * ways) against 0.1 µs for the local Map, so a shared store would cost more
 * per hit than the upstream request it saves. (A SharedArrayBuffer slab with
 * an allocator and locks would avoid the clone; not done.) The price: each
 * worker fills its own copy (up to N misses per key with N workers) and
 * coalesces its own requests. `store: redis` keeps one copy for every worker
 * and instance.
 *
 * @module
 */
import type { RequestContext } from "../../core/context.ts";
import type { RawHeadWriter, ResponseWriter } from "../../core/body.ts";
import type { HeaderList } from "../../core/headers.ts";
import type { Middleware } from "../../core/middleware.ts";
import type { CacheOptions, CacheRedisOptions } from "../../config/middleware/cache.ts";
import { encodeLatin1Into, headText, reasonPhrase } from "../../http1/serialize.ts";
import { concat } from "../../net/bytes.ts";
import { reject } from "../reject.ts";
import { type MiddlewareEnv, NO_ENV } from "../registry.ts";
import {
  type Directives,
  type Freshness,
  freshness,
  hasValidator,
  httpDate,
  keepFor,
  notModified,
  parseCacheControl,
  type PolicySettings,
  refreshHeaders,
  unstorable,
} from "./policy.ts";
import { type CacheStore, type Item, MemoryStore, sizeOf, type Stored } from "./store.ts";
import { RedisStore } from "./redis.ts";

/** The cache's name in Cache-Status. */
const NAME = "loom";

/** Results counted in `loom_cache_requests_total{route,result}`. */
export type CacheResult = "hit" | "miss" | "stale" | "revalidated" | "bypass";

/** One upstream fetch per key: the requests that wait for it. */
class Flight {
  readonly done: Promise<boolean>;
  #resolve!: (stored: boolean) => void;
  #settled = false;

  constructor(readonly key: string, private readonly flights: Map<string, Flight>) {
    this.done = new Promise((r) => this.#resolve = r);
    flights.set(key, this);
  }

  /** The fetch ended: `stored` tells the waiters whether the store now has their answer. */
  settle(stored: boolean): void {
    if (this.#settled) return;
    this.#settled = true;
    if (this.flights.get(this.key) === this) this.flights.delete(this.key);
    this.#resolve(stored);
  }
}

/** A store and its fetches in flight: one per cache entry of the config, kept across reloads. */
interface Core {
  readonly store: CacheStore;
  readonly flights: Map<string, Flight>;
  users: number;
  readonly redis: boolean;
}

const cores = new Map<string, Core>();
const released = new FinalizationRegistry<string>((id) => {
  const c = cores.get(id);
  if (c !== undefined && --c.users <= 0) {
    c.store.close();
    cores.delete(id);
  }
});

const DEFAULT_REDIS: CacheRedisOptions = {
  address: "127.0.0.1:6379",
  db: 0,
  tls: false,
  timeout: 100,
  connect_timeout: 1000,
  prefix: "loom:cache:",
};

/**
 * The store of the cache at `scope` with options `o` in this isolate (kept
 * while its options stay). `hold(x)` ties it to `x` (a request handler in
 * a compiled chain): once every holder is collected (their snapshots
 * retired), the store closes.
 */
function coreFor(scope: string, o: CacheOptions): { core: Core; hold(holder: object): void } {
  const id = scope + " " + JSON.stringify([o.store, o.max_size, o.cleanup_interval, o.redis]);
  let c = cores.get(id);
  if (c === undefined) {
    const store = o.store === "redis"
      ? new RedisStore(o.redis ?? DEFAULT_REDIS)
      : new MemoryStore(o.max_size, o.cleanup_interval);
    cores.set(id, c = { store, flights: new Map(), users: 0, redis: o.store === "redis" });
  }
  const core = c;
  return {
    core,
    hold: (holder) => {
      core.users++;
      released.register(holder, id);
    },
  };
}

/**
 * Purges every cache of this isolate: `key` exactly (and its Vary variants)
 * or every key starting with `prefix`. Redis stores are purged only when
 * `shared` (one worker does it for all). Returns the entries dropped.
 */
export async function purgeCaches(what: { key?: string; prefix?: string }, shared: boolean): Promise<number> {
  const exact = what.key !== undefined;
  const k = what.key ?? what.prefix ?? "";
  let n = 0;
  for (const c of cores.values()) {
    if (c.redis && !shared) continue;
    n += await c.store.purge(k, exact);
  }
  return n;
}

/** Drops every cache of this isolate (tests). */
export function closeCaches(): void {
  for (const c of cores.values()) c.store.close();
  cores.clear();
}

/** A path filter: exact paths, and prefixes written with a trailing `*`. */
function pathMatcher(list: readonly string[]): ((path: string) => boolean) | null {
  if (list.length === 0) return null;
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const p of list) {
    if (p.endsWith("*")) prefixes.push(p.slice(0, -1));
    else exact.add(p);
  }
  return (path) => {
    if (exact.has(path)) return true;
    for (let i = 0; i < prefixes.length; i++) if (path.startsWith(prefixes[i])) return true;
    return false;
  };
}

/** The primary key of a request (method GET for HEAD too). */
export function compileKey(o: CacheOptions["key"]): (ctx: RequestContext) => string {
  const method = o.method ? "GET " : "";
  const host = o.host;
  const path = o.path;
  const q = o.query;
  const names = Array.isArray(q) ? q : null;
  const headers = o.headers.map((h) => h.toLowerCase());
  const query = (raw: string): string => {
    if (raw === "" || q === "none") return "";
    if (names === null) return "?" + raw;
    const parts = raw.split("&");
    let out = "";
    for (const n of names) {
      for (const p of parts) {
        const eq = p.indexOf("=");
        if ((eq === -1 ? p : p.slice(0, eq)) === n) out += (out === "" ? "?" : "&") + p;
      }
    }
    return out;
  };
  return (ctx) => {
    let k = method + (host ? ctx.host : "") + (path ? ctx.path : "") + query(ctx.query);
    for (let i = 0; i < headers.length; i++) {
      k += "|" + headers[i] + "=" + (ctx.headers.getJoined(headers[i]) ?? "");
    }
    return k;
  };
}

/** What one request brings to the cache. */
interface Req {
  readonly key: string;
  /** The request's Cache-Control (and Pragma: no-cache). */
  readonly rq: Directives;
  readonly auth: boolean;
  readonly head: boolean;
  /** The client's own validators, taken off the request (the cache answers them). */
  readonly inm: string | undefined;
  readonly ims: string | undefined;
}

const NO_DIRECTIVES = parseCacheControl(undefined);
const PRAGMA_NO_CACHE = parseCacheControl("no-cache");

/** Lower-case, sorted, unique field names of a Vary value. */
function varyFields(v: string): string[] {
  return [...new Set(v.split(",").map((s) => s.trim().toLowerCase()).filter((s) => s !== ""))].sort();
}

/** The secondary key part of a request for `fields`. */
function variant(ctx: RequestContext, fields: readonly string[]): string {
  let s = "";
  for (let i = 0; i < fields.length; i++) {
    s += (i === 0 ? "" : "\x1f") + (ctx.headers.getJoined(fields[i])?.trim() ?? "");
  }
  return s;
}

/** Discards what it is given (the background refresh of stale-while-revalidate). */
const NOWHERE: ResponseWriter = {
  headSent: false,
  writeHead() {},
  write: () => Promise.resolve(),
  end: () => Promise.resolve(),
  abort() {},
};

const ERROR_STATUSES = new Set([500, 502, 503, 504]);
let scratch = new Uint8Array(16 * 1024);

/** The middleware for `o`. */
export function cache(o: CacheOptions, env: MiddlewareEnv = NO_ENV): Middleware {
  const { core, hold } = coreFor(env.scope ?? "", o);
  const store = core.store;
  const flights = core.flights;
  const settings: PolicySettings = {
    defaultTtl: o.default_ttl,
    heuristic: o.heuristic,
    staleWhileRevalidate: o.stale_while_revalidate,
    staleIfError: o.stale_if_error,
    keepStale: o.keep_stale,
  };
  const keyOf = compileKey(o.key);
  const excluded = pathMatcher(o.excluded_paths);
  const included = pathMatcher(o.included_paths);
  const bypassHeader = o.bypass_header?.toLowerCase() ?? "";
  const maxObject = o.max_object_size;
  const lockTimeout = o.lock_timeout;
  const metrics = env.metrics ?? null;

  const count = (ctx: RequestContext, result: CacheResult) =>
    metrics?.cacheRequest?.(ctx.route?.id ?? "", result);

  /** Writes `s` (aged `age` s) to the client: 304 for a matching conditional, headers only for HEAD. */
  const serve = (ctx: RequestContext, r: Req, s: Stored, age: number, status: string): Promise<void> => {
    const ttl = Math.floor(s.lifetime - age);
    const cs = status + "; ttl=" + ttl;
    const ageS = String(Math.floor(age));
    const res = ctx.res;
    if (
      (r.inm !== undefined || r.ims !== undefined) && s.status === 200 &&
      notModified(r.inm, r.ims, s.etag, s.lastModified)
    ) {
      const h = s.headers.clone();
      for (const k of ["content-type", "content-encoding", "content-language", "content-range"]) h.delete(k);
      h.append("age", ageS);
      h.append("cache-status", cs);
      res.writeHead(304, h, -1);
      return res.end();
    }
    const raw = (res as Partial<RawHeadWriter>).writeHeadRaw;
    if (raw !== undefined) {
      const head = s.raw ??= rawHead(s);
      const tail = "age: " + ageS + "\r\ncache-status: " + cs + "\r\n";
      const need = head.length + tail.length;
      if (scratch.length < need) scratch = new Uint8Array(need * 2);
      scratch.set(head, 0);
      const n = encodeLatin1Into(tail, scratch, head.length);
      raw.call(res, s.status, scratch.subarray(0, n), s.body.length);
    } else {
      const h = s.headers.clone();
      h.append("age", ageS);
      h.append("cache-status", cs);
      res.writeHead(s.status, h, s.body.length);
    }
    if (r.head || s.body.length === 0) return res.end();
    return res.write(s.body).then(() => res.end());
  };

  /** A stored response built from an upstream answer, or null when it may not be stored. */
  const build = (
    status: number,
    h: HeaderList,
    f: Freshness,
    body: Uint8Array,
    now: number,
    key: string,
  ): Stored => {
    const headers = h.clone();
    headers.delete("age");
    let lm = httpDate(headers.get("last-modified"));
    if (Number.isNaN(lm)) lm = httpDate(headers.get("date"));
    const keep = keepFor(f, hasValidator(headers), settings);
    return {
      kind: "response",
      status,
      headers,
      body,
      responseTime: now,
      initialAge: f.initialAge,
      lifetime: f.lifetime,
      swr: f.swr,
      sie: f.sie,
      noCache: f.noCache,
      noStale: f.noStale,
      authOk: f.authOk,
      etag: headers.get("etag"),
      lastModified: lm,
      keepUntil: now + keep,
      size: sizeOf(key, headers, body),
    };
  };

  /** Stores `s` for the request: at its key, or with Vary at its variant key and a marker at the key. */
  const put = (ctx: RequestContext, r: Req, s: Stored) => {
    const vary = s.headers.getJoined("vary");
    if (vary === undefined) {
      store.set(r.key, s);
      return;
    }
    const fields = varyFields(vary);
    if (fields.length === 0) {
      store.set(r.key, s);
      return;
    }
    // The marker lives as long as its longest-lived variant (known here for the memory store).
    const old = store instanceof MemoryStore ? store.get(r.key) : undefined;
    const keepUntil = old !== undefined && old.kind === "vary" &&
        old.fields.join() === fields.join()
      ? Math.max(old.keepUntil, s.keepUntil)
      : s.keepUntil;
    store.set(r.key, { kind: "vary", fields, keepUntil, size: 256 });
    store.set(r.key + "\0" + variant(ctx, fields), s);
  };

  /**
   * The writer between the proxy and the client while the upstream answers:
   * passes the answer on as it streams and copies it into the store on the
   * side; turns a 304 to its revalidation into the refreshed stored response,
   * and an error into the stale one when stale-if-error allows.
   */
  class FillWriter implements ResponseWriter {
    #sent = false;
    /** 0: pass on; 1: pass on and copy; 2: serve `#serveLater` at end (the upstream's answer is dropped). */
    #mode = 0;
    #chunks: Uint8Array[] = [];
    #size = 0;
    #mute = false;
    #status = 0;
    #h: HeaderList | null = null;
    #f: Freshness | null = null;
    #serveLater: Stored | null = null;
    #later = "";
    #age = 0;
    #responseTime = 0;

    constructor(
      readonly inner: ResponseWriter,
      readonly ctx: RequestContext,
      readonly r: Req,
      readonly fallback: Stored | undefined,
      /** We sent the fallback's validators. */
      readonly conditional: boolean,
      readonly fwd: string,
      readonly flight: Flight | null,
      readonly requestTime: number,
      readonly background: boolean,
    ) {}

    get headSent(): boolean {
      return this.#sent;
    }

    writeHead(status: number, headers: HeaderList, bodyLength: number, reason?: string): void {
      this.#sent = true;
      const now = this.#responseTime = Date.now();
      const { ctx, r, fallback } = this;
      if (fallback !== undefined && status === 304 && this.conditional) {
        // Revalidated: the stored response with the 304's fields.
        const h = refreshHeaders(fallback.headers, headers);
        const d = parseCacheControl(h.getJoined("cache-control"));
        const f = freshness(fallback.status, h, d, this.requestTime, now, settings);
        const s = build(fallback.status, h, f, fallback.body, now, r.key);
        if (unstorable(fallback.status, h, d, f, r.auth, settings) === "" && !r.rq.noStore) put(ctx, r, s);
        this.flight?.settle(true);
        this.#mode = 2;
        this.#serveLater = s;
        this.#age = s.initialAge;
        this.#later = `${NAME}; fwd=${this.fwd}; fwd-status=304`;
        if (!this.background) count(ctx, "revalidated");
        return;
      }
      if (fallback !== undefined && ERROR_STATUSES.has(status)) {
        const age = fallback.initialAge + (now - fallback.responseTime) / 1000;
        if (age - fallback.lifetime <= fallback.sie) {
          this.flight?.settle(false);
          this.#mode = 2;
          this.#serveLater = fallback;
          this.#age = age;
          this.#later = `${NAME}; fwd=${this.fwd}; fwd-status=${status}`;
          if (!this.background) count(ctx, "stale");
          return;
        }
      }
      let storing = false;
      if (
        !r.head && status !== 304 && status !== 206 && !r.rq.noStore &&
        (bodyLength < 0 || bodyLength <= maxObject)
      ) {
        const d = parseCacheControl(headers.getJoined("cache-control"));
        // no-store and private first: they need no freshness (Date parsing) to be refused.
        const f = d.noStore || d.private
          ? null
          : freshness(status, headers, d, this.requestTime, now, settings);
        if (f !== null && unstorable(status, headers, d, f, r.auth, settings) === "") {
          storing = true;
          this.#mode = 1;
          this.#status = status;
          this.#h = headers.clone();
          this.#f = f;
        }
      }
      if (!storing) this.flight?.settle(false);
      if (!this.background) count(ctx, "miss");
      headers.append(
        "cache-status",
        `${NAME}; fwd=${this.fwd}; fwd-status=${status}${storing ? "; stored" : ""}`,
      );
      if (
        status === 200 && (r.inm !== undefined || r.ims !== undefined) &&
        notModified(
          r.inm,
          r.ims,
          headers.get("etag"),
          httpDate(headers.get("last-modified") ?? headers.get("date")),
        )
      ) {
        // The client's own conditional request, which the cache took off to fill itself.
        this.#mute = true;
        this.inner.writeHead(304, headers, -1);
        return;
      }
      this.inner.writeHead(status, headers, bodyLength, reason);
    }

    write(chunk: Uint8Array): Promise<void> {
      if (this.#mode === 2) return Promise.resolve();
      if (this.#mode === 1) {
        if (this.#size + chunk.length > maxObject) {
          // Too big after all: stop copying; the client keeps getting it.
          this.#mode = 0;
          this.#chunks = [];
          this.flight?.settle(false);
        } else {
          this.#chunks.push(chunk.slice());
          this.#size += chunk.length;
        }
      }
      return this.#mute ? Promise.resolve() : this.inner.write(chunk);
    }

    end(trailers?: HeaderList | null): Promise<void> {
      if (this.#mode === 2) {
        const s = this.#serveLater!;
        const age = this.#age + (Date.now() - this.#responseTime) / 1000;
        if (this.background) return Promise.resolve();
        const detail = s === this.fallback ? "; detail=stale-if-error" : "";
        return serveVia(this.inner, this.ctx, this.r, s, age, this.#later + detail);
      }
      if (this.#mode === 1) {
        if (trailers == null || trailers.size === 0) {
          const body = this.#chunks.length === 1 ? this.#chunks[0] : concat(this.#chunks);
          this.#chunks = [];
          put(
            this.ctx,
            this.r,
            build(this.#status, this.#h!, this.#f!, body, this.#responseTime, this.r.key),
          );
          this.flight?.settle(true);
        } else this.flight?.settle(false);
        this.#mode = 0;
      }
      return this.inner.end(trailers);
    }

    abort(): void {
      this.#mode = 0;
      this.#chunks = [];
      this.flight?.settle(false);
      this.inner.abort();
    }
  }

  /** {@link serve} through `w` (restores ctx.res for the duration). */
  const serveVia = (
    w: ResponseWriter,
    ctx: RequestContext,
    r: Req,
    s: Stored,
    age: number,
    status: string,
  ) => {
    ctx.res = w;
    return serve(ctx, r, s, age, status);
  };

  /**
   * Sends the request upstream through a {@link FillWriter}. With a fallback
   * that has validators, the request is made conditional on them; the
   * client's own validators are taken off either way (the cache answers them).
   */
  const fetchUpstream = async (
    ctx: RequestContext,
    next: () => Promise<void>,
    r: Req,
    fallback: Stored | undefined,
    fwd: string,
    coalesce: boolean,
    background = false,
  ): Promise<void> => {
    let conditional = false;
    if (!r.head) {
      ctx.headers.delete("if-none-match");
      ctx.headers.delete("if-modified-since");
      if (fallback !== undefined && fallback.status === 200) {
        if (fallback.etag !== undefined) {
          ctx.headers.append("if-none-match", fallback.etag);
          conditional = true;
        }
        const lm = fallback.headers.get("last-modified");
        if (lm !== undefined) {
          ctx.headers.append("if-modified-since", lm);
          conditional = true;
        }
      }
    }
    const flight = coalesce && !r.head && !flights.has(r.key) ? new Flight(r.key, flights) : null;
    const inner = background ? NOWHERE : ctx.res;
    const w = new FillWriter(inner, ctx, r, fallback, conditional, fwd, flight, Date.now(), background);
    ctx.res = w;
    try {
      await next();
    } catch (e) {
      if (!w.headSent && !background && fallback !== undefined && !ctx.aborted) {
        const age = fallback.initialAge + (Date.now() - fallback.responseTime) / 1000;
        if (age - fallback.lifetime <= fallback.sie) {
          count(ctx, "stale");
          return serveVia(inner, ctx, r, fallback, age, `${NAME}; fwd=${fwd}; detail=stale-if-error`);
        }
      }
      ctx.res = inner;
      throw e;
    } finally {
      flight?.settle(false);
    }
  };

  /** Decides on a lookup's result: serve, serve stale, revalidate, or fetch (waiting for a fetch in flight). */
  const decide = (
    ctx: RequestContext,
    next: () => Promise<void>,
    r: Req,
    s: Stored | undefined,
    fwdMiss: string,
    waited: boolean,
  ): Promise<void> => {
    if (s !== undefined && r.auth && !s.authOk) s = undefined;
    if (s !== undefined) {
      const now = Date.now();
      const age = s.initialAge + (now - s.responseTime) / 1000;
      const ttl = s.lifetime - age;
      const rq = r.rq;
      if (
        ttl > 0 && !s.noCache && !rq.noCache && (rq.maxAge < 0 || age <= rq.maxAge) &&
        (rq.minFresh < 0 || ttl >= rq.minFresh)
      ) {
        count(ctx, "hit");
        return serve(ctx, r, s, age, waited ? `${NAME}; fwd=miss; collapsed` : `${NAME}; hit`);
      }
      const clientOk = !rq.noCache && rq.maxAge < 0 && !s.noCache;
      if (clientOk && ttl <= 0 && rq.maxStale >= 0 && -ttl <= rq.maxStale && !s.noStale) {
        count(ctx, "stale");
        return serve(ctx, r, s, age, `${NAME}; fwd=stale; detail=max-stale`);
      }
      if (rq.onlyIfCached) return reject(ctx, "cache", "only_if_cached", 504, "not in the cache");
      if (clientOk && ttl <= 0 && -ttl <= s.swr && !r.head) {
        count(ctx, "stale");
        const stale = s;
        return serve(ctx, r, stale, age, `${NAME}; fwd=stale; detail=stale-while-revalidate`).then(() => {
          // One background refresh per key; the client's response is already complete.
          if (flights.has(r.key) || ctx.aborted) return;
          fetchUpstream(ctx, next, r, stale, "stale", true, true).catch(() => {});
        });
      }
      const fwd = rq.noCache || rq.maxAge >= 0 || rq.minFresh >= 0 ? "request" : "stale";
      if (!waited && !r.head) {
        const f = flights.get(r.key);
        if (f !== undefined) return wait(ctx, next, r, f);
      }
      return fetchUpstream(ctx, next, r, s, fwd, !waited);
    }
    if (r.rq.onlyIfCached) return reject(ctx, "cache", "only_if_cached", 504, "not in the cache");
    if (!waited && !r.head) {
      const f = flights.get(r.key);
      if (f !== undefined) return wait(ctx, next, r, f);
    }
    return fetchUpstream(ctx, next, r, undefined, fwdMiss, !waited);
  };

  /** Waits for the fetch in flight for the key (at most lock_timeout), then looks again. */
  const wait = async (ctx: RequestContext, next: () => Promise<void>, r: Req, f: Flight): Promise<void> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([f.done, new Promise((res) => timer = setTimeout(res, lockTimeout))]);
    clearTimeout(timer);
    return lookup(ctx, next, r, true);
  };

  /** Looks the request up (through a Vary marker to its variant) and decides. */
  const lookup = (ctx: RequestContext, next: () => Promise<void>, r: Req, waited: boolean): Promise<void> => {
    const got = store.get(r.key);
    return got instanceof Promise
      ? got.then((it) => found(ctx, next, r, it, waited))
      : found(ctx, next, r, got, waited);
  };

  const found = (
    ctx: RequestContext,
    next: () => Promise<void>,
    r: Req,
    it: Item | undefined,
    waited: boolean,
  ): Promise<void> => {
    if (it === undefined) return decide(ctx, next, r, undefined, "miss", waited);
    if (it.kind === "response") return decide(ctx, next, r, it, "miss", waited);
    const vk = r.key + "\0" + variant(ctx, it.fields);
    const v = store.get(vk);
    const pick = (x: Item | undefined) =>
      decide(ctx, next, r, x?.kind === "response" ? x : undefined, "vary-miss", waited);
    return v instanceof Promise ? v.then(pick) : pick(v);
  };

  /** Passes the request on with `Cache-Status: loom; fwd=bypass`. */
  const bypass = (ctx: RequestContext, next: () => Promise<void>, detail: string): Promise<void> => {
    count(ctx, "bypass");
    const inner = ctx.res;
    const tag = `${NAME}; fwd=bypass${detail}`;
    ctx.res = {
      get headSent() {
        return inner.headSent;
      },
      writeHead(status, headers, bodyLength, reason) {
        headers.append("cache-status", tag);
        inner.writeHead(status, headers, bodyLength, reason);
      },
      write: (c) => inner.write(c),
      end: (t) => inner.end(t),
      abort: () => inner.abort(),
    };
    return next();
  };

  /** An unsafe method: a non-error answer drops the stored responses of the URI (RFC 9111 4.4). */
  const invalidating = async (ctx: RequestContext, next: () => Promise<void>): Promise<void> => {
    const key = keyOf(ctx);
    await next();
    if (ctx.status >= 200 && ctx.status < 400) store.invalidate(key);
  };

  const mw: Middleware = {
    name: "cache",
    request: (ctx, next) => {
      const m = ctx.method;
      if (m !== "GET" && m !== "HEAD") {
        if (m === "POST" || m === "PUT" || m === "DELETE" || m === "PATCH") return invalidating(ctx, next);
        return next();
      }
      if (ctx.upgrade !== undefined) return next();
      const path = ctx.path;
      if ((excluded !== null && excluded(path)) || (included !== null && !included(path))) return next();
      // One pass over the request's fields.
      const keys = ctx.headers.keys;
      let auth = false;
      let cc: string | undefined;
      let pragmaNoCache = false;
      let inm: string | undefined;
      let ims: string | undefined;
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i];
        switch (k) {
          case "authorization":
            auth = true;
            break;
          case "cache-control":
            cc = cc === undefined ? ctx.headers.values[i] : cc + ", " + ctx.headers.values[i];
            break;
          case "pragma":
            if (/no-cache/i.test(ctx.headers.values[i])) pragmaNoCache = true;
            break;
          case "if-none-match":
            inm = inm === undefined ? ctx.headers.values[i] : inm + ", " + ctx.headers.values[i];
            break;
          case "if-modified-since":
            ims = ctx.headers.values[i];
            break;
          case "range":
          case "if-match":
          case "if-unmodified-since":
          case "if-range":
            return bypass(ctx, next, "; detail=" + k);
          default:
            if (k === bypassHeader) return bypass(ctx, next, "");
        }
      }
      const rq = cc !== undefined ? parseCacheControl(cc) : pragmaNoCache ? PRAGMA_NO_CACHE : NO_DIRECTIVES;
      const r: Req = { key: keyOf(ctx), rq, auth, head: m === "HEAD", inm, ims };
      return lookup(ctx, next, r, false);
    },
  };
  // The store lives as long as a compiled chain holds this middleware's request handler.
  hold(mw.request!);
  return mw;
}

/** The HTTP/1.1 status line and field lines of `s` (no final blank line), for writeHeadRaw. */
function rawHead(s: Stored): Uint8Array {
  const text = headText(`HTTP/1.1 ${s.status} ${reasonPhrase(s.status)}\r\n`, s.headers, "");
  const prefix = text.endsWith("\r\n\r\n") ? text.slice(0, -2) : text;
  const out = new Uint8Array(prefix.length);
  encodeLatin1Into(prefix, out, 0);
  return out;
}
