/**
 * CORS through a running gateway, over HTTP/1.1 and h2c: a browser-shaped
 * preflight answered by Loom (never reaching the upstream), the actual request
 * with its CORS headers, a disallowed origin, a plain OPTIONS passed upstream,
 * and the Loom format's top-level `cors` block.
 */
import assert from "node:assert/strict";
import { itest, startLoom } from "./helpers.ts";
import { startDualLoom } from "./mw_auth_util.ts";
import { startUpstream } from "./upstream.ts";

itest("cors: preflight, actual request, disallowed origin, plain OPTIONS (HTTP/1.1 and h2c)", async () => {
  const up = startUpstream(() => new Response("hi", { headers: { "x-request-id": "r1" } }));
  const gw = await startDualLoom(`
upstreams: [{ name: up, endpoints: ["${up.address}"] }]
routes:
  - id: api
    path: /api/*
    upstream: up
    middleware:
      - cors:
          allow_origins: ["https://app.example", "https://*.example.org"]
          allow_methods: [GET, PUT]
          allow_headers: [content-type, authorization]
          expose_headers: [x-request-id]
          allow_credentials: true
          max_age: 300
`);
  try {
    for (const [proto, base, client] of gw.protocols) {
      const before = up.seen.length;
      // What Chromium sends before a credentialed PUT with a JSON body.
      const pf = await fetch(base + "/api/items/1", {
        method: "OPTIONS",
        client,
        headers: {
          origin: "https://shop.example.org",
          "access-control-request-method": "PUT",
          "access-control-request-headers": "authorization,content-type",
          "sec-fetch-mode": "cors",
          referer: "https://shop.example.org/cart",
        },
      });
      await pf.body?.cancel();
      assert.equal(pf.status, 204, proto);
      assert.equal(pf.headers.get("access-control-allow-origin"), "https://shop.example.org", proto);
      assert.equal(pf.headers.get("access-control-allow-credentials"), "true", proto);
      assert.equal(pf.headers.get("access-control-allow-methods"), "GET, PUT", proto);
      assert.equal(pf.headers.get("access-control-allow-headers"), "content-type, authorization", proto);
      assert.equal(pf.headers.get("access-control-max-age"), "300", proto);
      assert.equal(up.seen.length, before, "the preflight never reaches the upstream");

      const actual = await fetch(base + "/api/items/1", {
        method: "PUT",
        body: "{}",
        client,
        headers: { origin: "https://shop.example.org" },
      });
      assert.equal(await actual.text(), "hi");
      assert.equal(actual.headers.get("access-control-allow-origin"), "https://shop.example.org", proto);
      assert.equal(actual.headers.get("access-control-expose-headers"), "x-request-id", proto);
      assert.match(actual.headers.get("vary") ?? "", /Origin/, proto);

      const evil = await fetch(base + "/api/items/1", {
        client,
        headers: { origin: "https://evil.example" },
      });
      await evil.body?.cancel();
      assert.equal(evil.status, 200, proto);
      assert.equal(evil.headers.get("access-control-allow-origin"), null, proto);
      const evilPf = await fetch(base + "/api/items/1", {
        method: "OPTIONS",
        client,
        headers: { origin: "https://evil.example", "access-control-request-method": "GET" },
      });
      await evilPf.body?.cancel();
      assert.equal(evilPf.status, 403, proto);
      assert.equal(evilPf.headers.get("access-control-allow-origin"), null, proto);

      const n = up.seen.length;
      const plain = await fetch(base + "/api/items/1", { method: "OPTIONS", client });
      await plain.body?.cancel();
      assert.equal(up.seen.length, n + 1, "an OPTIONS that is no preflight goes upstream");
    }
    const metrics = await (await fetch(gw.loom.admin("/metrics"))).text();
    assert.match(metrics, /loom_rejections_total\{route="api",middleware="cors",reason="origin"\} 2/);
  } finally {
    await gw.close();
    await up.close();
  }
});

itest("cors: the Loom format's top-level cors block applies to every route", async () => {
  const up = startUpstream();
  const loom = await startLoom(`
listeners: [{ name: http, address: "127.0.0.1:\${PORT}", protocol: http }]
upstreams: [{ name: up, endpoints: ["${up.address}"] }]
routes:
  - { id: a, path: /a, upstream: up }
  - { id: b, path: /b, upstream: up }
cors:
  enabled: true
  allow_origins: ["https://app.example"]
  allow_methods: [GET, POST]
  max_age: 86400
`);
  try {
    for (const path of ["/a", "/b"]) {
      const r = await fetch(loom.url(path), { headers: { origin: "https://app.example" } });
      await r.body?.cancel();
      assert.equal(r.headers.get("access-control-allow-origin"), "https://app.example", path);
      const pf = await fetch(loom.url(path), {
        method: "OPTIONS",
        headers: { origin: "https://app.example", "access-control-request-method": "POST" },
      });
      await pf.body?.cancel();
      assert.equal(pf.status, 204);
      assert.equal(pf.headers.get("access-control-max-age"), "86400");
    }
  } finally {
    await loom.close();
    await up.close();
  }
});
