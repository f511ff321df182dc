import assert from "node:assert/strict";
import type { RouteConfig } from "../config/types.ts";
import { specsFromConfig } from "./route_specs.ts";
import { Router } from "../router/mod.ts";

Deno.test("specsFromConfig maps query_params and keeps the RouteConfig as payload", () => {
  const base = {
    plugins: [],
    middleware: [],
    allow_trace: false,
    strip_prefix: true,
    timeout: 30000,
    priority: 0,
    preserve_host: true,
  };
  const routes: RouteConfig[] = [
    { ...base, id: "v1", path: "/api/v1/*", upstream: "api", order: 0 },
    { ...base, id: "q", path: "/api/v1/x", query_params: { v: { kind: "exact", value: "2" } }, order: 1 },
  ];
  const router = new Router(specsFromConfig(routes));
  const req = (path: string, query: string) => ({
    method: "GET",
    host: "h",
    path,
    query,
    header: () => undefined,
  });
  assert.equal(router.match(req("/api/v1/x", "v=2"))?.route.data, routes[1]);
  const m = router.match(req("/api/v1/x", ""))!;
  assert.equal(m.route.data, routes[0]);
  assert.equal(m.prefix, "/api/v1");
});
