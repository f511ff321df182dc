/**
 * A route's `direct_response` through a running gateway (HTTP/1.1 and h2c):
 * fixed status, body and content type, nothing upstream; response middleware
 * still apply; HEAD gets the head only.
 */
import assert from "node:assert/strict";
import { itest } from "./helpers.ts";
import { startDualLoom } from "./mw_auth_util.ts";
import { startUpstream } from "./upstream.ts";

itest(
  "direct_response: status, body, content type, response middleware, HEAD (HTTP/1.1 and h2c)",
  async () => {
    const up = startUpstream();
    const g = await startDualLoom(`
upstreams: [{ name: up, endpoints: ["${up.address}"] }]
routes:
  - id: maint
    path: /maint/*
    direct_response: { status: 503, body: "<h1>back soon</h1>", content_type: "text/html" }
    middleware: [{ headers: { response: { set: { retry-after: "120" } } } }]
  - { id: plain, path: /plain, direct_response: { status: 500, body: "all backends invalid" } }
  - { id: empty, path: /empty, direct_response: { status: 204 } }
  - { id: ok, path: /robots.txt, direct_response: { status: 200, body: "User-agent: *\\nDisallow: /\\n" } }
`);
    try {
      for (const [proto, base, client] of g.protocols) {
        let r = await fetch(base + "/maint/x?y=1", { client, method: "POST", body: "ignored" });
        assert.equal(r.status, 503, proto);
        assert.equal(await r.text(), "<h1>back soon</h1>", proto);
        assert.equal(r.headers.get("content-type"), "text/html", proto);
        assert.equal(r.headers.get("retry-after"), "120", proto);
        r = await fetch(base + "/plain", { client });
        assert.equal(r.status, 500, proto);
        assert.equal(await r.text(), "all backends invalid", proto);
        assert.equal(r.headers.get("content-type"), "text/plain; charset=utf-8", proto);
        r = await fetch(base + "/empty", { client });
        assert.equal(r.status, 204, proto);
        assert.equal(await r.text(), "", proto);
        assert.equal(r.headers.get("content-type"), null, proto);
        r = await fetch(base + "/robots.txt", { client });
        assert.equal(await r.text(), "User-agent: *\nDisallow: /\n", proto);
        r = await fetch(base + "/robots.txt", { client, method: "HEAD" });
        assert.equal(r.status, 200, proto);
        if (proto === "HTTP/1.1") assert.equal(r.headers.get("content-length"), "26");
        assert.equal(await r.text(), "", proto);
      }
      assert.equal(up.received, 0, "nothing went upstream");
    } finally {
      await g.close();
      await up.close();
    }
  },
);
