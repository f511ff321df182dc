/**
 * Acceptance: one of three endpoints stops during a steady load of GETs with
 * retries on: no request fails, the endpoint is taken out (outlier ejection
 * and active health checks) within the thresholds, and it is readmitted once
 * it is back. Also: drain/enable through the admin API, health check kinds.
 */
import assert from "node:assert/strict";
import { itest, startLoom, waitFor, yamlOf } from "./helpers.ts";
import { endpointState, runLoad } from "./resilience_util.ts";
import { startUpstream } from "./upstream.ts";
import { probe } from "../src/upstream/health_check.ts";
import type { HealthCheckConfig } from "../src/config/types.ts";

itest(
  "resilience: stopping one of three endpoints under load fails no request; ejected, then readmitted",
  async () => {
    const ups = [startUpstream(), startUpstream(), startUpstream()];
    const victim = ups[2];
    const loom = await startLoom(yamlOf({
      upstreams: [{
        name: "svc",
        endpoints: ups.map((u) => u.address),
        health_check: {
          path: "/health",
          interval: "100ms",
          timeout: "200ms",
          healthy_threshold: 2,
          unhealthy_threshold: 2,
        },
        outlier_detection: { consecutive_failures: 3, base_ejection_time: "500ms" },
        retry: { max_retries: 2, backoff_base: "2ms", backoff_max: "20ms", budget: 0.5 },
      }],
      routes: [{ id: "r", path: "/*", upstream: "svc" }],
    }));
    const admin = loom.admin("");
    try {
      let stoppedAt = 0;
      let downAt = 0;
      let restartedAt = 0;
      let servedAtRestart = 0;
      let sent = 0;
      const stop = new AbortController();
      const phases = (async () => {
        await waitFor("500 requests", () => sent >= 500, 20_000);
        await victim.stop();
        stoppedAt = Date.now();
        await waitFor("victim out of rotation", async () => {
          const s = await endpointState(admin, "svc", victim.address);
          return !s.healthy || s.ejected === true;
        }, 5_000);
        downAt = Date.now();
        await waitFor("1200 requests", () => sent >= 1200, 20_000);
        victim.start();
        restartedAt = Date.now();
        servedAtRestart = victim.served;
        await waitFor("victim healthy and serving again", async () => {
          const s = await endpointState(admin, "svc", victim.address);
          return s.healthy && s.ejected !== true && victim.served > servedAtRestart;
        }, 5_000);
      })();
      const load = await runLoad({
        url: loom.url("/x"),
        concurrency: 16,
        signal: stop.signal,
        total: 20_000,
        onProgress: (n) => sent = n,
      });
      await phases;
      assert.equal(load.failed, 0, `failed requests: ${load.samples.join("; ")}`);
      assert.ok(load.sent >= 2000, `sent ${load.sent}`);
      // Ejected on the 3rd consecutive failure or after 2 failed probes 100 ms apart.
      assert.ok(downAt - stoppedAt < 1000, `taken out after ${downAt - stoppedAt} ms`);
      assert.ok(victim.served > servedAtRestart, "readmitted endpoint serves again");
      const metrics = await (await fetch(loom.admin("/metrics"))).text();
      assert.match(metrics, /loom_upstream_retries_total\{upstream="svc",reason="[a-z0-9]+"\} \d+/);
      assert.match(
        metrics,
        new RegExp(`loom_upstream_health_status\\{upstream="svc",endpoint="${victim.address}"\\} 1`),
      );
      console.log(
        `failover: ${load.sent} sent, ${load.failed} failed, p99 ${load.p99.toFixed(1)} ms; ` +
          `out of rotation after ${downAt - stoppedAt} ms; back after ${Date.now() - restartedAt} ms`,
      );
    } finally {
      await loom.close();
      for (const u of ups) await u.stop();
    }
  },
);

itest("resilience: admin drain and enable reach every worker; drained endpoints get no traffic", async () => {
  const ups = [startUpstream(), startUpstream()];
  const loom = await startLoom(
    yamlOf({
      upstreams: [{ name: "svc", endpoints: ups.map((u) => u.address) }],
      routes: [{ id: "r", path: "/*", upstream: "svc" }],
      extra: "workers: 2",
    }),
  );
  try {
    const post = (p: string) =>
      fetch(loom.admin(p), { method: "POST", headers: { "X-Loom-Admin": "1" } })
        .then(async (r) => [r.status, await r.json()]);
    const [st, body] = await post(`/upstreams/svc/endpoints/${ups[0].address}/drain`);
    assert.equal(st, 200, JSON.stringify(body));
    assert.equal((await endpointState(loom.admin(""), "svc", ups[0].address)).draining, true);
    const before = ups[0].served;
    const load = await runLoad({ url: loom.url("/x"), concurrency: 4, total: 200 });
    assert.equal(load.failed, 0);
    assert.equal(ups[0].served, before, "a drained endpoint gets no new requests on any worker");
    assert.equal((await post(`/upstreams/svc/endpoints/${ups[0].address}/enable`))[0], 200);
    await runLoad({ url: loom.url("/x"), concurrency: 4, total: 200 });
    assert.ok(ups[0].served > before, "enabled again");
    assert.equal((await post(`/upstreams/svc/endpoints/10.9.9.9:1/drain`))[0], 404);
    assert.equal((await post(`/upstreams/nope/endpoints/${ups[0].address}/drain`))[0], 404);
  } finally {
    await loom.close();
    for (const u of ups) await u.stop();
  }
});

itest(
  "resilience: health probes check status ranges, body, method and Host; tcp probes connect",
  async () => {
    const seen: { method: string; host: string }[] = [];
    let status = 200;
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
      seen.push({ method: req.method, host: req.headers.get("host") ?? "" });
      return new Response(req.method === "HEAD" ? null : "service is UP", { status });
    });
    const ep = { hostname: "127.0.0.1", port: server.addr.port, address: `127.0.0.1:${server.addr.port}` };
    const hc: HealthCheckConfig = {
      enabled: true,
      type: "http",
      path: "/hc",
      method: "GET",
      expected_status: [[200, 299]],
      interval: 1000,
      timeout: 1000,
      healthy_threshold: 1,
      unhealthy_threshold: 1,
    };
    try {
      assert.equal(await probe(ep, hc), true);
      assert.equal(await probe(ep, { ...hc, body_contains: "UP" }), true);
      assert.equal(await probe(ep, { ...hc, body_contains: "DOWN" }), false);
      assert.equal(await probe(ep, { ...hc, method: "HEAD", host: "probe.internal" }), true);
      assert.deepEqual(seen.at(-1), { method: "HEAD", host: "probe.internal" });
      status = 503;
      assert.equal(await probe(ep, hc), false);
      assert.equal(await probe(ep, { ...hc, expected_status: [[200, 299], [503, 503]] }), true);
      assert.equal(await probe(ep, { ...hc, type: "tcp" }), true);
    } finally {
      await server.shutdown();
    }
    // Nothing listens any more: both kinds fail, quickly.
    const t0 = Date.now();
    assert.equal(await probe(ep, hc), false);
    assert.equal(await probe(ep, { ...hc, type: "tcp" }), false);
    assert.ok(Date.now() - t0 < 1000);
  },
);

itest(
  "resilience: with workers: 2, health probes run once per endpoint (main isolate), not per worker",
  async () => {
    const up = startUpstream();
    const loom = await startLoom(yamlOf({
      upstreams: [{
        name: "svc",
        endpoints: [up.address],
        health_check: { interval: "100ms", jitter: "1ms" },
      }],
      routes: [{ id: "r", path: "/*", upstream: "svc" }],
      extra: "workers: 2",
    }));
    try {
      await waitFor("first probe", () => up.probes > 0, 2000);
      const p0 = up.probes;
      const t0 = Date.now();
      await waitFor("1 s of probes", () => Date.now() - t0 >= 1000, 2000, 50);
      const rate = (up.probes - p0) / ((Date.now() - t0) / 1000);
      assert.ok(rate >= 5 && rate <= 12, `${rate.toFixed(1)} probes/s at interval 100ms`);
    } finally {
      await loom.close();
      await up.stop();
    }
  },
);
