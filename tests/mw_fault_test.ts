/**
 * Fault injection through a running gateway (HTTP/1.1 and h2c): the delay
 * and abort shares over many requests, the delay's length, aborts counted as
 * rejections, and the per-request header overrides.
 */
import assert from "node:assert/strict";
import { itest } from "./helpers.ts";
import { rejections, startDualLoom } from "./mw_auth_util.ts";
import { inParallel } from "./gateway_util.ts";
import { startUpstream } from "./upstream.ts";

itest("fault: delay and abort percentages, delay length, header overrides (HTTP/1.1 and h2c)", async () => {
  const up = startUpstream();
  const g = await startDualLoom(`
upstreams: [{ name: up, endpoints: ["${up.address}"] }]
routes:
  - id: mixed
    path: /mixed/*
    upstream: up
    middleware: [{ fault: { delay: { percent: 50, duration: 100ms }, abort: { percent: 20, status: 503 } } }]
  - id: always
    path: /always
    upstream: up
    middleware: [{ fault: { delay: { duration: 150ms } } }]
  - id: chosen
    path: /chosen
    upstream: up
    middleware: [{ fault: { abort: { percent: 0, status: 500 }, delay: { percent: 0, duration: 1ms }, headers: true } }]
`);
  try {
    let aborts = 0;
    for (const [proto, base, client] of g.protocols) {
      // 600 requests: 50 % delayed by 100 ms, 20 % aborted with 503 (each within 4 standard deviations).
      const n = 600;
      let delayed = 0;
      let aborted = 0;
      await inParallel(n, proto === "h2c" ? 32 : 16, async () => {
        const t0 = performance.now();
        const r = await fetch(base + "/mixed/x", { client });
        const text = await r.text();
        if (performance.now() - t0 >= 95) delayed++;
        if (r.status === 503) {
          aborted++;
          assert.match(text, /fault injected/);
        } else assert.equal(r.status, 200, proto);
      });
      aborts += aborted;
      const d = delayed / n * 100;
      const a = aborted / n * 100;
      console.log(`${proto}: ${d.toFixed(1)}% delayed, ${a.toFixed(1)}% aborted`);
      assert.ok(Math.abs(d - 50) <= 8, `${proto}: ${d}% delayed, want 50±8%`);
      assert.ok(Math.abs(a - 20) <= 6.5, `${proto}: ${a}% aborted, want 20±6.5%`);

      // The delay's length: every request waits at least 150 ms, and not much more.
      const t0 = performance.now();
      const r = await fetch(base + "/always", { client });
      await r.body?.cancel();
      const ms = performance.now() - t0;
      assert.ok(ms >= 148 && ms < 1000, `${proto}: delayed ${ms} ms`);

      // Header overrides: the request picks the fault; shares never above the configured ones (0 here).
      let h = await fetch(base + "/chosen", { client });
      assert.equal(h.status, 200, proto);
      await h.body?.cancel();
      h = await fetch(base + "/chosen", {
        client,
        headers: { "x-loom-fault-abort-request": "418", "x-loom-fault-abort-request-percentage": "100" },
      });
      await h.body?.cancel();
      assert.equal(h.status, 200, `${proto}: configured percent 0 caps the header's`);
    }
    const counted = await rejections(g.loom.admin("/metrics"), "fault");
    assert.equal(counted.get("mixed/abort"), aborts);
  } finally {
    await g.close();
    await up.close();
  }
}, { timeoutMs: 60_000 });

itest("fault: x-loom-fault-* headers choose delay and status (HTTP/1.1 and h2c)", async () => {
  const up = startUpstream();
  const g = await startDualLoom(`
upstreams: [{ name: up, endpoints: ["${up.address}"] }]
routes:
  - id: chosen
    path: /chosen
    upstream: up
    middleware: [{ fault: { abort: { percent: 100, status: 500 }, delay: { duration: 0s }, headers: true } }]
`);
  try {
    for (const [proto, base, client] of g.protocols) {
      let r = await fetch(base + "/chosen", { client, headers: { "x-loom-fault-abort-request": "429" } });
      await r.body?.cancel();
      assert.equal(r.status, 429, proto);
      r = await fetch(base + "/chosen", {
        client,
        headers: { "x-loom-fault-abort-request-percentage": "0" },
      });
      await r.body?.cancel();
      assert.equal(r.status, 200, proto);
      // An invalid status is ignored: the configured one applies.
      r = await fetch(base + "/chosen", { client, headers: { "x-loom-fault-abort-request": "200" } });
      await r.body?.cancel();
      assert.equal(r.status, 500, proto);
      const t0 = performance.now();
      r = await fetch(base + "/chosen", {
        client,
        headers: { "x-loom-fault-delay-request": "120", "x-loom-fault-abort-request-percentage": "0" },
      });
      await r.body?.cancel();
      const ms = performance.now() - t0;
      assert.equal(r.status, 200, proto);
      assert.ok(ms >= 118, `${proto}: header delay ${ms} ms`);
    }
  } finally {
    await g.close();
    await up.close();
  }
});
