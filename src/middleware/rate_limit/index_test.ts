import assert from "node:assert/strict";
import {
  gcra,
  last,
  type LimitParams,
  LocalTable,
  slidingWindow,
  tableBytes,
  type WindowState,
} from "./table.ts";
import { compileKey, rateLimit, rateLimitNeeds } from "./index.ts";
import { testContext } from "../test_context.ts";
import { NO_ENV } from "../registry.ts";
import { JWT_CLAIMS_VAR } from "../template.ts";
import { parseConfig } from "../../config/load.ts";
import type { RateLimitOptions } from "../../config/middleware/rate_limit.ts";
import { SharedRegions } from "../../core/shared_memory.ts";

const TB: LimitParams = { algorithm: "token_bucket", interval: 100, capacity: 5 }; // 10/s, burst 5
const SW: LimitParams = { algorithm: "sliding_window", interval: 1000, capacity: 10 }; // 10 per 1 s

Deno.test("rate_limit gcra: a full bucket gives `burst` at once, then one per interval; retry and reset", () => {
  let tat = 0;
  const now = 1_000_000;
  for (let i = 0; i < 5; i++) {
    tat = gcra(tat, now, TB, 1);
    assert.equal(last.granted, 1);
    assert.equal(last.remaining, 4 - i);
  }
  assert.equal(last.resetMs, 500); // five tokens to refill
  tat = gcra(tat, now, TB, 1);
  assert.equal(last.granted, 0);
  assert.equal(last.retryMs, 100);
  tat = gcra(tat, now + 99, TB, 1);
  assert.equal(last.granted, 0);
  assert.ok(Math.abs(last.retryMs - 1) < 1e-9);
  tat = gcra(tat, now + 100, TB, 1);
  assert.equal(last.granted, 1);
  assert.equal(last.remaining, 0);
  // Several units at once: as many as there are (a prefetch), none when none.
  tat = gcra(tat, now + 400, TB, 10);
  assert.equal(last.granted, 3);
  // Idle for long: the bucket is full again, never fuller.
  gcra(tat, now + 1e6, TB, 100);
  assert.equal(last.granted, 5);
});

Deno.test("rate_limit gcra: over a long run, granted = burst + rate × time", () => {
  let tat = 0;
  let granted = 0;
  for (let t = 0; t <= 10_000; t += 5) {
    tat = gcra(tat, 5e6 + t, TB, 1);
    granted += last.granted;
  }
  assert.equal(granted, 5 + 100); // 10/s for 10 s, plus the burst
});

Deno.test("rate_limit sliding window: counts, weighting of the previous window, retry times", () => {
  const s: WindowState = { start: -Infinity, cur: 0, prev: 0 };
  const t0 = 50_000; // a window start
  for (let i = 0; i < 10; i++) {
    slidingWindow(s, t0 + 100, SW, 1);
    assert.equal(last.granted, 1);
  }
  assert.equal(last.remaining, 0);
  slidingWindow(s, t0 + 200, SW, 1);
  assert.equal(last.granted, 0);
  // Full window: wait for the next one, plus until 10 × (1 - e) <= 9 → e >= 0.1.
  assert.ok(Math.abs(last.retryMs - (800 + 100)) < 1e-6, String(last.retryMs));
  slidingWindow(s, t0 + 1050, SW, 1); // previous counts 10 × 0.95 = 9.5: no room
  assert.equal(last.granted, 0);
  slidingWindow(s, t0 + 1100, SW, 1); // 10 × 0.9 = 9: one more
  assert.equal(last.granted, 1);
  slidingWindow(s, t0 + 1500, SW, 10); // 10 × 0.5 + 1 = 6: four more
  assert.equal(last.granted, 4);
  // Two windows later nothing remains.
  slidingWindow(s, t0 + 3000, SW, 100);
  assert.equal(last.granted, 10);
});

Deno.test("rate_limit table: keys are separate; two tables over one buffer share the counts; give-back", () => {
  const buf = new SharedArrayBuffer(tableBytes(64));
  const a = new LocalTable(buf);
  const b = new LocalTable(buf);
  const now = 1e6;
  for (let i = 0; i < 3; i++) a.take("x", TB, 1, now);
  for (let i = 0; i < 2; i++) b.take("x", TB, 1, now);
  assert.equal(last.remaining, 0);
  a.take("x", TB, 1, now);
  assert.equal(last.granted, 0);
  b.take("y", TB, 1, now);
  assert.equal(last.granted, 1);
  b.take("x", TB, -1, now); // a request another limit refused gives its unit back
  a.take("x", TB, 1, now);
  assert.equal(last.granted, 1);
  // The sliding window in a table too.
  const w = new LocalTable(new ArrayBuffer(tableBytes(16)));
  for (let i = 0; i < 10; i++) w.take("k", SW, 1, 7000);
  w.take("k", SW, 1, 7000);
  assert.equal(last.granted, 0);
  w.take("k", SW, -1, 7000);
  w.take("k", SW, 1, 7000);
  assert.equal(last.granted, 1);
});

Deno.test("rate_limit table: bounded — more keys than slots evict the entry closest to expiry; expired slots are reused", () => {
  const t = new LocalTable(new ArrayBuffer(tableBytes(16))); // 16 slots
  const now = 1e6;
  // 16 live keys (each bucket at 4 of 5), then 100 more: never throws, memory fixed.
  for (let i = 0; i < 116; i++) t.take(`k${i}`, TB, 1, now + i);
  assert.ok(t.evictions >= 100, String(t.evictions));
  // Once full again (every bucket refilled), slots are reclaimed without evicting.
  const before = t.evictions;
  for (let i = 0; i < 1000; i++) t.take(`n${i}`, TB, 1, now + 1e6 + i * 1000);
  assert.equal(t.evictions, before);
  // A key keeps its state while it is live.
  for (let i = 0; i < 5; i++) t.take("hot", TB, 1, now + 5e6);
  t.take("hot", TB, 1, now + 5e6);
  assert.equal(last.granted, 0);
});

Deno.test("rate_limit table: exact across Worker isolates (spinlock per slot)", async () => {
  const buffer = new SharedArrayBuffer(tableBytes(64));
  const run = (tries: number) =>
    new Promise<number>((resolve, reject) => {
      const w = new Worker(new URL("./table_test_worker.ts", import.meta.url), { type: "module" });
      w.onmessage = (e) => {
        w.terminate();
        resolve(e.data as number);
      };
      w.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message));
      };
      w.postMessage({ buffer, tries, keys: 4 });
    });
  // 4 keys × burst 5000 with no refill: the two workers together get exactly 20 000 of their 60 000 tries.
  const got = await Promise.all([run(30_000), run(30_000)]);
  assert.equal(got[0] + got[1], 20_000, JSON.stringify(got));
});

Deno.test("rate_limit keys: parts, composites, missing parts shared or skipped, long values shortened", () => {
  const { ctx } = testContext();
  ctx.headers.append("x-tenant", "acme");
  ctx.vars.set(JWT_CLAIMS_VAR, { sub: "u1", n: 7 });
  assert.equal(compileKey(["client_ip"], false)(ctx), "127.0.0.1");
  assert.equal(compileKey(["header:X-Tenant", "jwt:sub", "jwt:n"], false)(ctx), "acme\x1fu1\x1f7");
  assert.equal(compileKey(["header:x-none"], false)(ctx), "");
  assert.equal(compileKey(["header:x-none"], true)(ctx), null);
  assert.equal(compileKey(["client_ip", "consumer"], true)(ctx), null);
  assert.equal(compileKey(["global"], true)(ctx), "");
  ctx.headers.set("x-tenant", "a".repeat(10_000));
  assert.equal(compileKey(["header:x-tenant"], false)(ctx)!.length, 256);
});

function options(yaml: string): RateLimitOptions {
  const r = parseConfig(
    `listeners: [{name: l, address: ":1", protocol: http}]\nmiddleware:\n  - rate_limit: ${yaml}\n`,
    "t.yaml",
    {},
  );
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config.middleware[0].options as RateLimitOptions;
}

Deno.test("rate_limit: 429 with Retry-After and RateLimit fields; allowed responses get the fields; counted", async () => {
  const o = options("{limits: [{name: ip, rate: 1, per: 1m, burst: 2}]}");
  const decisions: string[] = [];
  const mw = rateLimit(o, {
    ...NO_ENV,
    metrics: {
      rateLimitDecision: (_r, result) => decisions.push(result),
      redisRequest: () => {},
      redisError: () => {},
      redisState: () => {},
    },
  });
  const passed: number[] = [];
  for (let i = 0; i < 3; i++) {
    const { ctx, sent } = testContext();
    await mw.request!(ctx, () => {
      passed.push(i);
      return Promise.resolve();
    });
    const head = { status: sent.status || 200, headers: sent.headers, bodyLength: 0 };
    if (sent.status === 0) mw.response!(ctx, head);
    else mw.response!(ctx, head); // Loom runs response hooks on its own answers too
    assert.equal(head.headers.get("ratelimit-policy"), '"ip";q=1;w=60');
    // One unit a minute, two at once: t is the time until the bucket is full again.
    if (i < 2) assert.equal(head.headers.get("ratelimit"), `"ip";r=${1 - i};t=${60 * (i + 1)}`);
    else {
      assert.equal(sent.status, 429);
      assert.equal(ctx.rejection, "rate_limit/limited");
      assert.equal(head.headers.get("retry-after"), "60");
      assert.equal(head.headers.get("ratelimit"), '"ip";r=0;t=60');
    }
  }
  assert.deepEqual(passed, [0, 1]);
  assert.deepEqual(decisions, ["allowed", "allowed", "limited"]);
});

Deno.test("rate_limit: limits in order, a refusal gives back what earlier limits took; classes; headers: false", async () => {
  const o = options(`
      headers: false
      limits:
        - { name: global, key: global, rate: 1, per: 1h, burst: 4 }
        - { name: user, key: header:x-user, rate: 1, per: 1h, burst: 1, class: header:x-plan, classes: { gold: { rate: 1, per: 1h, burst: 2 } } }`);
  const mw = rateLimit(o, NO_ENV);
  const send = async (user: string, plan = "") => {
    const { ctx, sent } = testContext();
    ctx.headers.append("x-user", user);
    if (plan !== "") ctx.headers.append("x-plan", plan);
    let ok = false;
    await mw.request!(ctx, () => {
      ok = true;
      return Promise.resolve();
    });
    const head = { status: 200, headers: sent.headers, bodyLength: 0 };
    mw.response!(ctx, head);
    return { ok, status: sent.status, policy: head.headers.get("ratelimit-policy") };
  };
  const a1 = await send("a");
  assert.equal(a1.ok, true);
  assert.equal(a1.policy, undefined); // headers: false
  const a2 = await send("a");
  assert.equal(a2.status, 429);
  assert.equal(a2.policy, '"global";q=1;w=3600, "user";q=1;w=3600');
  // a's refusals gave their global unit back: b (gold: 2) still gets two of the global four.
  for (let i = 0; i < 5; i++) assert.equal((await send("a")).status, 429);
  assert.equal((await send("b", "gold")).ok, true);
  assert.equal((await send("b", "gold")).ok, true);
  const b3 = await send("b", "gold");
  assert.equal(b3.status, 429);
  assert.match(b3.policy!, /"user.gold";q=1;w=3600/);
  assert.equal((await send("c")).ok, true); // the fourth global unit (b3 gave its own back)
  const d = await send("d");
  assert.equal(d.status, 429); // refused by global: user not consulted
  assert.equal(d.policy, '"global";q=1;w=3600');
});

Deno.test("rate_limit: shared blocks by config position; config errors are located", () => {
  const o = options(
    "{limits: [{rate: 5}, {key: [route, client_ip], algorithm: sliding_window, limit: 9, window: 1m}, " +
      "{name: r, rate: 1, store: redis}], redis: {}}",
  );
  assert.deepEqual(rateLimitNeeds(o).map(([n]) => n), [
    "limit0.:token_bucket:65536",
    "limit1.:sliding_window:65536",
  ]);
  // A block reserved by the supervisor is the one every isolate's middleware uses.
  const regions = new SharedRegions();
  regions.reserve(new Map([["middleware[0]/limit0.:token_bucket:65536", tableBytes(65536)]]));
  const view = SharedRegions.attach(regions.snapshot());
  rateLimit(o, { ...NO_ENV, regions: view, scope: "middleware[0]" });
  assert.deepEqual([...view.missing], ["middleware[0]/limit1.:sliding_window:65536"]);

  const errors = (limits: string) => {
    const r = parseConfig(
      `listeners: [{name: l, address: ":1", protocol: http}]\nmiddleware:\n  - rate_limit:\n      limits:\n${limits}`,
      "t.yaml",
      {},
    );
    assert.ok(!r.ok);
    return r.errors.map((e) => `${e.line}: ${e.path}: ${e.message}`);
  };
  const has = (lines: string[], re: RegExp) =>
    assert.ok(lines.some((l) => re.test(l)), `${re}\n${lines.join("\n")}`);
  const schema = errors("        - { key: header:bad name, rate: 1 }\n        - { key: nope }\n");
  has(schema, /^5: .*limits\[0\]\.key.*header field name/);
  has(schema, /^6: .*limits\[1\].*unknown key part "nope"/);
  const semantic = errors(
    "        - { algorithm: sliding_window, limit: 5 }\n" +
      "        - { rate: 5, limit: 3 }\n" +
      "        - { rate: 1, store: redis, prefetch: 10 }\n" +
      "        - { name: b, rate: 1, prefetch: 10 }\n" +
      "        - { name: c }\n",
  );
  has(semantic, /^5: .*limits\[0\]\.window: sliding_window needs both limit and window/);
  has(semantic, /^6: .*limits\[1\]\.limit: "limit" is not a token_bucket field/);
  has(semantic, /limits: a limit has store: redis but there is no redis block/);
  has(semantic, /^8: .*limits\[3\]\.prefetch: prefetch is for store: redis/);
  has(semantic, /^9: .*limits\[4\]: needs rate \(or classes\)/);
  has(semantic, /limits\[2\]\.name: two limits named "client_ip"/);
});

Deno.test("rate_limit: the Loom format's top-level block limits per client IP", async () => {
  const { topLevelRateLimit } = await import("../../config/middleware/rate_limit.ts");
  assert.equal(topLevelRateLimit(undefined), null);
  assert.equal(topLevelRateLimit({ enabled: false, rate: 5 }), null);
  const o = topLevelRateLimit({ enabled: true, rate: 2, burst: 0 })!;
  assert.equal(o.limits[0].burst, 2);
  const mw = rateLimit(o, NO_ENV);
  const statuses: number[] = [];
  for (const ip of ["1.1.1.1", "1.1.1.1", "1.1.1.1", "2.2.2.2"]) {
    const { ctx, sent } = testContext();
    ctx.clientIp = ip;
    await mw.request!(ctx, () => Promise.resolve());
    statuses.push(sent.status || 200);
  }
  assert.deepEqual(statuses, [200, 200, 429, 200]);
});
