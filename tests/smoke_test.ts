import assert from "node:assert/strict";
import { itest, startLoom } from "./helpers.ts";
import { startUpstream } from "./upstream.ts";

itest("smoke: proxies a GET through a prefix route", async () => {
  const up = startUpstream();
  const loom = await startLoom(`
listeners:
  - name: http
    address: "127.0.0.1:\${PORT}"
    protocol: http
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - id: api
    path: /api/*
    strip_prefix: true
    upstream: up
`);
  try {
    const res = await fetch(loom.url("/api/hello?x=1"));
    assert.equal(res.status, 200);
    assert.equal(await res.text(), `ok:${up.port}`);
    assert.equal(new URL(up.seen[0].url).pathname, "/hello");
    assert.equal(new URL(up.seen[0].url).search, "?x=1");
  } finally {
    await loom.close();
    await up.close();
  }
});
