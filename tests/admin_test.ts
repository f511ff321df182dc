/**
 * The admin API of a running gateway: probes, routes, live upstream state,
 * redacted config, and Prometheus metrics that move with real traffic; its
 * safety rules (auth beyond loopback, deliberate writes, loopback Host).
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoom, waitFor, writeTempConfig, yamlOf } from "./helpers.ts";
import { echo, get, metricValue, postReload } from "./gateway_util.ts";
import { startUpstream } from "./upstream.ts";
import { rawRequest } from "./http1_util.ts"; // sets the Host header, which fetch() cannot
import { ConfigInvalidError, Supervisor } from "../src/runtime/supervisor.ts";

/** Marks an admin write as deliberate (the admin API refuses writes a web page could send). */
const ADMIN_WRITE = { "X-Loom-Admin": "1" };

interface UpstreamsBody {
  name: string;
  load_balancer: string;
  endpoints: { address: string; weight: number; in_flight: number; healthy: boolean; draining: boolean }[];
}

itest("admin: /health, /ready, /routes, /info, unknown paths", async () => {
  const up = startUpstream({ echo: "up" });
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
  const slow = startUpstream({ echo: "slow", delayMs: 800 });
  const fast = startUpstream({ echo: "fast" });
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
  const up = startUpstream({ echo: "up" });
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
  const up = startUpstream({ echo: "up" });
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
    // A reload of an unchanged config is skipped (not counted): change a setting first.
    Deno.writeTextFileSync(
      loom.configPath,
      Deno.readTextFileSync(loom.configPath) + "\ndrain_timeout: 29s\n",
    );
    assert.equal((await postReload(loom)).status, 200);
    assert.equal(metricValue(await scrape(), "loom_config_reloads_total", { result: "success" }), ok0 + 1);
  } finally {
    await loom.close();
    await up.close();
  }
});

itest("admin: on 0.0.0.0 without auth Loom refuses to start, naming admin.address and its line", async () => {
  const adminPort = freePort();
  const file = writeTempConfig(
    yamlOf({ upstreams: [], routes: [] }).replace("${PORT}", String(freePort())) +
      `admin:\n  enabled: true\n  address: "0.0.0.0:${adminPort}"\n`,
  );
  try {
    const err = await Supervisor.start({ configPath: file, watch: false }).then(
      () => assert.fail("Loom started"),
      (e) => e,
    );
    assert.ok(err instanceof ConfigInvalidError, String(err));
    const line = Deno.readTextFileSync(file).split("\n").indexOf(`  address: "0.0.0.0:${adminPort}"`) + 1;
    const at = `${file}:${line}:12: admin.address: the admin API would listen on "0.0.0.0:${adminPort}"`;
    assert.ok(line > 0 && err.message.startsWith(at), err.message);
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: adminPort }));
  } finally {
    Deno.removeSync(file);
  }
});

itest(
  "admin: on 0.0.0.0 with admin.insecure: true, reads are open; /config and writes are refused",
  async () => {
    const up = startUpstream({ echo: "up" });
    const loom = await startLoom(yamlOf({
      upstreams: [{ name: "up", endpoints: [up.address] }],
      routes: [{ id: "r", path: "/*", upstream: "up" }],
      extra: 'admin:\n  address: "0.0.0.0:${ADMIN_PORT}"\n  insecure: true\n',
    }));
    try {
      for (const path of ["/health", "/routes", "/upstreams", "/metrics"]) {
        assert.equal((await get(loom.admin(path))).status, 200, path);
      }
      const config = await get(loom.admin("/config"));
      assert.equal(config.status, 403);
      assert.match(JSON.parse(config.text).error, /^forbidden: GET \/config needs admin\.auth/);
      assert.equal((await postReload(loom)).status, 403);
      const drain = await get(loom.admin(`/upstreams/up/endpoints/${up.address}/drain`), {
        method: "POST",
        headers: { ...ADMIN_WRITE, "content-type": "application/json" },
      });
      assert.equal(drain.status, 403);
      const ups = JSON.parse((await get(loom.admin("/upstreams"))).text);
      assert.equal(ups[0].endpoints[0].draining, false);
    } finally {
      await loom.close();
      await up.close();
    }
  },
);

itest(
  "admin: on 0.0.0.0 with a token from ${ENV} and Basic users; /config redacts env values, secrets",
  async () => {
    const up = startUpstream({ echo: "up" });
    const TOKEN = "t0ken-from-the-environment-" + crypto.randomUUID();
    const env = { LOOM_TEST_ADMIN_TOKEN: TOKEN, LOOM_TEST_TENANT: "tenant-from-env" };
    for (const [k, v] of Object.entries(env)) Deno.env.set(k, v);
    const loom = await startLoom(yamlOf({
      upstreams: [{
        name: "up",
        endpoints: [up.address],
        health_check: { path: "/healthz?access_token=hc-t0ken&verbose=1", interval: "1h" },
      }],
      routes: [{
        id: "r",
        path: "/*",
        upstream: "up",
        headers: { Authorization: { regex: "^Bearer rt-s3cret" }, "X-Tenant": "${LOOM_TEST_TENANT}" },
      }],
      extra: [
        "admin:",
        '  address: "0.0.0.0:${ADMIN_PORT}"',
        "  auth:",
        '    token: "${LOOM_TEST_ADMIN_TOKEN}"',
        // sha256("password")
        "    users: { ops: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 }",
        "metrics:",
        "  opentelemetry: { enabled: false, endpoint: 'https://otel:pw@collector.example:4318' }",
        "",
      ].join("\n"),
    }));
    const bearer = { authorization: `Bearer ${TOKEN}` };
    const basic = { authorization: "Basic " + btoa("ops:password") };
    try {
      assert.equal((await get(loom.admin("/health"))).status, 200);
      const wrong = ["", "Bearer wrong-token-0123456789", "Basic " + btoa("ops:x")];
      for (const authorization of wrong) {
        const headers = authorization ? { authorization } : undefined;
        assert.equal((await get(loom.admin("/routes"), { headers })).status, 401, authorization);
      }
      assert.equal((await get(loom.admin("/routes"), { headers: bearer })).status, 200);
      assert.equal((await get(loom.admin("/routes"), { headers: basic })).status, 200);

      const res = await get(loom.admin("/config"), { headers: bearer });
      assert.equal(res.status, 200);
      for (const secret of [TOKEN, "tenant-from-env", "rt-s3cret", "hc-t0ken", "pw@"]) {
        assert.ok(!res.text.includes(secret), `${secret} leaked: ${res.text}`);
      }
      const cfg = JSON.parse(res.text);
      assert.equal(cfg.admin.auth.token, "[REDACTED]");
      assert.deepEqual(cfg.admin.auth.users, { ops: "[REDACTED]" });
      assert.equal(cfg.routes[0].headers.Authorization, "[REDACTED]");
      assert.equal(cfg.routes[0].headers["X-Tenant"], "[REDACTED]");
      assert.equal(cfg.upstreams[0].health_check.path, "/healthz?access_token=[REDACTED]&verbose=1");
      assert.equal(cfg.metrics.opentelemetry.endpoint, "https://[REDACTED]@collector.example:4318");
      assert.equal(cfg.upstreams[0].endpoints[0].address, up.address);

      // Writes: a bearer token is enough; Basic needs the deliberate-write header too.
      assert.equal((await get(loom.admin("/reload"), { method: "POST", headers: bearer })).status, 200);
      assert.equal((await get(loom.admin("/reload"), { method: "POST", headers: basic })).status, 403);
      assert.equal(
        (await get(loom.admin("/reload"), { method: "POST", headers: { ...basic, ...ADMIN_WRITE } })).status,
        200,
      );
      assert.equal((await postReload(loom)).status, 401);
    } finally {
      await loom.close();
      await up.close();
      for (const k of Object.keys(env)) Deno.env.delete(k);
    }
  },
);

itest("admin: on loopback without auth, forged writes and foreign Host names are refused", async () => {
  const up = startUpstream({ echo: "up" });
  const loom = await startLoom(yamlOf({
    upstreams: [{ name: "up", endpoints: [up.address] }],
    routes: [{ id: "r", path: "/*", upstream: "up" }],
  }));
  const drain = `/upstreams/up/endpoints/${up.address}/drain`;
  const draining = async () =>
    JSON.parse((await get(loom.admin("/upstreams"))).text)[0].endpoints[0].draining;
  try {
    // What a web page can send: a form or text/plain POST.
    for (
      const headers of [{ "content-type": "text/plain" }, {
        "content-type": "application/x-www-form-urlencoded",
      }]
    ) {
      const r = await get(loom.admin(drain), { method: "POST", headers, body: "{}" });
      assert.equal(r.status, 403);
      assert.match(JSON.parse(r.text).error, /^forbidden: a write needs/);
    }
    assert.equal(await draining(), false);
    const r = await get(loom.admin(drain), {
      method: "POST",
      headers: { "content-type": "application/json" },
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(await draining(), true);
    assert.equal((await postReload(loom)).status, 200);

    // DNS rebinding: the browser sends the attacker's name as Host.
    for (const host of ["attacker.example", `attacker.example:${loom.adminPort}`]) {
      const { res } = await rawRequest(loom.adminPort, { target: "/config", host });
      assert.equal(res?.status, 403, host);
      assert.match(
        JSON.parse(new TextDecoder().decode(res?.body)).error,
        /^forbidden: the Host header must name a loopback address/,
      );
    }
    for (const host of [`127.0.0.1:${loom.adminPort}`, `localhost:${loom.adminPort}`]) {
      assert.equal((await rawRequest(loom.adminPort, { target: "/config", host })).res?.status, 200, host);
    }
  } finally {
    await loom.close();
    await up.close();
  }
});
