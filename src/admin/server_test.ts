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
      config: {
        api_key: "k-123",
        issuer: "https://auth.example",
        nested: { client_secret: "s", list: [{ password: "p", ok: "visible" }] },
      },
      public_config_keys: ["api_key", "nested"],
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
    trusted_proxies: [],
    // Not a tracing block Loom accepts: nested secrets for the redaction test.
    tracing: {
      exporter: { Token: "t", "private-key": "pk", credentials: { a: 1 }, endpoint: "http://x" },
    } as unknown as LoomConfig["tracing"],
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
  drains: [string, string, boolean][] = [];
  setEndpointDraining(upstream: string, endpoint: string, draining: boolean) {
    this.drains.push([upstream, endpoint, draining]);
    return upstream === "api";
  }
  envPaths: string[] = [];
  configEnvPaths() {
    return this.envPaths;
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
/** Marks a write as deliberate (a browser cannot send it without a CORS preflight). */
const DELIBERATE = { "X-Loom-Admin": "1" };
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
    res = await get("/health", { method: "DELETE", headers: DELIBERATE });
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
    assert.equal(cfg.api_key, "[REDACTED]", "public, but a secret key name");
    assert.equal(cfg.issuer, "[REDACTED]", "not public");
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
    let res = await get("/reload", { method: "POST", headers: DELIBERATE });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { result: "success" });
    backend.reloadResult = { ok: false, errors: ['routes[0].upstream: unknown upstream "x"'] };
    res = await get("/reload", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
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
    res = await get("/reload", { method: "POST", headers: { ...basic("admin", "password"), ...DELIBERATE } });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    // Browsers resend cached Basic credentials on a cross-origin form POST: writes still need the header.
    res = await get("/reload", { method: "POST", headers: basic("admin", "password") });
    assert.equal(res.status, 403);
    await res.body?.cancel();
    res = await get("/reload", { method: "POST", headers: DELIBERATE });
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

/** One HTTP/1.1 request over TCP to 127.0.0.1 with this Host (fetch() always sends its own). */
async function rawRequest(
  port: number,
  host: string | null,
  path = "/routes",
  extra = "",
): Promise<{ status: number; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const head = `GET ${path} HTTP/1.1\r\n${
    host === null ? "" : `Host: ${host}\r\n`
  }${extra}Connection: close\r\n\r\n`;
  await conn.write(new TextEncoder().encode(head));
  const text = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
  return {
    status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0),
    body: text.slice(text.indexOf("\r\n\r\n") + 4),
  };
}

const DRAIN = "/upstreams/api/endpoints/10.0.0.1:80/drain";

Deno.test("loopback without auth: a write needs a JSON content type, X-Loom-Admin or a bearer token", async () => {
  const backend = new FakeBackend();
  await withServer(backend, noAuth(), async (get) => {
    // What a web page can send cross-origin without a preflight.
    const simple: RequestInit[] = [
      { method: "POST" },
      { method: "POST", headers: { "content-type": "text/plain" }, body: "{}" },
      { method: "POST", headers: { "content-type": "text/plain;charset=UTF-8" }, body: "x" },
      { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "a=1" },
      { method: "POST", body: new FormData() },
      { method: "POST", headers: { "content-type": "application/jsonx" }, body: "{}" },
      { method: "POST", headers: basic("admin", "password") },
    ];
    for (const init of simple) {
      const res = await get(DRAIN, init);
      assert.equal(res.status, 403, JSON.stringify(init.headers));
      assert.match((await res.json()).error, /^forbidden: a write needs/);
      const reload = await get("/reload", init);
      assert.equal(reload.status, 403);
      await reload.body?.cancel();
    }
    assert.deepEqual(backend.drains, []);
    assert.equal(backend.reloads, 0);

    const deliberate: HeadersInit[] = [
      { "content-type": "application/json" },
      { "content-type": "Application/JSON; charset=utf-8" },
      { "content-type": "application/merge-patch+json" },
      { "x-loom-admin": "1" },
      { authorization: "Bearer anything" },
    ];
    for (const headers of deliberate) {
      const res = await get(DRAIN, { method: "POST", headers, body: "{}" });
      assert.equal(res.status, 200, JSON.stringify(headers));
      assert.deepEqual(await res.json(), { upstream: "api", endpoint: "10.0.0.1:80", draining: true });
    }
    assert.equal(backend.drains.length, deliberate.length);
    const enable = await get("/upstreams/api/endpoints/10.0.0.1:80/enable", {
      method: "POST",
      headers: DELIBERATE,
    });
    assert.deepEqual(await enable.json(), { upstream: "api", endpoint: "10.0.0.1:80", draining: false });
  });
});

Deno.test("loopback without auth: every request needs a loopback Host (DNS rebinding)", async () => {
  const backend = new FakeBackend();
  const server = startAdminServer(backend, noAuth());
  const port = server.addr.port;
  try {
    for (
      const host of [
        "127.0.0.1",
        `127.0.0.1:${port}`,
        "127.9.8.7:1",
        "localhost",
        `LocalHost:${port}`,
        "[::1]",
        "[::1]:80",
      ]
    ) {
      const res = await rawRequest(port, host);
      assert.equal(res.status, 200, host);
    }
    const rejected = [
      "attacker.example",
      `attacker.example:${port}`,
      "127.0.0.1.attacker.example",
      "localhost.attacker.example",
      "localhost.",
      "10.0.0.1",
      "128.0.0.1",
      "127.0.0.256",
      "[::2]:80",
      "[::1]x",
      "127.0.0.1:80:80",
      "127.0.0.1:port",
    ];
    for (const host of rejected) {
      for (const path of ["/routes", "/health", "/config", "/prom"]) {
        const res = await rawRequest(port, host, path);
        assert.equal(res.status, 403, `${host} ${path}`);
        assert.match(JSON.parse(res.body).error, /^forbidden: the Host header must name a loopback address/);
      }
    }
    assert.equal((await rawRequest(port, null)).status, 403, "no Host at all");
  } finally {
    await server.shutdown();
  }
});

const anyInterface = (auth?: AdminConfig["auth"]): AdminConfig => ({
  enabled: true,
  address: "0.0.0.0:0",
  hostname: "0.0.0.0",
  port: 0,
  auth,
  insecure: auth === undefined,
});
const TOKEN = "s3cr3t-admin-t0ken-0123456789";

Deno.test("0.0.0.0 without auth (admin.insecure): reads open, /config and writes refused", async () => {
  const backend = new FakeBackend();
  const server = startAdminServer(backend, anyInterface());
  const get = (path: string, init?: RequestInit) =>
    fetch(`http://127.0.0.1:${server.addr.port}${path}`, init);
  try {
    for (const path of ["/health", "/routes", "/upstreams", "/info", "/prom"]) {
      const res = await get(path);
      assert.equal(res.status, 200, path);
      await res.body?.cancel();
    }
    // No Host rule beyond loopback: the address is public anyway.
    assert.equal((await rawRequest(server.addr.port, "gateway.example", "/routes")).status, 200);
    let res = await get("/config");
    assert.equal(res.status, 403);
    assert.match((await res.json()).error, /^forbidden: GET \/config needs admin.auth/);
    for (const path of ["/reload", DRAIN]) {
      res = await get(path, {
        method: "POST",
        headers: { ...DELIBERATE, "content-type": "application/json" },
      });
      assert.equal(res.status, 403, path);
      assert.match((await res.json()).error, /^forbidden: writes need admin.auth/);
    }
    assert.equal(backend.reloads, 0);
    assert.deepEqual(backend.drains, []);
  } finally {
    await server.shutdown();
  }
});

Deno.test("0.0.0.0 with a bearer token: everything but probes needs it", async () => {
  const backend = new FakeBackend();
  backend.cfg.admin.auth = { enabled: true, users: {}, realm: "Loom", token: TOKEN };
  const server = startAdminServer(backend, anyInterface(backend.cfg.admin.auth));
  const get = (path: string, init?: RequestInit) =>
    fetch(`http://127.0.0.1:${server.addr.port}${path}`, init);
  const bearer = { authorization: `Bearer ${TOKEN}` };
  try {
    let res = await get("/health");
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const rejected: HeadersInit[] = [
      {},
      { authorization: `Bearer ${TOKEN}x` },
      { authorization: `Bearer ${TOKEN.slice(1)}` },
      { authorization: "Bearer " },
      { authorization: TOKEN },
      basic("admin", TOKEN),
    ];
    for (const headers of rejected) {
      res = await get("/config", { headers });
      assert.equal(res.status, 401, JSON.stringify(headers));
      assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="Loom"');
      assert.deepEqual(await res.json(), { error: "unauthorized" });
    }
    res = await get("/reload", { method: "POST" });
    assert.equal(res.status, 401);
    await res.body?.cancel();

    res = await get("/config", { headers: { authorization: `bearer  ${TOKEN}` } });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.admin.auth.token, "[REDACTED]");
    assert.ok(!JSON.stringify(body).includes(TOKEN));
    // A bearer token is never sent by a browser on its own: no extra header needed.
    res = await get("/reload", { method: "POST", headers: bearer });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    res = await get(DRAIN, { method: "POST", headers: bearer });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(backend.reloads, 1);
    assert.equal(backend.drains.length, 1);
  } finally {
    await server.shutdown();
  }
});

Deno.test("0.0.0.0 with Basic auth and a token: either works; Basic writes need X-Loom-Admin", async () => {
  const backend = new FakeBackend();
  const auth = { enabled: true, users: { admin: PASSWORD_HASH }, realm: "Loom", token: TOKEN };
  const server = startAdminServer(backend, anyInterface(auth));
  const get = (path: string, init?: RequestInit) =>
    fetch(`http://127.0.0.1:${server.addr.port}${path}`, init);
  try {
    let res = await get("/routes");
    assert.equal(res.status, 401);
    assert.equal(
      res.headers.get("www-authenticate"),
      'Basic realm="Loom", charset="UTF-8", Bearer realm="Loom"',
    );
    await res.body?.cancel();
    for (const headers of [basic("admin", "password"), { authorization: `Bearer ${TOKEN}` }]) {
      res = await get("/config", { headers });
      assert.equal(res.status, 200);
      await res.body?.cancel();
    }
    res = await get("/reload", { method: "POST", headers: basic("admin", "password") });
    assert.equal(res.status, 403);
    await res.body?.cancel();
    res = await get("/reload", { method: "POST", headers: { ...basic("admin", "password"), ...DELIBERATE } });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(backend.reloads, 1);
  } finally {
    await server.shutdown();
  }
});

Deno.test("GET /config redacts the values the backend reports as ${ENV}", async () => {
  const backend = new FakeBackend();
  backend.envPaths = ["metrics.prometheus.path", "admin.address"];
  await withServer(backend, noAuth(), async (get) => {
    const body = await (await get("/config")).json();
    assert.equal(body.metrics.prometheus.path, "[REDACTED]");
    assert.equal(body.metrics.prometheus.enabled, true);
    assert.deepEqual([body.admin.address, body.admin.hostname, body.admin.port], [
      "[REDACTED]",
      "[REDACTED]",
      "[REDACTED]",
    ]);
  });
});
