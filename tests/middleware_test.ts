/**
 * The middleware chain through a running gateway: a middleware written from
 * src/middleware/README.md (tests/fixtures/powered_by.ts) on HTTP/1.1, HTTP/2
 * (h2c) and HTTP/3 listeners, top-level before route order, request edits seen by
 * the upstream, response hooks on Loom's own errors, and config errors.
 */
import assert from "node:assert/strict";
import "./fixtures/powered_by.ts";
import { freePort, itest, startLoom } from "./helpers.ts";
import { GET, withH3Loom } from "./h3_client.ts";
import { startUpstream } from "./upstream.ts";
import { parseConfig } from "../src/config/load.ts";

itest(
  "middleware: README's powered_by and headers on HTTP/1.1 and h2c; order; upstream sees request edits",
  async () => {
    const up = startUpstream((req) =>
      new Response(JSON.stringify({ who: req.headers.get("x-who"), debug: req.headers.get("x-debug") }), {
        headers: { "x-from-upstream": "1" },
      })
    );
    const h2cPort = freePort();
    const loom = await startLoom(`
listeners:
  - { name: http, address: "127.0.0.1:\${PORT}", protocol: http }
  - { name: h2c, address: "127.0.0.1:${h2cPort}", protocol: h2c }
upstreams:
  - { name: up, endpoints: ["${up.address}"] }
middleware:
  - powered_by: { value: loom-test }
  - headers: { response: { add: { x-order: global } } }
routes:
  - id: api
    path: /api/*
    upstream: up
    middleware:
      - headers:
          request: { set: { x-who: "\${route_id}@\${client_ip}" }, remove: [x-debug] }
          response: { add: { x-order: route }, remove: [x-from-upstream] }
  - { id: dead, path: /dead/*, upstream: dead }
  - { id: plain, path: /plain/*, upstream: up }
`.replace("upstreams:", `upstreams:\n  - { name: dead, endpoints: ["127.0.0.1:1"] }`));
    const h2 = Deno.createHttpClient({ http1: false, http2: true });
    try {
      for (
        const [proto, base, client] of [
          ["HTTP/1.1", loom.url(""), undefined],
          ["h2c", `http://127.0.0.1:${h2cPort}`, h2],
        ] as const
      ) {
        const r = await fetch(base + "/api/x", { headers: { "x-debug": "1" }, client });
        const body = await r.json();
        assert.equal(r.headers.get("x-powered-by"), "loom-test", proto);
        // Top-level response hooks run before the route's: both appended, global first.
        assert.equal(r.headers.get("x-order"), "global, route", proto);
        assert.equal(r.headers.get("x-from-upstream"), null, proto);
        assert.deepEqual(body, { who: "api@127.0.0.1", debug: null }, proto);
        // Loom's own error answers pass through the response phase too.
        const dead = await fetch(base + "/dead/x", { client });
        await dead.body?.cancel();
        assert.equal(dead.status, 502, proto);
        assert.equal(dead.headers.get("x-powered-by"), "loom-test", proto);
        // A route without its own middleware still gets the top-level list.
        const plain = await fetch(base + "/plain/x", { client });
        await plain.body?.cancel();
        assert.equal(plain.headers.get("x-powered-by"), "loom-test", proto);
        assert.equal(plain.headers.get("x-from-upstream"), "1", proto);
      }
    } finally {
      h2.close();
      await loom.close();
      await up.close();
    }
  },
);

Deno.test("middleware config: unknown name, two names in one entry, bad header name and variable are located errors", () => {
  const r = parseConfig(
    `listeners: [{ name: l, address: ":1", protocol: http }]
upstreams: [{ name: u, endpoints: ["127.0.0.1:2"] }]
middleware:
  - header: {}
  - { headers: {}, powered_by: {} }
routes:
  - id: r
    path: /
    upstream: u
    middleware:
      - headers: { response: { set: { "bad name": x, x-ok: "\${nope}" } } }
`,
    "m.yaml",
    {},
  );
  assert.equal(r.ok, false);
  if (r.ok) return;
  const lines = r.errors.map((e) => `${e.line}: ${e.path}: ${e.message}`);
  assert.ok(
    lines.some((l) => /^4: middleware\[0\]\.header: unknown key "header"; did you mean "headers"\?/.test(l)),
    lines.join("\n"),
  );
  assert.ok(lines.some((l) => /^5: middleware\[1\]: allows exactly 1 of/.test(l)), lines.join("\n"));
  assert.ok(lines.some((l) => /^11: .*bad name.*not a valid header field name/.test(l)), lines.join("\n"));
  // An unknown ${name} is taken for an environment variable (substitution runs first).
  assert.ok(lines.some((l) => /^11: .*x-ok: environment variable nope is not set/.test(l)), lines.join("\n"));
});

Deno.test("config: blocks accepted but not implemented are warned about with key and line", () => {
  const r = parseConfig(
    `listeners: [{ name: l, address: ":1", protocol: http }]
upstreams: [{ name: u, endpoints: ["u:1"], service_discovery: { type: dns } }]
tracing:
  enabled: true
rate_limit: { enabled: true, rate: 10 }
`,
    "w.yaml",
    {},
  );
  assert.ok(r.ok);
  if (!r.ok) return;
  assert.deepEqual(
    r.warnings.map((w) => [w.path, w.line]),
    // tracing and rate_limit are implemented (OpenTelemetry spans; the rate_limit middleware per client IP)
    [["upstreams[0].service_discovery", 2]],
  );
});

itest("middleware: README's powered_by and route headers on an HTTP/3 listener", async () => {
  const up = startUpstream((req) => new Response(req.headers.get("x-who") ?? "none"));
  try {
    await withH3Loom(
      `upstreams: [{ name: up, endpoints: ["${up.address}"] }]
middleware:
  - powered_by: { value: loom-h3 }
routes:
  - id: api
    path: /api/*
    upstream: up
    middleware:
      - headers: { request: { set: { x-who: "\${route_id}" } }, response: { add: { x-order: route } } }
`,
      async (c) => {
        const r = await c.request(GET("/api/x"));
        const fields = new Map<string, string>();
        for (let i = 0; i < r.fields.length; i += 2) fields.set(r.fields[i], r.fields[i + 1]);
        assert.equal(fields.get(":status"), "200");
        assert.equal(fields.get("x-powered-by"), "loom-h3");
        assert.equal(fields.get("x-order"), "route");
        assert.equal(r.body, "api");
      },
    );
  } finally {
    await up.close();
  }
}, { needs: ["openssl"] });
