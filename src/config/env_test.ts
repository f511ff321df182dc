import assert from "node:assert/strict";
import { expandEnv } from "./env.ts";
import { parseConfig } from "./load.ts";

const env: Record<string, string | undefined> = { HOST: "api.internal", PORT: "9000", EMPTY: "" };
const lookup = (n: string) => env[n];

Deno.test("env: ${VAR} and ${VAR:-default}", () => {
  assert.deepEqual(expandEnv("${HOST}:${PORT}", lookup), { ok: true, value: "api.internal:9000" });
  assert.deepEqual(expandEnv("${MISSING:-fallback}", lookup), { ok: true, value: "fallback" });
  assert.deepEqual(expandEnv("${EMPTY:-fallback}", lookup), { ok: true, value: "fallback" });
  assert.deepEqual(expandEnv("${HOST:-fallback}", lookup), { ok: true, value: "api.internal" });
  assert.deepEqual(expandEnv("${MISSING:-}", lookup), { ok: true, value: "" });
});

Deno.test("env: $${ escapes a literal ${", () => {
  assert.deepEqual(expandEnv("$${HOST} is ${HOST}", lookup), { ok: true, value: "${HOST} is api.internal" });
  assert.deepEqual(expandEnv("$2a$10$abc", lookup), { ok: true, value: "$2a$10$abc" });
});

Deno.test("env: missing variable and malformed references", () => {
  const r = expandEnv("${NOPE}", lookup);
  assert.ok(!r.ok);
  assert.match(r.error, /NOPE is not set/);
  assert.equal(expandEnv("${not valid}", lookup).ok, false);
  assert.equal(expandEnv("${HOST", lookup).ok, false);
});

const config = [
  "listeners:",
  "  - name: http",
  '    address: ":${PORT}"',
  "    protocol: http",
  "    max_connections: ${MAXC:-50}",
  "upstreams:",
  "  - name: api",
  "    endpoints:",
  '      - "${HOST}:80"',
  '      - "${NOT_SET}:80"',
  "routes:",
  "  - id: r",
  "    path: /",
  "    upstream: api",
  "    host_rewrite: ${HOST}",
  "plugins:",
  "  - name: p",
  "    path: /p.wasm",
  "    config: {secret: '${HOST}', injected: '${INJECT}'}",
].join("\n");

Deno.test("env: substituted in config values; unset var reports path and line", () => {
  const r = parseConfig(config, "t.yaml", env);
  assert.ok(!r.ok);
  assert.deepEqual(r.errors.map((e) => [e.path, e.line]), [["upstreams[0].endpoints[1]", 10], [
    "plugins[0].config.injected",
    19,
  ]]);
  assert.match(r.errors[0].message, /NOT_SET is not set/);
});

Deno.test("env: plain scalars are re-typed, values cannot inject YAML structure", () => {
  const r = parseConfig(config, "t.yaml", { ...env, NOT_SET: "b.internal", INJECT: "x\nroutes: []" });
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  const c = r.config;
  assert.equal(c.listeners[0].port, 9000);
  assert.equal(c.listeners[0].max_connections, 50);
  assert.deepEqual(c.upstreams[0].endpoints.map((e) => e.address), ["api.internal:80", "b.internal:80"]);
  assert.equal(c.routes[0].host_rewrite, "api.internal");
  assert.equal(c.routes.length, 1);
  assert.deepEqual(c.plugins[0].config, { secret: "api.internal", injected: "x\nroutes: []" });
});
