/**
 * The admin API of a running gateway: probes, routes, live upstream state,
 * redacted config, and Prometheus metrics that move with real traffic.
 */
import assert from "node:assert/strict";
import { itest, startLoom } from "./helpers.ts";
import { echo, echoUpstream, get, metricValue, postReload, waitFor, yamlOf } from "./gateway_util.ts";

interface UpstreamsBody {
  name: string;
  load_balancer: string;
  endpoints: { address: string; weight: number; in_flight: number; healthy: boolean; draining: boolean }[];
}

itest("admin: /health, /ready, /routes, /info, unknown paths", async () => {
  const up = echoUpstream("up");
  const loom = await startLoom(yamlOf({
    upstreams: [{ name: "up", endpoints: [up.address] }],
    routes: [
      { id: "api", path: "/api/*", upstream: "up", strip_prefix: true, methods: ["GET"] },
      { id: "users", path: "/users/{id}", upstream: "up", rewrite: "/v2/users/{id}", priority: 5 },
      { id: "docs", path: "/docs", redirect: { url: "https://example.com/docs", code: 301 } },
    ],
  }));
  try {
    const health = await get(loom.admin("/health"));
    assert.equal(health.status, 200);
    assert.deepEqual(JSON.parse(health.text), { status: "ok" });
    const ready = await get(loom.admin("/ready"));
    assert.equal(ready.status, 200);
    assert.deepEqual(JSON.parse(ready.text), { ready: true });

    const routes = JSON.parse((await get(loom.admin("/routes"))).text);
    assert.deepEqual(
      routes.map((r: Record<string, unknown>) => [r.id, r.path, r.upstream ?? null, r.priority]),
      [["api", "/api/*", "up", 0], ["users", "/users/{id}", "up", 5], ["docs", "/docs", null, 0]],
    );
    assert.deepEqual(routes[0].methods, ["GET"]);
    assert.equal(routes[0].strip_prefix, true);
    assert.equal(routes[1].rewrite, "/v2/users/{id}");
    assert.deepEqual(routes[2].redirect, { url: "https://example.com/docs", code: 301 });

    const info = JSON.parse((await get(loom.admin("/info"))).text);
    assert.equal(info.workers, 1);
    assert.equal(info.config_file, loom.configPath);

    const nf = await get(loom.admin("/nope"));
    assert.equal(nf.status, 404);
    assert.ok(JSON.parse(nf.text).error);
  } finally {
    await loom.close();
    await up.close();
  }
});

itest("admin: /upstreams shows endpoints, weights and in-flight counts during slow requests", async () => {
  const slow = echoUpstream("slow", 800);
  const fast = echoUpstream("fast");
  const loom = await startLoom(yamlOf({
    upstreams: [
      {
        name: "pool",
        load_balancer: "weighted",
        endpoints: [{ address: slow.address, weight: 1 }],
      },
      { name: "other", endpoints: [{ address: fast.address, weight: 7 }] },
    ],
    routes: [{ id: "slow", path: "/slow", upstream: "pool" }, {
      id: "fast",
      path: "/fast",
      upstream: "other",
    }],
  }));
  const upstreams = async () => JSON.parse((await get(loom.admin("/upstreams"))).text) as UpstreamsBody[];
  try {
    const idle = await upstreams();
    assert.deepEqual(idle, [
      {
        name: "pool",
        load_balancer: "weighted",
        panic: false,
        endpoints: [{
          address: slow.address,
          weight: 1,
          in_flight: 0,
          healthy: true,
          draining: false,
          ejected: false,
          circuit: "closed",
        }],
      },
      {
        name: "other",
        load_balancer: "round_robin",
        panic: false,
        endpoints: [{
          address: fast.address,
          weight: 7,
          in_flight: 0,
          healthy: true,
          draining: false,
          ejected: false,
          circuit: "closed",
        }],
      },
    ]);
    const inflight = Array.from({ length: 3 }, () => get(loom.url("/slow")));
    await waitFor("3 requests in flight", async () => {
      const u = await upstreams();
      return u[0].endpoints[0].in_flight === 3 || undefined;
    }, 3000);
    assert.equal((await upstreams())[1].endpoints[0].in_flight, 0);
    for (const r of await Promise.all(inflight)) assert.equal(r.status, 200);
    await waitFor(
      "in-flight back to 0",
      async () => (await upstreams())[0].endpoints[0].in_flight === 0 || undefined,
    );
  } finally {
    await loom.close();
    await slow.close();
    await fast.close();
  }
});

itest("admin: /config redacts secrets", async () => {
  const up = echoUpstream("up");
  const loom = await startLoom(yamlOf({
    upstreams: [{ name: "up", endpoints: [up.address] }],
    routes: [{
      id: "keyed",
      path: "/keyed",
      upstream: "up",
      headers: { "X-Api-Key": "sup3r-s3cret-value", "X-Tenant": "acme" },
      query_params: { token: "query-t0ken-value" },
    }],
  }));
  try {
    // The matchers do route: the secret header value is what lets a request through.
    assert.equal((await get(loom.url("/keyed"))).status, 404);
    const ok = await get(loom.url("/keyed?token=query-t0ken-value"), {
      headers: { "X-Api-Key": "sup3r-s3cret-value", "X-Tenant": "acme" },
    });
    assert.equal(ok.status, 200);

    const res = await get(loom.admin("/config"));
    assert.equal(res.status, 200);
    assert.ok(!res.text.includes("sup3r-s3cret-value"), res.text);
    assert.ok(!res.text.includes("query-t0ken-value"), res.text);
    const cfg = JSON.parse(res.text);
    assert.equal(cfg.routes[0].headers["X-Api-Key"] ?? cfg.routes[0].headers["x-api-key"], "[REDACTED]");
    assert.equal(cfg.routes[0].query_params.token, "[REDACTED]");
    assert.ok(res.text.includes("acme"), "non-secret values stay visible");
    assert.equal(cfg.upstreams[0].endpoints[0].address, up.address);
  } finally {
    await loom.close();
    await up.close();
  }
});

itest("admin: /metrics counts requests by route id (never raw path) and moves with traffic", async () => {
  const up = echoUpstream("up");
  const loom = await startLoom(yamlOf({
    upstreams: [{ name: "up", endpoints: [up.address] }],
    routes: [
      { id: "api", path: "/api/*", upstream: "up" },
      { id: "user", path: "/users/{id}", upstream: "up" },
    ],
  }));
  const scrape = async () => {
    const r = await get(loom.admin("/metrics"));
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    return r.text;
  };
  try {
    const before = await scrape();
    for (let i = 0; i < 7; i++) await echo(loom.url(`/api/item-${i}?q=${i}`));
    for (let i = 0; i < 3; i++) await echo(loom.url(`/users/u${i}`));
    for (let i = 0; i < 2; i++) assert.equal((await get(loom.url(`/missing-${i}`))).status, 404);
    assert.equal((await get(loom.url("/api/x"), { method: "POST", body: "hi" })).status, 200);
    const text = await scrape();
    const d = (name: string, labels: Record<string, string>) =>
      metricValue(text, name, labels) - metricValue(before, name, labels);

    assert.equal(d("loom_requests_total", { route: "api", method: "GET", status: "200" }), 7);
    assert.equal(d("loom_requests_total", { route: "api", method: "POST", status: "200" }), 1);
    assert.equal(d("loom_requests_total", { route: "user", method: "GET", status: "200" }), 3);
    assert.equal(d("loom_requests_total", { route: "", method: "GET", status: "404" }), 2);
    assert.equal(d("loom_request_duration_seconds_count", { route: "api", method: "GET" }), 7);
    assert.equal(d("loom_request_duration_seconds_bucket", { route: "api", method: "GET", le: "+Inf" }), 7);
    assert.ok(d("loom_request_duration_seconds_sum", { route: "api", method: "GET" }) > 0);
    assert.equal(
      d("loom_upstream_requests_total", { upstream: "up", endpoint: up.address, status: "200" }),
      11,
    );
    assert.equal(d("loom_upstream_duration_seconds_count", { upstream: "up", endpoint: up.address }), 11);
    assert.ok(!/item-|\/users\/u|missing-/.test(text), "raw paths never appear in labels");

    const ok0 = metricValue(text, "loom_config_reloads_total", { result: "success" });
    assert.equal((await postReload(loom)).status, 200);
    assert.equal(metricValue(await scrape(), "loom_config_reloads_total", { result: "success" }), ok0 + 1);
  } finally {
    await loom.close();
    await up.close();
  }
});
