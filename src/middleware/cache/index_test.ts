import assert from "node:assert/strict";
import { HeaderList } from "../../core/headers.ts";
import type { CacheOptions } from "../../config/middleware/cache.ts";
import { parseConfig } from "../../config/load.ts";
import { testContext } from "../test_context.ts";
import { cache, closeCaches, compileKey, purgeCaches } from "./index.ts";
import * as policy from "./policy.ts";
import { decodeItem, encodeItem, MemoryStore, type Stored } from "./store.ts";
import { globEscape } from "./redis.ts";

const SETTINGS: policy.PolicySettings = {
  defaultTtl: 0,
  heuristic: false,
  staleWhileRevalidate: 0,
  staleIfError: 0,
  keepStale: 0,
};

Deno.test("cache policy: Cache-Control parsing (case, quotes, duplicates, invalid values)", () => {
  const d = policy.parseCacheControl(
    'Max-Age=60, s-maxage="120", no-cache="set-cookie, x", PUBLIC, max-age=5, must-revalidate',
  );
  assert.equal(d.maxAge, 60, "the first of a duplicate counts");
  assert.equal(d.sMaxAge, 120);
  assert.ok(d.noCache && d.public && d.mustRevalidate && !d.private && !d.noStore);
  assert.equal(policy.parseCacheControl("max-age=abc").maxAge, 0, "invalid: stale");
  assert.equal(policy.parseCacheControl("max-age=99999999999").maxAge, 2147483648);
  assert.equal(policy.parseCacheControl("max-stale").maxStale, Infinity);
  assert.equal(policy.parseCacheControl("max-stale=5, min-fresh=3").minFresh, 3);
  const e = policy.parseCacheControl("stale-while-revalidate=30, stale-if-error=600, only-if-cached");
  assert.deepEqual([e.staleWhileRevalidate, e.staleIfError, e.onlyIfCached], [30, 600, true]);
  assert.equal(policy.parseCacheControl(undefined).maxAge, -1);
  assert.equal(policy.parseCacheControl(",,  ,").maxAge, -1);
});

const headers = (o: Record<string, string>) => HeaderList.from(o);

Deno.test("cache policy: freshness lifetime, age and stale windows (RFC 9111 4.2, RFC 5861)", () => {
  const now = Date.parse("Mon, 07 Dec 2026 10:00:00 GMT");
  const date = new Date(now).toUTCString();
  const f = (h: Record<string, string>, s = SETTINGS, status = 200) => {
    const hl = headers({ date, ...h });
    return policy.freshness(status, hl, policy.parseCacheControl(hl.get("cache-control")), now - 500, now, s);
  };
  assert.equal(f({ "cache-control": "max-age=60, s-maxage=10" }).lifetime, 10, "s-maxage wins");
  assert.equal(f({ "cache-control": "max-age=60" }).lifetime, 60);
  assert.equal(f({ expires: new Date(now + 30_000).toUTCString() }).lifetime, 30);
  assert.equal(f({ expires: "0" }).lifetime, 0, "an invalid Expires is in the past");
  assert.equal(f({ "last-modified": new Date(now - 100_000).toUTCString() }).lifetime, 0, "heuristics off");
  const heur = { ...SETTINGS, heuristic: true };
  assert.equal(
    f({ "last-modified": new Date(now - 100_000).toUTCString() }, heur).lifetime,
    10,
    "10% of 100 s",
  );
  assert.equal(f({}, { ...SETTINGS, defaultTtl: 5000 }).lifetime, 5);
  assert.equal(f({}, { ...SETTINGS, defaultTtl: 5000 }, 500).lifetime, 0, "not for a 500");
  // Age: the Age field plus the round trip, or the apparent age, whichever is more.
  assert.equal(f({ "cache-control": "max-age=60", age: "10" }).initialAge, 10.5);
  const old = headers({ date: new Date(now - 20_000).toUTCString(), "cache-control": "max-age=60" });
  assert.equal(
    policy.freshness(200, old, policy.parseCacheControl("max-age=60"), now, now, SETTINGS).initialAge,
    20,
  );
  // Stale windows: the response's, else the configured ones; none after must-revalidate, no-cache.
  const conf = { ...SETTINGS, staleWhileRevalidate: 30_000, staleIfError: 60_000 };
  assert.deepEqual([
    f({ "cache-control": "max-age=1" }, conf).swr,
    f({ "cache-control": "max-age=1" }, conf).sie,
  ], [
    30,
    60,
  ]);
  assert.equal(f({ "cache-control": "max-age=1, stale-while-revalidate=5" }, conf).swr, 5);
  assert.equal(f({ "cache-control": "max-age=1, must-revalidate, stale-if-error=9" }, conf).sie, 0);
  assert.equal(f({ "cache-control": "s-maxage=1" }, conf).swr, 0, "s-maxage: no configured stale");
  assert.equal(f({ "cache-control": "s-maxage=1, stale-while-revalidate=7" }, conf).swr, 7);
  assert.ok(f({ "cache-control": "s-maxage=1" }).noStale);
  assert.ok(f({ "cache-control": "public, max-age=1" }).authOk);
  assert.ok(!f({ "cache-control": "max-age=1" }).authOk);
  // Kept: fresh time plus the longest stale window, or keep_stale with a validator.
  const k = f({ "cache-control": "max-age=10, stale-if-error=20" });
  assert.equal(policy.keepFor(k, false, SETTINGS), 29_500, "less the age it arrived with");
  assert.equal(policy.keepFor(k, true, { ...SETTINGS, keepStale: 600_000 }), 609_500);
});

Deno.test("cache policy: what a shared cache may not store", () => {
  const why = (status: number, h: Record<string, string>, auth = false, s = SETTINGS) => {
    const hl = headers(h);
    const d = policy.parseCacheControl(hl.get("cache-control"));
    return policy.unstorable(status, hl, d, policy.freshness(status, hl, d, 0, 0, s), auth, s);
  };
  assert.equal(why(200, { "cache-control": "max-age=60" }), "");
  assert.equal(why(200, { "cache-control": "no-store, max-age=60" }), "no-store");
  assert.equal(why(200, { "cache-control": "private, max-age=60" }), "private");
  assert.equal(why(200, { "cache-control": "max-age=60", vary: "Accept, *" }), "vary");
  assert.equal(why(200, { "cache-control": "max-age=60", "set-cookie": "a=b" }), "set-cookie");
  assert.equal(why(200, { "cache-control": "max-age=60" }, true), "authorization");
  assert.equal(why(200, { "cache-control": "max-age=60, must-revalidate" }, true), "");
  assert.equal(why(500, { "cache-control": "max-age=60" }), "status");
  assert.equal(why(302, { "cache-control": "max-age=60" }), "", "explicit freshness stores a 302");
  assert.equal(why(302, {}, false, { ...SETTINGS, defaultTtl: 1000 }), "status", "a default does not");
  assert.equal(why(200, {}), "not-fresh");
  assert.equal(why(200, { etag: '"a"' }, false, { ...SETTINGS, keepStale: 1000 }), "", "kept to revalidate");
  assert.equal(why(200, { "cache-control": "max-age=0, stale-while-revalidate=60" }), "");
});

Deno.test("cache policy: conditional requests and the 304 refresh", () => {
  const lm = Date.parse("Mon, 07 Dec 2026 10:00:00 GMT");
  assert.ok(policy.notModified('"a", W/"b"', undefined, '"b"', NaN), "weak comparison");
  assert.ok(policy.notModified("*", undefined, '"x"', NaN));
  assert.ok(
    !policy.notModified('"a"', "Mon, 07 Dec 2026 11:00:00 GMT", '"b"', lm),
    "If-None-Match decides alone",
  );
  assert.ok(policy.notModified(undefined, "Mon, 07 Dec 2026 10:00:00 GMT", undefined, lm));
  assert.ok(!policy.notModified(undefined, "Mon, 07 Dec 2026 09:59:59 GMT", undefined, lm));
  assert.ok(!policy.notModified(undefined, "garbage", undefined, lm));
  const stored = headers({
    "content-type": "text/plain",
    etag: '"a"',
    "x-v": "1",
    "content-encoding": "gzip",
  });
  const up = headers({ "x-v": "2", "content-encoding": "br", "cache-control": "max-age=9", age: "3" });
  const h = policy.refreshHeaders(stored, up);
  assert.equal(h.get("x-v"), "2");
  assert.equal(h.get("content-encoding"), "gzip", "the stored body's encoding stays");
  assert.equal(h.get("cache-control"), "max-age=9");
  assert.equal(h.get("age"), undefined);
  assert.equal(stored.get("x-v"), "1", "the stored list is not changed");
});

function stored(body: string, keepUntil = Date.now() + 60_000): Stored {
  const h = headers({ etag: '"e"' });
  return {
    kind: "response",
    status: 200,
    headers: h,
    body: new TextEncoder().encode(body),
    responseTime: 1,
    initialAge: 2,
    lifetime: 3,
    swr: 4,
    sie: 5,
    noCache: false,
    noStale: true,
    authOk: true,
    etag: '"e"',
    lastModified: NaN,
    keepUntil,
    size: 1000 + body.length,
  };
}

Deno.test("cache store: memory LRU bounded in bytes, expiry, purge by key (with variants) and prefix", () => {
  const m = new MemoryStore(3500, 0);
  m.set("a", stored("a"));
  m.set("b", stored("b"));
  m.set("c", stored("c"));
  assert.equal(m.size, 3);
  m.get("a"); // a is now the most recently used
  m.set("d", stored("d"));
  assert.equal(m.get("b"), undefined, "the least recently used went");
  assert.ok(m.get("a") !== undefined && m.get("d") !== undefined);
  assert.ok(m.bytes <= 3500);
  m.set("huge", stored("x".repeat(5000)));
  assert.equal(m.get("huge"), undefined, "bigger than the store: not kept");
  m.set("old", stored("o", Date.now() - 1));
  assert.equal(m.get("old"), undefined, "past keepUntil");
  m.close();
  const p = new MemoryStore(1 << 20, 0);
  for (const k of ["GET h/a", "GET h/a\0en", "GET h/a\0fr", "GET h/ab", "GET h/b"]) p.set(k, stored(k));
  assert.equal(p.purge("GET h/a", true), 3, "the key and its variants, not GET h/ab");
  assert.equal(p.purge("GET h/", false), 2);
  p.set("GET h/c", stored("c"));
  p.invalidate("GET h/c");
  p.invalidate("GET h/none");
  assert.equal(p.get("GET h/c"), undefined);
  assert.equal(p.size, 0);
  assert.equal(p.bytes, 0);
  p.close();
});

Deno.test("cache store: the Redis byte format round-trips; damaged values are misses", () => {
  const s = stored("hello");
  const back = decodeItem("k", encodeItem(s)) as Stored;
  assert.equal(back.kind, "response");
  assert.equal(new TextDecoder().decode(back.body), "hello");
  assert.deepEqual(back.headers.entries(), s.headers.entries());
  assert.deepEqual(
    [
      back.status,
      back.initialAge,
      back.lifetime,
      back.swr,
      back.sie,
      back.noStale,
      back.etag,
      back.keepUntil,
    ],
    [200, 2, 3, 4, 5, true, '"e"', s.keepUntil],
  );
  assert.ok(Number.isNaN(back.lastModified));
  const v = decodeItem("k", encodeItem({ kind: "vary", fields: ["accept"], keepUntil: 9, size: 1 }));
  assert.deepEqual(v && v.kind === "vary" ? v.fields : null, ["accept"]);
  assert.equal(decodeItem("k", new Uint8Array([0, 0, 0, 99, 1])), undefined);
  assert.equal(decodeItem("k", new TextEncoder().encode("plain text")), undefined);
  assert.equal(globEscape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
});

/** Cache options as the config loader gives them. */
function options(yaml: string): CacheOptions {
  const r = parseConfig(
    `listeners: [{name: l, address: ":1", protocol: http}]\nmiddleware: [{cache: ${yaml}}]`,
    "t.yaml",
    {},
  );
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config.middleware[0].options as CacheOptions;
}

Deno.test("cache: options, defaults and config errors", () => {
  const o = options("{}");
  assert.deepEqual([o.store, o.max_size, o.max_object_size, o.default_ttl, o.heuristic], [
    "memory",
    100 * 1024 * 1024,
    1024 * 1024,
    0,
    false,
  ]);
  assert.deepEqual(o.key, { method: true, host: true, path: true, query: "all", headers: [] });
  const bad = parseConfig(
    `listeners: [{name: l, address: ":1", protocol: http}]
middleware: [{cache: {store: disk, excluded_paths: [nope], key: {query: some}, max_size: lots}}]`,
    "t.yaml",
    {},
  );
  assert.ok(!bad.ok);
  const text = bad.errors.map((e) => `${e.path}: ${e.message}`).join("\n");
  for (const p of ["store", "excluded_paths[0]", "key.query", "max_size"]) {
    assert.match(text, new RegExp(p.replace(/[[\]]/g, "\\$&")));
  }
});

Deno.test("cache: the key (method, host, path, chosen query parameters, chosen headers)", () => {
  const { ctx } = testContext();
  ctx.host = "api.example";
  ctx.path = "/items";
  ctx.query = "b=2&a=1&a=3&utm=x";
  ctx.headers.append("Accept-Language", "en");
  const base = { method: true, host: true, path: true, headers: [] };
  assert.equal(compileKey({ ...base, query: "all" })(ctx), "GET api.example/items?b=2&a=1&a=3&utm=x");
  assert.equal(compileKey({ ...base, query: "none" })(ctx), "GET api.example/items");
  assert.equal(compileKey({ ...base, query: ["a", "b"] })(ctx), "GET api.example/items?a=1&a=3&b=2");
  assert.equal(
    compileKey({ method: false, host: false, path: true, query: "none", headers: ["accept-language"] })(ctx),
    "/items|accept-language=en",
  );
});

Deno.test("cache: a hit is written through ctx.res without calling next (headers only for HEAD)", async () => {
  const mw = cache(options("{}"), { call: () => Promise.reject(), hasUpstream: () => false, scope: "unit" });
  const upstream = async (ctx: ReturnType<typeof testContext>["ctx"]) => {
    const h = headers({ "cache-control": "max-age=60", "x-u": "1" });
    ctx.res.writeHead(200, h, 5);
    await ctx.res.write(new TextEncoder().encode("hello"));
    await ctx.res.end();
  };
  let calls = 0;
  const run = async (method = "GET") => {
    const t = testContext();
    t.ctx.method = method;
    t.ctx.host = "h";
    t.ctx.path = "/x";
    await mw.request!(t.ctx, () => (calls++, upstream(t.ctx)));
    return t.sent;
  };
  const first = await run();
  assert.equal(first.headers.get("cache-status"), "loom; fwd=miss; fwd-status=200; stored");
  const second = await run();
  assert.equal(calls, 1);
  assert.equal(second.body, "hello");
  assert.equal(second.headers.get("x-u"), "1");
  assert.match(second.headers.get("cache-status")!, /^loom; hit; ttl=(59|60)$/);
  assert.equal(second.headers.get("age"), "0");
  const head = await run("HEAD");
  assert.equal(head.body, "");
  assert.equal(head.status, 200);
  assert.equal(await purgeCaches({ key: "GET h/x" }, true), 1);
  await run();
  assert.equal(calls, 2);
  closeCaches();
});
