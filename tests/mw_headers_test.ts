/** Header transforms and the security headers preset through a running gateway (HTTP/1.1 and h2c). */
import assert from "node:assert/strict";
import { itest } from "./helpers.ts";
import { startUpstream } from "./upstream.ts";
import { startDualLoom } from "./mw_auth_util.ts";

itest(
  "headers: rename/set/remove with variables both ways; security_headers preset (HTTP/1.1 and h2c)",
  async () => {
    const up = startUpstream((req) =>
      Response.json(Object.fromEntries(req.headers), {
        headers: { "x-internal": "secret", "x-frame-options": "SAMEORIGIN", "x-upstream-version": "7" },
      })
    );
    const gw = await startDualLoom(`
upstreams: [{ name: up, endpoints: ["${up.address}"] }]
routes:
  - id: web
    path: /web/*
    upstream: up
    middleware:
      - headers:
          request:
            rename: { x-legacy-user: x-user }
            set: { x-client: "\${client_ip}", x-route: "\${route_id}", x-agent: "\${header.user-agent}" }
            remove: [cookie]
          response:
            rename: { x-upstream-version: x-version }
            remove: [x-internal]
            set: { x-request: "\${request_id}" }
      - security_headers: { referrer_policy: no-referrer }
`);
    try {
      for (const [proto, base, client] of gw.protocols) {
        const r = await fetch(base + "/web/x", {
          client,
          headers: { "x-legacy-user": "ada", cookie: "s=1", "user-agent": "t/1", "x-request-id": "abc-123" },
        });
        const seen = await r.json();
        assert.equal(seen["x-user"], "ada", proto);
        assert.equal(seen["x-legacy-user"], undefined, proto);
        assert.equal(seen["cookie"], undefined, proto);
        assert.equal(seen["x-client"], "127.0.0.1", proto);
        assert.equal(seen["x-route"], "web", proto);
        assert.equal(seen["x-agent"], "t/1", proto);
        assert.equal(r.headers.get("x-internal"), null, proto);
        assert.equal(r.headers.get("x-version"), "7", proto);
        assert.equal(r.headers.get("x-request"), "abc-123", proto);
        assert.equal(r.headers.get("x-frame-options"), "SAMEORIGIN", proto);
        assert.equal(r.headers.get("x-content-type-options"), "nosniff", proto);
        assert.equal(r.headers.get("referrer-policy"), "no-referrer", proto);
        assert.equal(
          r.headers.get("content-security-policy"),
          "default-src 'self'; frame-ancestors 'none'",
          proto,
        );
        assert.equal(r.headers.get("strict-transport-security"), null, "HSTS only on https");
      }
    } finally {
      await gw.close();
      await up.close();
    }
  },
);
