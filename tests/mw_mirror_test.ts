/**
 * Request mirroring through a running gateway (HTTP/1.1 and h2c): the mirror
 * gets copies (the percentage respected, bodies teed within max_body, the
 * route's request header edits applied), its answers never reach the
 * client; with the mirror upstream slow (1 s) or down, the client's p99
 * stays within 10% of the unmirrored route's, measured in the same run.
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoomProcess, waitFor } from "./helpers.ts";
import { startDualLoom } from "./mw_auth_util.ts";
import { startUpstream } from "./upstream.ts";
import { inParallel, metricValue } from "./gateway_util.ts";

interface Seen {
  method: string;
  path: string;
  body: string;
  headers: Record<string, string>;
}

/** An upstream recording what it got; answers `answer`. */
function recorder(answer: string) {
  const seen: Seen[] = [];
  const up = startUpstream(async (req) => {
    let body: string;
    try {
      body = await req.text();
    } catch {
      return new Response(null, { status: 400 }); // an aborted copy: never whole
    }
    const url = new URL(req.url);
    seen.push({
      method: req.method,
      path: url.pathname + url.search,
      body,
      headers: Object.fromEntries(req.headers),
    });
    return new Response(answer, { headers: { "x-from": answer } });
  });
  return { up, seen };
}

/** A body streamed in `chunks` pieces of `size` bytes (no Content-Length: chunked, or an h2 stream). */
function streamed(chunks: number, size: number): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i++ < chunks) c.enqueue(new Uint8Array(size).fill(0x61));
      else c.close();
    },
  });
}

itest(
  "mirror: copies with bodies and header edits, percent, max_body skip and abort (HTTP/1.1 and h2c)",
  async () => {
    const main = recorder("main");
    const shadow = recorder("shadow");
    const g = await startDualLoom(`
upstreams:
  - { name: main, endpoints: ["${main.up.address}"] }
  - { name: shadow, endpoints: ["${shadow.up.address}"] }
routes:
  - id: all
    path: /all/*
    upstream: main
    rewrite: "/v2/{*}"
    middleware: [{ headers: { request: { set: { x-edited: "yes" } } } }]
    mirror: { upstream: shadow, max_body: 4KB }
  - id: pct
    path: /pct/*
    upstream: main
    mirror: { upstream: shadow, percent: 25 }
`);
    const metric = async (route: string, result: string) =>
      metricValue(await (await fetch(g.loom.admin("/metrics"))).text(), "loom_mirror_requests_total", {
        route,
        upstream: "shadow",
        result,
      });
    try {
      for (const [proto, base, client] of g.protocols) {
        main.seen.length = 0;
        shadow.seen.length = 0;
        // A copy with its body, the rewrite and the route's upstream_request edits; the answer is main's.
        const body = "x".repeat(3000);
        const r = await fetch(base + "/all/items?q=1", {
          client,
          method: "POST",
          body,
          headers: { "x-request-id": `mirror-${proto}`, "content-type": "text/plain" },
        });
        assert.equal(await r.text(), "main", proto);
        assert.equal(r.headers.get("x-from"), "main", proto);
        await waitFor(`${proto}: the copy`, () => shadow.seen.length === 1);
        const copy = shadow.seen[0];
        assert.equal(copy.method, "POST", proto);
        assert.equal(copy.path, "/v2/items?q=1", proto);
        assert.equal(copy.body, body, proto);
        assert.equal(copy.headers["x-request-id"], `mirror-${proto}`, proto);
        assert.equal(copy.headers["x-edited"], "yes", proto);
        assert.equal(main.seen[0].body, body, proto);

        // A declared length over max_body: not mirrored; main gets all of it.
        const big = "y".repeat(10_000);
        const skipped0 = await metric("all", "skipped_body");
        let res = await fetch(base + "/all/big", { client, method: "POST", body: big });
        assert.equal(await res.text(), "main", proto);
        assert.equal(main.seen.at(-1)?.body, big, proto);
        assert.equal(await metric("all", "skipped_body"), skipped0 + 1, proto);

        // A streamed body: within max_body it is copied whole; past it the copy is aborted, main unaffected.
        res = await fetch(base + "/all/small-stream", { client, method: "POST", body: streamed(4, 500) });
        assert.equal(await res.text(), "main", proto);
        await waitFor(
          `${proto}: streamed copy`,
          () => shadow.seen.some((s) => s.path === "/v2/small-stream"),
        );
        assert.equal(
          shadow.seen.find((s) => s.path === "/v2/small-stream")?.body,
          "a".repeat(2000),
          proto,
        );
        const aborted0 = await metric("all", "aborted_body");
        res = await fetch(base + "/all/big-stream", { client, method: "POST", body: streamed(20, 1000) });
        assert.equal(await res.text(), "main", proto);
        assert.equal(main.seen.at(-1)?.body, "a".repeat(20_000), proto);
        assert.equal(await metric("all", "aborted_body"), aborted0 + 1, proto);
        await new Promise((r) => setTimeout(r, 100));
        assert.ok(
          !shadow.seen.some((s) => s.path === "/v2/big-stream"),
          `${proto}: an aborted copy is never whole`,
        );

        // percent: 25 of 2,000 requests, within ±3 points (3 standard deviations).
        shadow.seen.length = 0;
        const sent0 = await metric("pct", "sent");
        await inParallel(2000, 16, async () => {
          const r = await fetch(base + "/pct/x", { client });
          assert.equal(await r.text(), "main");
        });
        const sent = await metric("pct", "sent") - sent0;
        await waitFor(`${proto}: every copy arrived`, () => shadow.seen.length === sent);
        const share = sent / 2000 * 100;
        assert.ok(Math.abs(share - 25) <= 3, `${proto}: ${share}% mirrored, want 25±3%`);
      }
    } finally {
      await g.close();
      await main.up.close();
      await shadow.up.close();
    }
  },
  { timeoutMs: 60_000 },
);

/** The p-th percentile (0-100) of `xs`. */
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(s.length * p / 100) - 1)];
}

itest(
  "mirror: a slow (1 s) or down mirror leaves the client's p99 within 10% of the unmirrored run",
  async () => {
    const main = startUpstream((_req) => new Response("main"));
    const slow = startUpstream({ delayMs: 1000 });
    const downPort = freePort(); // nothing listens there
    const h2cPort = freePort();
    // Loom in a process of its own: the client's and upstreams' work here does not share its event loop.
    const loom = await startLoomProcess(`
listeners:
  - { name: h2c, address: "127.0.0.1:${h2cPort}", protocol: h2c }
upstreams:
  - { name: main, endpoints: ["${main.address}"] }
  - { name: slow, endpoints: ["${slow.address}"] }
  - { name: down, endpoints: ["127.0.0.1:${downPort}"] }
routes:
  - { id: plain, path: /plain, upstream: main }
  - { id: slow, path: /slow, upstream: main, mirror: { upstream: slow, percent: 100, max_in_flight: 16 } }
  - { id: down, path: /down, upstream: main, mirror: { upstream: down, percent: 100, max_in_flight: 16 } }
`);
    const client = Deno.createHttpClient({ http1: false, http2: true });
    try {
      const base = `http://127.0.0.1:${h2cPort}`;
      const kinds = ["plain", "slow", "down"] as const;
      const times: Record<string, number[]> = { plain: [], slow: [], down: [] };
      const one = async (kind: string) => {
        const t0 = performance.now();
        const r = await fetch(`${base}/${kind}`, { client });
        assert.equal(await r.text(), "main", kind);
        times[kind].push(performance.now() - t0);
      };
      for (let i = 0; i < 600; i++) await one(kinds[i % 3]); // warm up pools and JIT
      for (const k of kinds) times[k] = [];
      // Paired: each round sends one request of every kind at once (the order rotating), two rounds in
      // flight, so a pause of the machine or a GC meets all kinds alike and the p99s compare.
      const started = performance.now();
      const rounds = 6000;
      await inParallel(
        rounds,
        2,
        (i) => Promise.all([0, 1, 2].map((j) => one(kinds[(i + j) % 3]))),
      );
      const seconds = (performance.now() - started) / 1000;
      const p99 = Object.fromEntries(kinds.map((k) => [k, percentile(times[k], 99)]));
      const p50 = Object.fromEntries(kinds.map((k) => [k, percentile(times[k], 50)]));
      const metrics = await (await fetch(loom.admin("/metrics"))).text();
      const count = (route: string, result: string) =>
        metricValue(metrics, "loom_mirror_requests_total", { route, result });
      const fmt = (o: Record<string, number>) => kinds.map((k) => `${k} ${o[k].toFixed(3)}`).join(", ");
      console.log(
        `${rounds * 3} requests in ${seconds.toFixed(1)} s; p50 ms: ${fmt(p50)}; p99 ms: ${fmt(p99)}; ` +
          `slow mirror sent ${count("slow", "sent")} skipped ${
            count("slow", "skipped_in_flight")
          }, down mirror ` +
          `sent ${count("down", "sent")} skipped ${count("down", "skipped_down")}`,
      );
      assert.ok(seconds < 20, `bounded: ${seconds} s`);
      // The slow mirror held its 16 slots; the rest were skipped, not queued.
      assert.ok(count("slow", "skipped_in_flight") > 0);
      // The down mirror tried, then paused after each refused connection instead of trying per request.
      assert.ok(count("down", "sent") > 0 && count("down", "skipped_down") > count("down", "sent"));
      for (const k of ["slow", "down"]) {
        assert.ok(
          p99[k] <= p99.plain * 1.1,
          `${k}: p99 ${p99[k].toFixed(3)} ms vs ${p99.plain.toFixed(3)} ms unmirrored`,
        );
      }
    } finally {
      client.close();
      await loom.close();
      await main.close();
      await slow.close();
    }
  },
  { timeoutMs: 60_000 },
);
