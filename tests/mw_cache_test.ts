/**
 * The cache middleware through a running gateway: the RFC 9111 rules as a
 * table (freshness from max-age, s-maxage and Expires; no-store, private,
 * Vary, no-cache revalidation by ETag and by Last-Modified, the 304 refresh,
 * must-revalidate, stale-while-revalidate, stale-if-error, Age,
 * Cache-Status), client conditionals answered 304, Authorization, HEAD,
 * a hit over h2c, request coalescing (100 requests, one upstream fetch),
 * streamed bodies over max_object_size, the top-level `cache` block, the
 * counters, and purge through the admin API with workers: 2.
 */
import assert from "node:assert/strict";
import { itest, startLoom, startLoomProcess, startRedis, waitFor } from "./helpers.ts";
import { type DualLoom, serve, type Service, startDualLoom } from "./mw_auth_util.ts";

/** What the scripted upstream answers on a path. */
interface Script {
  status?: number;
  headers?: Record<string, string>;
  body?: string;
  /** ms before answering. */
  delay?: number;
  /** A streamed body (no Content-Length): [ms to wait, bytes to send] in order. */
  chunks?: [number, number][];
  /** Answers a request carrying a matching validator (If-None-Match / If-Modified-Since) with 304 and these fields. */
  on304?: Record<string, string>;
}

/** An upstream answering each path by its script, counting and recording requests. */
function scripted(): Service & {
  scripts: Map<string, Script>;
  hits: Map<string, number>;
  seen: Map<string, Headers[]>;
} {
  const scripts = new Map<string, Script>();
  const hits = new Map<string, number>();
  const seen = new Map<string, Headers[]>();
  const svc = serve(async (req) => {
    const u = new URL(req.url);
    const path = u.pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    seen.set(path, [...seen.get(path) ?? [], req.headers]);
    const s = scripts.get(path) ?? {};
    if (s.delay) await new Promise((r) => setTimeout(r, s.delay));
    const h = new Headers(s.headers ?? {});
    const n = hits.get(path)!;
    if (s.on304 !== undefined) {
      const inm = req.headers.get("if-none-match");
      const ims = req.headers.get("if-modified-since");
      if ((inm !== null && inm === h.get("etag")) || (ims !== null && ims === h.get("last-modified"))) {
        return new Response(null, {
          status: 304,
          headers: { ...s.on304, ...(h.get("etag") ? { etag: h.get("etag")! } : {}) },
        });
      }
    }
    if (s.chunks !== undefined) {
      const chunks = s.chunks;
      return new Response(
        new ReadableStream({
          async start(c) {
            for (const [ms, size] of chunks) {
              await new Promise((r) => setTimeout(r, ms));
              c.enqueue(new Uint8Array(size).fill(97 + n));
            }
            c.close();
          },
        }),
        { headers: h },
      );
    }
    const body = (s.body ?? "body") + (s.body === undefined ? ` ${n}${u.search}` : "");
    return new Response(req.method === "HEAD" ? null : body, { status: s.status ?? 200, headers: h });
  });
  return { ...svc, scripts, hits, seen };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** GET (or `init`) and the parts the tests look at. */
async function get(
  base: string,
  path: string,
  init: RequestInit & { client?: Deno.HttpClient } = {},
): Promise<{ status: number; body: string; h: Headers }> {
  const res = await fetch(base + path, init);
  return { status: res.status, body: await res.text(), h: res.headers };
}

/** A Loom with the cache (`options`) on route `all` to the scripted upstream (HTTP/1.1 and h2c listeners). */
async function withCache(
  options: Record<string, unknown>,
  fn: (loom: DualLoom, up: ReturnType<typeof scripted>) => Promise<void>,
  more: { upstreams?: unknown[]; routes?: unknown[]; extra?: string } = {},
): Promise<void> {
  const up = scripted();
  const loom = await startDualLoom(`
upstreams: ${JSON.stringify([{ name: "up", endpoints: [up.address] }, ...more.upstreams ?? []])}
routes: ${
    JSON.stringify([...more.routes ?? [], {
      id: "all",
      path: "/*",
      upstream: "up",
      middleware: [{ cache: options }],
    }])
  }
${more.extra ?? ""}`);
  try {
    await fn(loom, up);
  } finally {
    await loom.close();
    await up.close();
  }
}

const httpDate = (offsetMs: number) => new Date(Date.now() + offsetMs).toUTCString();

itest("cache: RFC 9111 rules, through the gateway (HTTP/1.1)", async () => {
  await withCache({ stale_if_error: "0s" }, async (loom, up) => {
    const base = loom.protocols[0][1];
    /** [name, script, what two GETs give: upstream fetches, and a check of the second answer]. */
    const cases: [string, Script, number, ((r: Awaited<ReturnType<typeof get>>) => void)?][] = [
      ["max-age", { headers: { "cache-control": "max-age=60" } }, 1, (r) => {
        assert.match(r.h.get("cache-status")!, /^loom; hit; ttl=(59|60)$/);
        assert.match(r.h.get("age")!, /^[01]$/);
        assert.equal(r.body, "body 1");
      }],
      ["s-maxage wins", { headers: { "cache-control": "max-age=0, s-maxage=60" } }, 1],
      ["expires", { headers: { expires: httpDate(60_000) } }, 1],
      ["expired expires", { headers: { expires: httpDate(-60_000) } }, 2],
      ["no-store", { headers: { "cache-control": "no-store, max-age=60" } }, 2, (r) => {
        assert.equal(r.h.get("cache-status"), "loom; fwd=miss; fwd-status=200");
      }],
      ["private", { headers: { "cache-control": "private, max-age=60" } }, 2],
      ["vary star", { headers: { "cache-control": "max-age=60", vary: "*" } }, 2],
      ["set-cookie", { headers: { "cache-control": "max-age=60", "set-cookie": "a=b" } }, 2],
      ["no freshness", { headers: {} }, 2],
      ["age from upstream", { headers: { "cache-control": "max-age=60", age: "30" } }, 1, (r) => {
        assert.ok(Number(r.h.get("age")) >= 30, r.h.get("age")!);
        assert.match(r.h.get("cache-status")!, /ttl=(29|30)$/);
      }],
      ["status 404 with max-age", { status: 404, headers: { "cache-control": "max-age=60" } }, 1],
      ["status 500 with max-age", { status: 500, headers: { "cache-control": "max-age=60" } }, 2],
    ];
    for (const [name, script, fetches, check] of cases) {
      const path = "/" + name.replaceAll(" ", "-");
      up.scripts.set(path, script);
      const first = await get(base, path);
      assert.equal(first.status, script.status ?? 200, name);
      const second = await get(base, path);
      assert.equal(
        up.hits.get(path),
        fetches,
        `${name}: upstream fetches; ${first.h.get("cache-status")} / ${second.h.get("cache-status")}`,
      );
      if (fetches === 1) assert.equal(second.body, first.body, name);
      check?.(second);
    }
  });
});

itest("cache: revalidation with ETag and Last-Modified, the 304 refresh, client conditionals", async () => {
  await withCache({}, async (loom, up) => {
    const base = loom.protocols[0][1];
    // no-cache: stored, revalidated on every use.
    up.scripts.set("/etag", {
      headers: { "cache-control": "no-cache", etag: '"v1"' },
      on304: { "x-fresh": "yes" },
    });
    const a = await get(base, "/etag");
    assert.equal(a.h.get("cache-status"), "loom; fwd=miss; fwd-status=200; stored");
    const b = await get(base, "/etag");
    assert.equal(b.body, a.body);
    assert.equal(up.hits.get("/etag"), 2);
    assert.equal(up.seen.get("/etag")![1].get("if-none-match"), '"v1"');
    assert.match(b.h.get("cache-status")!, /^loom; fwd=stale; fwd-status=304; ttl=-[12]$/);
    assert.equal(b.h.get("x-fresh"), "yes", "the 304's fields are served");

    // Last-Modified, expired: If-Modified-Since; the 304 refreshes freshness and fields.
    const lm = httpDate(-3600_000);
    up.scripts.set("/lm", {
      headers: { "cache-control": "max-age=1", "last-modified": lm, "x-version": "1" },
      on304: { "cache-control": "max-age=60", "x-version": "2" },
    });
    await get(base, "/lm");
    await sleep(1100);
    const c = await get(base, "/lm");
    assert.equal(up.seen.get("/lm")![1].get("if-modified-since"), lm);
    assert.equal(c.h.get("x-version"), "2");
    assert.equal(c.body, "body 1");
    const d = await get(base, "/lm");
    assert.match(d.h.get("cache-status")!, /^loom; hit; ttl=(59|60)$/);
    assert.equal(d.h.get("x-version"), "2");
    assert.equal(up.hits.get("/lm"), 2);

    // A client's conditional request on a fresh entry: 304 from Loom.
    up.scripts.set("/cond", {
      headers: { "cache-control": "max-age=60", etag: '"c1"', "last-modified": lm },
    });
    await get(base, "/cond");
    const e = await get(base, "/cond", { headers: { "if-none-match": '"x", W/"c1"' } });
    assert.equal(e.status, 304);
    assert.match(e.h.get("cache-status")!, /^loom; hit/);
    const f = await get(base, "/cond", { headers: { "if-modified-since": httpDate(0) } });
    assert.equal(f.status, 304);
    const g = await get(base, "/cond", { headers: { "if-none-match": '"other"' } });
    assert.equal(g.status, 200);
    assert.equal(up.hits.get("/cond"), 1);
    // ... and on a miss: the cache fills itself (the upstream sees no validator) and answers 304.
    up.scripts.set("/cond-miss", { headers: { "cache-control": "max-age=60", etag: '"m1"' } });
    const h = await get(base, "/cond-miss", { headers: { "if-none-match": '"m1"' } });
    assert.equal(h.status, 304);
    assert.equal(up.seen.get("/cond-miss")![0].get("if-none-match"), null);
    assert.equal((await get(base, "/cond-miss")).body, "body 1");

    // The request's no-cache and max-age=0 revalidate; only-if-cached is a 504 on a miss.
    up.scripts.set("/req", { headers: { "cache-control": "max-age=60", etag: '"r1"' }, on304: {} });
    await get(base, "/req");
    const i = await get(base, "/req", { headers: { "cache-control": "no-cache" } });
    assert.match(i.h.get("cache-status")!, /^loom; fwd=request; fwd-status=304/);
    await get(base, "/req", { headers: { "cache-control": "max-age=0" } });
    await get(base, "/req", { headers: { pragma: "no-cache" } });
    assert.equal(up.hits.get("/req"), 4);
    assert.equal(
      (await get(base, "/req", { headers: { "cache-control": "max-age=3600" } })).h.get("cache-status")!
        .split(";")[1],
      " hit",
    );
    assert.equal((await get(base, "/none", { headers: { "cache-control": "only-if-cached" } })).status, 504);
  });
});

itest("cache: Vary, Authorization, HEAD, query keys, unsafe methods, h2c", async () => {
  await withCache({ key: { query: ["page"] } }, async (loom, up) => {
    const [[, base], [, h2base, h2]] = loom.protocols;
    up.scripts.set("/vary", { headers: { "cache-control": "max-age=60", vary: "Accept-Language" } });
    const en1 = await get(base, "/vary", { headers: { "accept-language": "en" } });
    const fr1 = await get(base, "/vary", { headers: { "accept-language": "fr" } });
    const en2 = await get(base, "/vary", { headers: { "accept-language": "en" } });
    assert.equal(fr1.h.get("cache-status"), "loom; fwd=vary-miss; fwd-status=200; stored");
    assert.equal(en2.body, en1.body);
    assert.notEqual(fr1.body, en1.body);
    assert.equal(up.hits.get("/vary"), 2);

    // Authorization: stored only when the response says public (or s-maxage, must-revalidate).
    up.scripts.set("/auth", { headers: { "cache-control": "max-age=60" } });
    up.scripts.set("/auth-public", { headers: { "cache-control": "public, max-age=60" } });
    for (const p of ["/auth", "/auth-public"]) {
      await get(base, p, { headers: { authorization: "Bearer x" } });
      await get(base, p, { headers: { authorization: "Bearer x" } });
    }
    assert.equal(up.hits.get("/auth"), 2);
    assert.equal(up.hits.get("/auth-public"), 1);

    // HEAD from the GET entry: headers only.
    up.scripts.set("/head", { headers: { "cache-control": "max-age=60", "x-a": "1" } });
    await get(base, "/head");
    const head = await fetch(base + "/head", { method: "HEAD" });
    assert.equal(await head.text(), "");
    assert.equal(head.headers.get("x-a"), "1");
    assert.equal(head.headers.get("content-length"), "6");
    assert.match(head.headers.get("cache-status")!, /^loom; hit/);
    assert.equal(up.hits.get("/head"), 1);

    // The key keeps only ?page.
    up.scripts.set("/q", { headers: { "cache-control": "max-age=60" } });
    const q1 = await get(base, "/q?page=1&utm=a");
    const q2 = await get(base, "/q?utm=b&page=1");
    const q3 = await get(base, "/q?page=2");
    assert.equal(q2.body, q1.body);
    assert.notEqual(q3.body, q1.body);
    assert.equal(up.hits.get("/q"), 2);

    // A POST that succeeds drops the URI's entry.
    up.scripts.set("/item", { headers: { "cache-control": "max-age=60" } });
    await get(base, "/item");
    await get(base, "/item", { method: "POST", body: "x" });
    await get(base, "/item");
    assert.equal(up.hits.get("/item"), 3);

    // A hit over h2c.
    up.scripts.set("/h2", { headers: { "cache-control": "max-age=60", "x-b": "2" } });
    const h1 = await get(h2base, "/h2", { client: h2 });
    const h2r = await get(h2base, "/h2", { client: h2 });
    assert.equal(h2r.body, h1.body);
    assert.equal(h2r.h.get("x-b"), "2");
    assert.match(h2r.h.get("cache-status")!, /^loom; hit; ttl=/);
    assert.ok(h2r.h.has("age"));
    assert.equal(up.hits.get("/h2"), 1);

    // The bypass of Range requests.
    const range = await get(base, "/h2", { headers: { range: "bytes=0-1" } });
    assert.equal(range.h.get("cache-status"), "loom; fwd=bypass; detail=range");
  });
});

itest("cache: stale-while-revalidate, stale-if-error, must-revalidate", async () => {
  const down = scripted();
  await withCache({}, async (loom, up) => {
    const base = loom.protocols[0][1];
    up.scripts.set("/swr", {
      headers: { "cache-control": "max-age=1, stale-while-revalidate=30" },
      delay: 100,
    });
    const a = await get(base, "/swr");
    // The refresh answers slowly, and stays fresh for a minute.
    up.scripts.set("/swr", { headers: { "cache-control": "max-age=60" }, delay: 400 });
    await sleep(1100);
    const t0 = performance.now();
    const b = await get(base, "/swr");
    assert.ok(performance.now() - t0 < 300, "served without waiting for the upstream");
    assert.equal(b.body, a.body);
    assert.match(b.h.get("cache-status")!, /^loom; fwd=stale; detail=stale-while-revalidate; ttl=-[12]$/);
    // One background refresh, even with more requests meanwhile.
    await get(base, "/swr");
    await waitFor("the background refresh", () => up.hits.get("/swr") === 2);
    const c = await waitFor("the refreshed answer", async () => {
      const r = await get(base, "/swr");
      return r.body === "body 2" && r;
    });
    assert.match(c.h.get("cache-status")!, /^loom; hit/);
    assert.equal(up.hits.get("/swr"), 2);

    // stale-if-error: the upstream answers 500, then is unreachable.
    up.scripts.set("/sie", { headers: { "cache-control": "max-age=1, stale-if-error=60" } });
    const d = await get(base, "/sie");
    await sleep(1100);
    up.scripts.set("/sie", { status: 500 });
    const e = await get(base, "/sie");
    assert.equal(e.status, 200);
    assert.equal(e.body, d.body);
    assert.match(
      e.h.get("cache-status")!,
      /^loom; fwd=stale; fwd-status=500; detail=stale-if-error; ttl=-[12]$/,
    );

    // must-revalidate: never stale, the error goes through.
    up.scripts.set("/mr", { headers: { "cache-control": "max-age=1, must-revalidate" } });
    await get(base, "/mr");
    await sleep(1100);
    up.scripts.set("/mr", { status: 503 });
    assert.equal((await get(base, "/mr")).status, 503);

    // Unreachable upstream (route /down/* to a stopped server).
    down.scripts.set("/down/x", { headers: { "cache-control": "max-age=1, stale-if-error=60" } });
    const f = await get(base, "/down/x");
    await down.close();
    await sleep(1100);
    const g = await get(base, "/down/x");
    assert.equal(g.status, 200);
    assert.equal(g.body, f.body);
    assert.match(g.h.get("cache-status")!, /fwd=stale; fwd-status=50[24]; detail=stale-if-error/);
  }, {
    upstreams: [{ name: "down", endpoints: [down.address] }],
    routes: [{ id: "down", path: "/down/*", upstream: "down", middleware: [{ cache: {} }] }],
  });
});

itest("cache: coalescing (100 requests, one upstream fetch), streamed bodies, max_object_size", async () => {
  await withCache({ max_object_size: "4KB" }, async (loom, up) => {
    const [[, base], [, h2base, h2]] = loom.protocols;
    up.scripts.set("/cold", { headers: { "cache-control": "max-age=60" }, delay: 500 });
    const answers = await Promise.all(
      Array.from(
        { length: 100 },
        (_, i) => get(i % 2 === 0 ? base : h2base, "/cold", i % 2 === 0 ? {} : { client: h2 }),
      ),
    );
    assert.equal(up.hits.get("/cold"), 1, "one upstream fetch for 100 concurrent requests");
    assert.ok(answers.every((a) => a.status === 200 && a.body === "body 1"));
    // One answer was the fetch; the others waited for it (collapsed) or came after it (hit).
    const fromCache = answers.filter((a) => /collapsed|^loom; hit/.test(a.h.get("cache-status")!)).length;
    assert.equal(fromCache, 99);

    // A response that is not storable: the waiters go upstream themselves.
    up.scripts.set("/private", { headers: { "cache-control": "private" }, delay: 200 });
    await Promise.all(Array.from({ length: 5 }, () => get(base, "/private")));
    assert.equal(up.hits.get("/private"), 5);

    // Streamed through at once while stored on the side (first bytes before the upstream finishes).
    up.scripts.set("/stream-small", {
      headers: { "cache-control": "max-age=60" },
      chunks: [[0, 100], [400, 100]],
    });
    const t0 = performance.now();
    const res = await fetch(base + "/stream-small");
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.ok(performance.now() - t0 < 300, "the first chunk is not held back");
    let total = first.value!.length;
    for (let c = await reader.read(); !c.done; c = await reader.read()) total += c.value.length;
    assert.equal(total, 200);
    const again = await get(base, "/stream-small");
    assert.equal(again.body.length, 200);
    assert.match(again.h.get("cache-status")!, /^loom; hit/);
    assert.equal(up.hits.get("/stream-small"), 1);

    // Past max_object_size mid-stream: delivered whole, not stored.
    up.scripts.set("/stream-big", {
      headers: { "cache-control": "max-age=60" },
      chunks: [[0, 3000], [50, 3000], [50, 3000]],
    });
    assert.equal((await get(base, "/stream-big")).body.length, 9000);
    assert.equal((await get(base, "/stream-big")).body.length, 9000);
    assert.equal(up.hits.get("/stream-big"), 2);
    // With a Content-Length over the limit: not even copied.
    up.scripts.set("/big", { headers: { "cache-control": "max-age=60" }, body: "x".repeat(5000) });
    await get(base, "/big");
    assert.equal((await get(base, "/big")).h.get("cache-status"), "loom; fwd=miss; fwd-status=200");
  });
});

/** `loom_cache_requests_total` samples as "route/result" → count. */
async function cacheCounts(metricsUrl: string): Promise<Map<string, number>> {
  const text = await (await fetch(metricsUrl)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^loom_cache_requests_total\{route="([^"]*)",result="([^"]*)"\} (\d+)/gm)) {
    out.set(`${m[1]}/${m[2]}`, Number(m[3]));
  }
  return out;
}

itest(
  "cache: the top-level cache block (default_ttl, excluded_paths, bypass_header) and the counters",
  async () => {
    const up = scripted();
    const loom = await startDualLoom(`
upstreams: [{name: up, endpoints: ["${up.address}"]}]
routes: [{id: all, path: "/*", upstream: up}]
cache:
  enabled: true
  default_ttl: 1m
  excluded_paths: ["/live/*"]
`);
    try {
      const base = loom.protocols[0][1];
      for (const p of ["/plain", "/plain", "/live/x", "/live/x"]) await get(base, p);
      assert.equal(up.hits.get("/plain"), 1, "default_ttl gives freshness to a response without any");
      assert.equal(up.hits.get("/live/x"), 2, "excluded");
      const b = await get(base, "/plain", { headers: { "x-cache-bypass": "1" } });
      assert.equal(b.h.get("cache-status"), "loom; fwd=bypass");
      assert.equal(up.hits.get("/plain"), 2);
      const counts = await cacheCounts(loom.loom.admin("/metrics"));
      assert.equal(counts.get("all/hit"), 1);
      assert.equal(counts.get("all/miss"), 1);
      assert.equal(counts.get("all/bypass"), 1);
    } finally {
      await loom.close();
      await up.close();
    }
  },
);

/** POSTs `body` to the admin API's /cache/purge. */
async function purge(
  adminUrl: string,
  body: unknown,
  headers: Record<string, string> = { "content-type": "application/json" },
) {
  const res = await fetch(adminUrl, { method: "POST", headers, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

itest(
  "cache: purge by key and by prefix through the admin API reaches every worker (workers: 2)",
  async () => {
    const up = scripted();
    const loom = await startLoomProcess(`
workers: 2
listeners: [{name: http, address: "127.0.0.1:\${PORT}", protocol: http}]
upstreams: [{name: up, endpoints: ["${up.address}"]}]
routes: [{id: all, path: "/*", upstream: up, middleware: [{cache: {}}]}]
`);
    /** GETs `path` on a connection of its own (so requests spread over both workers). */
    const fresh = async (path: string) => {
      const client = Deno.createHttpClient({});
      try {
        return await get(loom.url(""), path, { client });
      } finally {
        client.close();
      }
    };
    try {
      for (const p of ["/p/a", "/p/b", "/q"]) {
        up.scripts.set(p, {
          headers: { "cache-control": "max-age=600" },
        });
      }
      // Fill both workers' stores: keep asking until both answered (two upstream fetches) and both hit.
      await waitFor(
        "both workers to hold /p/a",
        async () => {
          await fresh("/p/a");
          return up.hits.get("/p/a") === 2;
        },
        20_000,
        0,
      );
      for (let i = 0; i < 10; i++) await fresh("/p/b"), await fresh("/q");
      const purgeUrl = loom.admin("/cache/purge");
      assert.equal(
        (await purge(purgeUrl, { key: "GET 127.0.0.1/p/a" }, { "content-type": "text/plain" })).status,
        403,
      );
      assert.equal((await purge(purgeUrl, { key: 1 })).status, 400);
      assert.equal((await purge(purgeUrl, { key: "a", prefix: "b" })).status, 400);
      const byKey = await purge(purgeUrl, { key: "GET 127.0.0.1/p/a" });
      assert.equal(byKey.status, 200);
      assert.deepEqual(byKey.json, { key: "GET 127.0.0.1/p/a", purged: 2 });
      assert.match((await fresh("/p/a")).h.get("cache-status")!, /^loom; fwd=miss/);
      // Each worker fetches it again once (the kernel spreads connections over the workers).
      await waitFor(
        "both workers to fetch /p/a again",
        async () => {
          await fresh("/p/a");
          return up.hits.get("/p/a") === 4;
        },
        20_000,
        0,
      );
      for (let i = 0; i < 6; i++) await fresh("/p/a");
      assert.equal(up.hits.get("/p/a"), 4, "once per worker");
      const bHits = up.hits.get("/p/b")!;
      const byPrefix = await purge(purgeUrl, { prefix: "GET 127.0.0.1/p/" });
      assert.ok(byPrefix.json.purged >= 3, JSON.stringify(byPrefix.json));
      assert.match((await fresh("/p/b")).h.get("cache-status")!, /^loom; fwd=miss/);
      assert.ok(up.hits.get("/p/b")! > bHits);
      const qHits = up.hits.get("/q");
      for (let i = 0; i < 4; i++) assert.match((await fresh("/q")).h.get("cache-status")!, /^loom; hit/);
      assert.equal(up.hits.get("/q"), qHits, "other keys stay");
    } finally {
      await loom.close();
      await up.close();
    }
  },
);

itest("cache: store: redis is shared by two Loom processes (and purged through either)", async () => {
  const redis = await startRedis();
  const up = scripted();
  const yaml = `
listeners: [{name: http, address: "127.0.0.1:\${PORT}", protocol: http}]
upstreams: [{name: up, endpoints: ["${up.address}"]}]
routes:
  - id: all
    path: "/*"
    upstream: up
    middleware: [{cache: {store: redis, redis: {address: "127.0.0.1:${redis.port}", prefix: "t:"}}}]
`;
  // Two processes: nothing is shared but the redis-server.
  const a = await startLoomProcess(yaml);
  const b = await startLoom(yaml);
  try {
    up.scripts.set("/shared", { headers: { "cache-control": "max-age=60", etag: '"s1"', "x-a": "1" } });
    up.scripts.set("/vary", { headers: { "cache-control": "max-age=60", vary: "accept-language" } });
    // The first lookups may run before the connection is up (a miss, not a wait): fill until stored.
    await waitFor("a stored response in redis", async () => {
      await get(a.url(""), "/shared");
      return (await get(b.url(""), "/shared")).h.get("cache-status")?.startsWith("loom; hit");
    });
    const hits = up.hits.get("/shared")!;
    const fromA = await get(a.url(""), "/shared");
    assert.match(fromA.h.get("cache-status")!, /^loom; hit; ttl=/);
    const fromB = await get(b.url(""), "/shared");
    assert.match(fromB.h.get("cache-status")!, /^loom; hit; ttl=/);
    assert.equal(fromB.h.get("x-a"), "1");
    assert.equal(fromB.h.get("etag"), '"s1"');
    assert.equal(fromB.body, fromA.body);
    assert.equal(up.hits.get("/shared"), hits, "B answered from what A stored");
    // Vary variants through Redis (the marker, then the variant).
    await get(a.url(""), "/vary", { headers: { "accept-language": "en" } });
    await waitFor(
      "the variant in redis",
      async () =>
        (await get(b.url(""), "/vary", { headers: { "accept-language": "en" } })).h.get("cache-status")
          ?.startsWith(
            "loom; hit",
          ),
    );
    const fr = await get(b.url(""), "/vary", { headers: { "accept-language": "fr" } });
    assert.match(fr.h.get("cache-status")!, /^loom; fwd=vary-miss/);
    // Purge through B's admin API: A misses too.
    const p = await purge(b.admin("/cache/purge"), { key: "GET 127.0.0.1/shared" });
    assert.deepEqual(p.json, { key: "GET 127.0.0.1/shared", purged: 1 });
    assert.match((await get(a.url(""), "/shared")).h.get("cache-status")!, /^loom; fwd=miss/);
    const pv = await purge(a.admin("/cache/purge"), { prefix: "GET 127.0.0.1/v" });
    assert.equal(pv.json.purged, 3, "the marker and two variants");
  } finally {
    await a.close();
    await b.close();
    await up.close();
    await redis.kill();
  }
}, { timeoutMs: 60_000, needs: ["redis-server"] });
