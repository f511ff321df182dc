/**
 * A route's weighted `backends` through a running gateway (HTTP/1.1 and h2c):
 * 10,000 requests per protocol within ±2% of the weights, weight 0 never
 * chosen, all weights 0 → 500, a fixed-answer backend, per-backend header
 * middleware, sticky assignment by cookie and by header.
 */
import assert from "node:assert/strict";
import { itest } from "./helpers.ts";
import { startDualLoom } from "./mw_auth_util.ts";
import { inParallel } from "./gateway_util.ts";
import { startUpstream, type TestUpstream } from "./upstream.ts";

itest(
  "backends: weighted split within ±2%, weight 0, all 0 → 500, per-backend middleware, sticky",
  async () => {
    const tagged = (tag: string): TestUpstream =>
      startUpstream((req) => new Response(`${tag}|${req.headers.get("x-backend") ?? ""}`));
    const ups = { a: tagged("a"), b: tagged("b"), c: tagged("c"), d: tagged("d") };
    const g = await startDualLoom(`
upstreams:
${Object.entries(ups).map(([n, u]) => `  - { name: ${n}, endpoints: ["${u.address}"] }`).join("\n")}
routes:
  - id: split
    path: /split/*
    backends:
      - { upstream: a, weight: 70 }
      - upstream: b
        weight: 20
        middleware:
          - headers: { request: { set: { x-backend: "b" } }, response: { set: { x-served-by: "b" } } }
      - { upstream: c, weight: 10 }
      - { upstream: d, weight: 0 }
  - id: zero
    path: /zero
    backends: [{ upstream: a, weight: 0 }, { upstream: b, weight: 0 }]
  - id: partial
    path: /partial
    backends: [{ upstream: a, weight: 1 }, { direct_response: { status: 500, body: invalid }, weight: 1 }]
  - id: sticky
    path: /sticky/*
    middleware: [{ headers: { response: { set: { x-route: sticky } } } }]
    backends: [{ upstream: a, weight: 1 }, { upstream: b, weight: 1, name: bee }, { upstream: c, weight: 0 }]
    sticky: { cookie: lb, ttl: 1h }
  - id: hashed
    path: /hashed/*
    backends: [{ upstream: a, weight: 3 }, { upstream: b, weight: 1 }]
    sticky: { header: x-user }
`);
    try {
      for (const [proto, base, client] of g.protocols) {
        // 10,000 requests, the shares within ±2 % of 70/20/10 (smooth weighted round robin: exact per cycle).
        const counts: Record<string, number> = { a: 0, b: 0, c: 0, d: 0 };
        const n = 10_000;
        const t0 = performance.now();
        await inParallel(n, proto === "h2c" ? 64 : 16, async () => {
          const r = await fetch(base + "/split/x", { client });
          const [tag, marked] = (await r.text()).split("|");
          counts[tag]++;
          // Backend b's middleware ran for b's requests only, both ways.
          assert.equal(marked, tag === "b" ? "b" : "", proto);
          assert.equal(r.headers.get("x-served-by"), tag === "b" ? "b" : null, proto);
        });
        const ms = performance.now() - t0;
        for (const [tag, weight] of [["a", 70], ["b", 20], ["c", 10]] as const) {
          const share = counts[tag] / n * 100;
          assert.ok(Math.abs(share - weight) <= 2, `${proto}: ${tag} got ${share}%, want ${weight}±2%`);
        }
        assert.equal(counts.d, 0, `${proto}: weight 0 is never chosen`);
        console.log(`${proto}: ${n} requests in ${ms.toFixed(0)} ms: ${JSON.stringify(counts)}`);

        let r = await fetch(base + "/zero", { client });
        assert.equal(r.status, 500, proto);
        await r.body?.cancel();

        const partial: Record<number, number> = {};
        await inParallel(200, 8, async () => {
          const r = await fetch(base + "/partial", { client });
          await r.body?.cancel();
          partial[r.status] = (partial[r.status] ?? 0) + 1;
        });
        assert.deepEqual(partial, { 200: 100, 500: 100 }, proto);

        // Sticky cookie: assigned once, then kept; a stale or zero-weight name is reassigned.
        r = await fetch(base + "/sticky/1", { client });
        const first = (await r.text()).split("|")[0];
        const cookie = r.headers.get("set-cookie") ?? "";
        const value = first === "a" ? "a" : "bee";
        assert.equal(cookie, `lb=${value}; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax`, proto);
        assert.equal(r.headers.get("x-route"), "sticky", proto);
        for (let i = 0; i < 20; i++) {
          const again = await fetch(base + "/sticky/1", {
            client,
            headers: { cookie: `x=1; lb=${value}; y=2` },
          });
          assert.equal((await again.text()).split("|")[0], first, proto);
          assert.equal(again.headers.get("set-cookie"), null, proto);
        }
        for (const stale of ["nope", "c"]) {
          const re = await fetch(base + "/sticky/1", { client, headers: { cookie: `lb=${stale}` } });
          const tag = (await re.text()).split("|")[0];
          assert.ok(tag === "a" || tag === "b", proto);
          assert.match(
            re.headers.get("set-cookie") ?? "",
            new RegExp(`^lb=${tag === "a" ? "a" : "bee"};`),
            proto,
          );
        }

        // Sticky header: one user always on one backend; across users the shares follow the weights.
        const perUser = new Map<string, string>();
        const hashed: Record<string, number> = { a: 0, b: 0 };
        await inParallel(2000, 16, async (i) => {
          const user = `user-${i % 1000}`;
          const r = await fetch(base + "/hashed/x", { client, headers: { "x-user": user } });
          const tag = (await r.text()).split("|")[0];
          const seen = perUser.get(user);
          if (seen !== undefined) assert.equal(tag, seen, `${proto}: ${user} moved`);
          perUser.set(user, tag);
          hashed[tag]++;
        });
        const aShare = hashed.a / 2000 * 100;
        assert.ok(Math.abs(aShare - 75) <= 6, `${proto}: hashed share of a ${aShare}%, want 75%`);
      }
    } finally {
      await g.close();
      for (const u of Object.values(ups)) await u.close();
    }
  },
  { timeoutMs: 60_000 },
);
