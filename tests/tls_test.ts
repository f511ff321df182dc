import assert from "node:assert/strict";
import { itest, startLoom } from "./helpers.ts";
import { startUpstream } from "./upstream.ts";
import { TestCa } from "./tls_util.ts";

itest("https listener: HTTP/1.1 over TLS on Loom's own engine", async () => {
  const dir = Deno.makeTempDirSync();
  const ca = await TestCa.create(dir);
  const { cert, key } = await ca.leaf("server", "localhost", ["DNS:localhost", "IP:127.0.0.1"]);
  const up = startUpstream((req) => new Response(`proto=${req.headers.get("x-forwarded-proto")}`));
  const loom = await startLoom(`
listeners:
  - name: tls
    address: "127.0.0.1:\${PORT}"
    protocol: https
    tls: { cert_file: "${cert}", key_file: "${key}" }
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - id: all
    path: /*
    upstream: up
`);
  const client = Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(ca.cert)] });
  try {
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`https://localhost:${loom.port}/x`, { client });
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "proto=https");
    }
  } finally {
    client.close();
    await loom.close();
    await up.close();
    Deno.removeSync(dir, { recursive: true });
  }
}, { needs: ["openssl"] });

itest("h2c listener: HTTP/2 prior knowledge through Deno.serve", async () => {
  const up = startUpstream((req) => new Response(`via=${req.headers.get("via")}`));
  const loom = await startLoom(`
listeners:
  - name: h2
    address: "127.0.0.1:\${PORT}"
    protocol: h2c
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - id: all
    path: /*
    upstream: up
`);
  const client = Deno.createHttpClient({ http1: false, http2: true });
  try {
    const res = await fetch(loom.url("/h2"), { client });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "via=2 loom");
    const post = await fetch(loom.url("/h2"), { client, method: "POST", body: "x".repeat(100_000) });
    assert.equal(post.status, 200);
    await post.body?.cancel();
  } finally {
    client.close();
    await loom.close();
    await up.close();
  }
});
