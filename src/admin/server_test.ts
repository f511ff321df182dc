import assert from "node:assert/strict";
import type { AdminConfig, LoomConfig } from "../config/types.ts";
import { setLogOutput } from "../observability/logger.ts";
import { PROMETHEUS_CONTENT_TYPE, startAdminServer } from "./server.ts";
import type { AdminBackend, ReloadResult, RouteInfo, UpstreamInfo } from "./types.ts";

// Keep test output clean; the server logs startup and failures.
setLogOutput(() => {});

const PASSWORD_HASH = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"; // sha256("password")

function makeConfig(): LoomConfig {
  return {
    workers: 2,
    listeners: [],
    routes: [],
    upstreams: [],
    middleware: [],
    plugins: [{
      name: "auth",
      path: "p.wasm",
      phase: "on_request_headers",
      priority: 1,
      config: { api_key: "k-123", nested: { client_secret: "s", list: [{ password: "p", ok: "visible" }] } },
      memory_limit: 1,
      timeout: 1,
      failure_policy: "fail_closed",
    }],
    admin: {
      enabled: true,
      address: "127.0.0.1:0",
      hostname: "127.0.0.1",
      port: 0,
      auth: { enabled: true, users: { admin: PASSWORD_HASH }, realm: "Loom" },
    },
    metrics: {
      prometheus: { enabled: true, path: "/prom" },
      opentelemetry: { enabled: false, endpoint: "" },
    },
    access_log: { enabled: false, path: "stdout" },
    demo: {},
    drain_timeout: 1000,
    tracing: { exporter: { Token: "t", "private-key": "pk", credentials: { a: 1 }, endpoint: "http://x" } },
  };
}

const ROUTES: RouteInfo[] = [{
  id: "r1",
  path: "/api/*",
  upstream: "api",
  priority: 0,
  plugins: [],
  strip_prefix: true,
}];
const UPSTREAMS: UpstreamInfo[] = [{
  name: "api",
  load_balancer: "round_robin",
  endpoints: [{ address: "10.0.0.1:80", weight: 1, in_flight: 3, healthy: true, draining: false }],
}];

class FakeBackend implements AdminBackend {
  isReady = true;
  reloadResult: ReloadResult = { ok: true };
  reloads = 0;
  cfg = makeConfig();
  failMetrics = false;
  ready() {
    return this.isReady;
  }
  routes() {
    return ROUTES;
  }
  upstreams() {
    return Promise.resolve(UPSTREAMS);
  }
  config() {
    return this.cfg;
  }
  reload() {
    this.reloads++;
    return Promise.resolve(this.reloadResult);
  }
  metrics() {
    if (this.failMetrics) return Promise.reject(new Error("secret internals at /src/x.ts:1"));
    return Promise.resolve("# HELP up Up.\n# TYPE up gauge\nup 1\n");
  }
  info() {
    return { version: "0.1.0", workers: 2, started_at: "2024-01-01T00:00:00.000Z", config_file: "loom.yaml" };
  }
}

async function withServer(
  backend: FakeBackend,
  cfg: AdminConfig,
  fn: (get: (path: string, init?: RequestInit) => Promise<Response>) => Promise<void>,
): Promise<void> {
  const server = startAdminServer(backend, cfg);
  const base = `http://127.0.0.1:${server.addr.port}`;
  try {
    await fn((path, init) => fetch(base + path, init));
  } finally {
    await server.shutdown();
    await server.finished;
  }
}

const noAuth = (): AdminConfig => ({ enabled: true, address: "127.0.0.1:0", hostname: "127.0.0.1", port: 0 });
const basic = (user: string, pass: string) => ({ authorization: "Basic " + btoa(`${user}:${pass}`) });

Deno.test("admin API endpoints without auth", async () => {
  const backend = new FakeBackend();
  await withServer(backend, noAuth(), async (get) => {
    let res = await get("/health");
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: "ok" });

    res = await get("/ready");
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ready: true });
    backend.isReady = false;
    res = await get("/ready");
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), { ready: false });

    res = await get("/routes");
    assert.deepEqual(await res.json(), ROUTES);
    res = await get("/upstreams");
    assert.deepEqual(await res.json(), UPSTREAMS);
    res = await get("/info");
    assert.deepEqual(await res.json(), backend.info());

    res = await get("/prom");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), PROMETHEUS_CONTENT_TYPE);
    assert.equal(await res.text(), "# HELP up Up.\n# TYPE up gauge\nup 1\n");
    res = await get("/metrics"); // configured path is /prom
    assert.equal(res.status, 404);
    await res.body?.cancel();

    res = await get("/nope");
    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), { error: "not found" });
    res = await get("/health", { method: "DELETE" });
    assert.equal(res.status, 404);
    await res.body?.cancel();
  });
});

Deno.test("GET /config redacts secrets without mutating the config", async () => {
  const backend = new FakeBackend();
  const before = structuredClone(backend.cfg);
  await withServer(backend, noAuth(), async (get) => {
    const res = await get("/config");
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.deepEqual(body.admin.auth.users, { admin: "[REDACTED]" });
    assert.equal(body.admin.auth.realm, "Loom");
    const cfg = body.plugins[0].config;
    assert.equal(cfg.api_key, "[REDACTED]");
    assert.equal(cfg.nested.client_secret, "[REDACTED]");
    assert.deepEqual(cfg.nested.list, [{ password: "[REDACTED]", ok: "visible" }]);
    assert.deepEqual(body.tracing.exporter, {
      Token: "[REDACTED]",
      "private-key": "[REDACTED]",
      credentials: "[REDACTED]",
      endpoint: "http://x",
    });
    assert.equal(body.workers, 2);
  });
  assert.deepEqual(backend.cfg, before);
});

Deno.test("POST /reload: success and failure bodies", async () => {
  const backend = new FakeBackend();
  await withServer(backend, noAuth(), async (get) => {
    let res = await get("/reload", { method: "POST" });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { result: "success" });
    backend.reloadResult = { ok: false, errors: ['routes[0].upstream: unknown upstream "x"'] };
    res = await get("/reload", { method: "POST" });
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), {
      result: "failure",
      errors: ['routes[0].upstream: unknown upstream "x"'],
    });
    res = await get("/reload"); // GET is not a reload
    assert.equal(res.status, 404);
    await res.body?.cancel();
    assert.equal(backend.reloads, 2);
  });
});

Deno.test("backend errors become a 500 JSON body without details", async () => {
  const backend = new FakeBackend();
  backend.failMetrics = true;
  await withServer(backend, noAuth(), async (get) => {
    const res = await get("/prom");
    assert.equal(res.status, 500);
    const text = await res.text();
    assert.deepEqual(JSON.parse(text), { error: "internal server error" });
    assert.ok(!text.includes("secret internals"));
  });
});

Deno.test("metrics follow the config: disabled -> 404, default path /metrics", async () => {
  const backend = new FakeBackend();
  await withServer(backend, noAuth(), async (get) => {
    backend.cfg.metrics.prometheus = { enabled: true, path: "" };
    let res = await get("/metrics");
    assert.equal(res.status, 200);
    await res.body?.cancel();
    backend.cfg.metrics.prometheus = { enabled: false, path: "/metrics" };
    res = await get("/metrics");
    assert.equal(res.status, 404);
    await res.body?.cancel();
  });
});

Deno.test("Basic auth: probes open, everything else needs valid credentials", async () => {
  const backend = new FakeBackend();
  await withServer(backend, backend.cfg.admin, async (get) => {
    for (const path of ["/health", "/ready"]) {
      const res = await get(path);
      assert.equal(res.status, 200, path);
      await res.body?.cancel();
    }
    for (const path of ["/routes", "/upstreams", "/config", "/info", "/prom", "/nope"]) {
      const res = await get(path);
      assert.equal(res.status, 401, path);
      assert.equal(res.headers.get("www-authenticate"), 'Basic realm="Loom", charset="UTF-8"');
      assert.deepEqual(await res.json(), { error: "unauthorized" });
    }
    const rejected = [
      basic("admin", "wrong"),
      basic("nobody", "password"),
      basic("admin", ""),
      { authorization: "Basic !!!" },
      { authorization: "Bearer x" },
      { authorization: "Basic " + btoa("no-colon") },
    ];
    for (const headers of rejected) {
      const res = await get("/routes", { headers });
      assert.equal(res.status, 401, JSON.stringify(headers));
      await res.body?.cancel();
    }
    let res = await get("/routes", { headers: basic("admin", "password") });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), ROUTES);
    res = await get("/reload", { method: "POST", headers: basic("admin", "password") });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    res = await get("/reload", { method: "POST" });
    assert.equal(res.status, 401);
    await res.body?.cancel();
    assert.equal(backend.reloads, 1);
  });
});

Deno.test("startAdminServer stops on abort signal", async () => {
  const ac = new AbortController();
  const server = startAdminServer(new FakeBackend(), noAuth(), ac.signal);
  const res = await fetch(`http://127.0.0.1:${server.addr.port}/health`);
  assert.equal(res.status, 200);
  await res.body?.cancel();
  ac.abort();
  await server.finished;
});
