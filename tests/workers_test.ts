/**
 * `workers: 2`: two isolates share the listener port (SO_REUSEPORT). Every
 * request below uses a fresh TCP connection so the kernel spreads them over
 * both workers; metrics, reloads and in-flight counts must cover both.
 */
import assert from "node:assert/strict";
import { itest, startLoom, waitFor, writeConfig, yamlOf } from "./helpers.ts";
import { rawRequest } from "./http1_util.ts";
import { get, metricValue, postReload } from "./gateway_util.ts";
import { startUpstream } from "./upstream.ts";

const N = 40;

itest("workers: 2 workers serve, metrics are summed over both, a reload reaches both", async () => {
  const a = startUpstream({ echo: "a" });
  const b = startUpstream({ echo: "b" });
  const base = (routes: unknown[]) =>
    yamlOf({
      upstreams: [{ name: "a", endpoints: [a.address] }, { name: "b", endpoints: [b.address] }],
      routes,
      extra: "workers: 2",
    });
  const loom = await startLoom(base([{ id: "one", path: "/one", upstream: "a" }]));
  try {
    assert.equal(JSON.parse((await get(loom.admin("/info"))).text).workers, 2);
    const statuses = await Promise.all(
      Array.from({ length: N }, async () => (await rawRequest(loom.port, { target: "/one" })).res?.status),
    );
    assert.deepEqual(statuses, Array(N).fill(200));
    const metrics = (await get(loom.admin("/metrics"))).text;
    assert.equal(
      metricValue(metrics, "loom_requests_total", { route: "one", method: "GET", status: "200" }),
      N,
    );
    assert.equal(metricValue(metrics, "loom_upstream_requests_total", { upstream: "a", status: "200" }), N);
    assert.equal(metricValue(metrics, "loom_build_info"), 1, "build info is not summed");

    writeConfig(
      loom,
      base([{ id: "one", path: "/one", upstream: "b" }, { id: "two", path: "/two", upstream: "a" }]),
    );
    assert.equal((await postReload(loom)).status, 200);
    const after = await Promise.all(Array.from({ length: N }, async (_, i) => {
      const { res } = await rawRequest(loom.port, { target: i % 2 ? "/one" : "/two" });
      return res?.status === 200
        ? JSON.parse(new TextDecoder().decode(res.body)).tag
        : String(res?.status ?? 0);
    }));
    assert.deepEqual(
      after,
      Array.from({ length: N }, (_, i) => i % 2 ? "b" : "a"),
      "every connection sees it",
    );
    const m2 = (await get(loom.admin("/metrics"))).text;
    assert.equal(
      metricValue(m2, "loom_requests_total", { route: "two", method: "GET", status: "200" }),
      N / 2,
    );
    assert.equal(metricValue(m2, "loom_config_reloads_total", { result: "success" }), 1);
  } finally {
    await loom.close();
    await a.close();
    await b.close();
  }
});

itest("workers: least_conn in-flight counts in /upstreams cover every worker", async () => {
  const s1 = startUpstream({ echo: "s1", delayMs: 1000 });
  const s2 = startUpstream({ echo: "s2", delayMs: 1000 });
  const loom = await startLoom(yamlOf({
    upstreams: [{ name: "pool", load_balancer: "least_conn", endpoints: [s1.address, s2.address] }],
    routes: [{ id: "slow", path: "/slow", upstream: "pool" }],
    extra: "workers: 2",
  }));
  try {
    const k = 12;
    const inflight = Array.from({ length: k }, () => rawRequest(loom.port, { target: "/slow" }));
    await waitFor(
      "all requests at the upstreams",
      () => s1.seen.length + s2.seen.length === k || undefined,
      5000,
    );
    const ups = JSON.parse((await get(loom.admin("/upstreams"))).text) as {
      endpoints: { in_flight: number }[];
    }[];
    const counts = ups[0].endpoints.map((e) => e.in_flight);
    assert.equal(counts[0] + counts[1], k, `in_flight ${counts} must count both workers' requests`);
    // Shared counters let least_conn balance across workers, not just within one.
    assert.ok(Math.abs(s1.seen.length - s2.seen.length) <= 2, `${s1.seen.length} vs ${s2.seen.length}`);
    for (const r of await Promise.all(inflight)) assert.equal(r.res?.status, 200);
    await waitFor("in-flight back to 0", async () => {
      const u = JSON.parse((await get(loom.admin("/upstreams"))).text);
      return u[0].endpoints.every((e: { in_flight: number }) => e.in_flight === 0) || undefined;
    });
  } finally {
    await loom.close();
    await s1.close();
    await s2.close();
  }
});
