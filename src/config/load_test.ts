import assert from "node:assert/strict";
import { formatErrors, loadConfig, parseConfig } from "./mod.ts";

const here = (rel: string) => new URL(rel, import.meta.url).pathname;

Deno.test("load: josedab/loom's example config validates unchanged", async () => {
  const r = await loadConfig(here("./testdata/josedab-loom.yaml"));
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  const c = r.config;
  assert.deepEqual(c.listeners.map((l) => [l.name, l.port, l.protocol]), [
    ["http", 8080, "http"],
    ["https", 8443, "https"],
    ["grpc", 9090, "grpc"],
  ]);
  assert.deepEqual(c.routes.map((r) => r.id), ["api-v1", "api-v2", "public", "health"]);
  assert.deepEqual(c.plugins.map((p) => [p.name, p.memory_limit, p.timeout, p.phase]), [
    ["jwt-auth", 16 * 1024 ** 2, 50, "on_request_headers"],
    ["rate-limit", 8 * 1024 ** 2, 10, "on_request_headers"],
    ["request-logger", 16 * 1024 ** 2, 50, "on_log"],
  ]);
  assert.deepEqual(c.admin, { enabled: true, address: ":9091", hostname: "", port: 9091 });
  assert.equal(c.metrics.opentelemetry.endpoint, "otel-collector:4317");
  assert.deepEqual(c.rate_limit, { enabled: true, rate: 1000, burst: 2000, cleanup_interval: 300_000 });
  assert.equal(c.tracing?.batch_timeout, 5000);
  assert.equal(c.cors?.max_age, 86400);
  assert.equal(c.upstreams[0].circuit_breaker?.timeout, 30_000);
  assert.equal(r.source, here("./testdata/josedab-loom.yaml"));
});

Deno.test("load: the default config/loom.yaml validates and routes /echo/* to the demo echo service", async () => {
  const text = await Deno.readTextFile(here("../../config/loom.yaml"));
  assert.ok(text.startsWith("# yaml-language-server: $schema=./loom.schema.json\n"));
  const r = parseConfig(text, "config/loom.yaml", {});
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  const c = r.config;
  assert.deepEqual([c.listeners[0].name, c.listeners[0].hostname, c.listeners[0].port], ["http", "", 8080]);
  assert.equal(c.admin.address, "127.0.0.1:9091");
  assert.deepEqual(c.demo.echo, { address: "127.0.0.1:18080", hostname: "127.0.0.1", port: 18080 });
  const echo = c.routes.find((r) => r.id === "echo");
  assert.deepEqual([echo?.path, echo?.strip_prefix, echo?.upstream], ["/echo/*", true, "echo"]);
  assert.deepEqual(c.upstreams.map((u) => [u.name, u.endpoints[0].address]), [["echo", "127.0.0.1:18080"]]);
});

Deno.test("load: unreadable file is one error at line 0", async () => {
  const r = await loadConfig(here("./testdata/does-not-exist.yaml"));
  assert.ok(!r.ok);
  assert.equal(r.errors.length, 1);
  assert.equal(r.errors[0].line, 0);
  assert.match(r.errors[0].message, /cannot read config/);
});

Deno.test("load: parseConfig reads Deno.env when no env is given", () => {
  Deno.env.set("LOOM_CONFIG_TEST_PORT", "8181");
  try {
    const r = parseConfig(
      'listeners: [{name: a, address: ":${LOOM_CONFIG_TEST_PORT}", protocol: http}]',
      "t.yaml",
    );
    assert.ok(r.ok);
    assert.equal(r.config.listeners[0].port, 8181);
  } finally {
    Deno.env.delete("LOOM_CONFIG_TEST_PORT");
  }
});

Deno.test("formatErrors: file:line:column: path: message", () => {
  const text = [
    "listeners: [{name: a, address: ':1', protocol: http}]",
    "routes:",
    "  - id: r",
    "    path: /",
    "    upstream: billing",
  ].join("\n");
  const r = parseConfig(text, "config/loom.yaml", {});
  assert.ok(!r.ok);
  assert.equal(
    formatErrors(r.errors, "config/loom.yaml"),
    'config/loom.yaml:5:15: routes[0].upstream: upstream "billing" is not defined',
  );
  assert.equal(
    formatErrors([{ path: "", line: 0, column: 0, message: "gone" }, {
      path: "",
      line: 2,
      column: 1,
      message: "x",
    }], "f"),
    "f: gone\nf:2:1: x",
  );
});
