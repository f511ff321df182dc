import assert from "node:assert/strict";
import { createAdminApp } from "./server.ts";
import type { AdminBackend } from "./types.ts";
import type { LoomConfig } from "../config/types.ts";
import type { DashboardState } from "./dashboard.ts";

function backend(metricsPath: string): AdminBackend {
  const cfg = { metrics: { prometheus: { enabled: true, path: metricsPath } } } as unknown as LoomConfig;
  return {
    ready: () => true,
    routes: () => [],
    upstreams: () => Promise.resolve([]),
    config: () => cfg,
    reload: () => Promise.resolve({ ok: true }),
    setEndpointDraining: () => true,
    plugins: () => [],
    purgeCache: () => Promise.resolve(0),
    metrics: () => Promise.resolve(""),
    info: () => ({ version: "t", workers: 1, started_at: "", config_file: "" }),
    dashboard: () => Promise.resolve({} as DashboardState),
  };
}

const ADMIN = { enabled: true, address: "127.0.0.1:0", hostname: "127.0.0.1", port: 0 };

Deno.test("openapi: /openapi.json documents exactly the routes the admin app serves", async () => {
  const app = createAdminApp(backend("/prom"), ADMIN);
  const res = await app.request("http://127.0.0.1/openapi.json", { headers: { host: "127.0.0.1" } });
  assert.equal(res.status, 200);
  const doc = await res.json();
  assert.equal(doc.openapi, "3.1.0");
  const documented = new Set<string>();
  for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
    for (const method of Object.keys(ops)) documented.add(`${method.toUpperCase()} ${path}`);
  }
  // Registered routes (middleware are "ALL /*"); Hono's :param is OpenAPI's {param}.
  const served = new Set(
    app.routes.filter((r) => r.method !== "ALL").map((r) =>
      `${r.method} ${r.path.replace(/:([A-Za-z_]+)/g, "{$1}")}`
    ),
  );
  // The metrics path is served by a middleware (it follows reloads): the configured one is documented.
  served.add("GET /prom");
  const missing = [...served].filter((r) => !documented.has(r));
  const extra = [...documented].filter((r) => !served.has(r));
  assert.deepEqual(missing, [], "served but not in src/admin/openapi.ts");
  assert.deepEqual(extra, [], "documented but not served");
  // Every operation says what it answers.
  for (const ops of Object.values(doc.paths as Record<string, Record<string, { responses: object }>>)) {
    for (const op of Object.values(ops)) assert.ok(Object.keys(op.responses).length > 0);
  }
});

Deno.test("openapi: without a dashboard backend, no dashboard route", () => {
  const b = backend("/metrics");
  delete b.dashboard;
  const app = createAdminApp(b, ADMIN);
  assert.ok(!app.routes.some((r) => r.path.startsWith("/dashboard")));
});
