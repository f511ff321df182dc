/**
 * TLS and HTTP/2 towards upstreams: verification on by default (ca_file),
 * SNI/name override (server_name), insecure_skip_verify only when written,
 * client certificates (mTLS to the upstream), h2 and h2c upstreams
 * multiplexed on few connections, and grpcs end to end.
 */
import assert from "node:assert/strict";
import https from "node:https";
import type { TLSSocket } from "node:tls";
import { freePort, itest, startLoom } from "./helpers.ts";
import { TestCa } from "./tls_util.ts";
import { assertScenarios, runPeer, startGrpcServer } from "./grpc_util.ts";
import type { H2Stream } from "../src/http2/connection.ts";
import { field } from "../src/http2/fields.ts";
import { startH2Upstream } from "./upstream.ts";

itest(
  "upstream tls (HTTP/1.1 pool): ca_file + server_name verify; no CA fails; insecure_skip_verify only when set",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const backend = await ca.leaf("backend", "backend.test", ["DNS:backend.test"]);
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      cert: Deno.readTextFileSync(backend.cert),
      key: Deno.readTextFileSync(backend.key),
      onListen: () => {},
    }, (req) => new Response(`tls-upstream ${new URL(req.url).pathname}`));
    const ep = `127.0.0.1:${server.addr.port}`;
    const loom = await startLoom(`
listeners:
  - name: http
    address: "127.0.0.1:\${PORT}"
    protocol: http
upstreams:
  - name: verified
    endpoints: ["${ep}"]
    tls: { ca_file: "${ca.cert}", server_name: backend.test }
  - name: no-ca
    endpoints: ["${ep}"]
    tls: { server_name: backend.test }
  - name: wrong-name
    endpoints: ["${ep}"]
    tls: { ca_file: "${ca.cert}", server_name: evil.test }
  - name: insecure
    endpoints: ["${ep}"]
    tls: { insecure_skip_verify: true }
routes:
  - { id: verified, path: "/verified/*", upstream: verified }
  - { id: no-ca, path: "/no-ca/*", upstream: no-ca }
  - { id: wrong-name, path: "/wrong-name/*", upstream: wrong-name }
  - { id: insecure, path: "/insecure/*", upstream: insecure }
`);
    try {
      for (let i = 0; i < 3; i++) {
        const r = await fetch(loom.url("/verified/a"));
        assert.equal(r.status, 200);
        assert.equal(await r.text(), "tls-upstream /verified/a");
      }
      for (const p of ["/no-ca/a", "/wrong-name/a"]) {
        const r = await fetch(loom.url(p));
        await r.body?.cancel();
        assert.equal(r.status, 502, p);
      }
      const r = await fetch(loom.url("/insecure/a"));
      assert.equal(r.status, 200);
      await r.body?.cancel();
    } finally {
      await loom.close();
      await server.shutdown();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl"] },
);

itest("upstream tls: client certificate (mTLS to the upstream)", async () => {
  const dir = Deno.makeTempDirSync();
  const ca = await TestCa.create(dir);
  const backend = await ca.leaf("backend", "backend.test", ["DNS:backend.test"]);
  const gw = await ca.leaf("gateway", "loom-gateway", ["DNS:loom.internal"]);
  const server = https.createServer({
    cert: Deno.readTextFileSync(backend.cert),
    key: Deno.readTextFileSync(backend.key),
    requestCert: true,
    rejectUnauthorized: false,
  }, (req, res) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate();
    res.end(`peer=${peer?.subject?.CN ?? "none"}`);
  });
  const port = freePort();
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  const loom = await startLoom(`
listeners:
  - name: http
    address: "127.0.0.1:\${PORT}"
    protocol: http
upstreams:
  - name: up
    endpoints: ["127.0.0.1:${port}"]
    tls: { ca_file: "${ca.cert}", server_name: backend.test, cert_file: "${gw.cert}", key_file: "${gw.key}" }
routes:
  - { id: all, path: "/*", upstream: up }
`);
  try {
    const r = await fetch(loom.url("/x"));
    assert.equal(await r.text(), "peer=loom-gateway");
  } finally {
    await loom.close();
    server.close();
    Deno.removeSync(dir, { recursive: true });
  }
}, { needs: ["openssl"] });

/** An HTTP/2 upstream (h2c, or h2 over TLS) that answers with a trailer, late enough for requests to overlap. */
function h2Upstream(tls?: { cert: string; key: string }) {
  const enc = new TextEncoder();
  return startH2Upstream((s: H2Stream) => {
    s.respond([":status", "200", "content-type", "text/plain"], false);
    // Hold the answer a little so concurrent requests overlap (multiplexing is visible).
    setTimeout(async () => {
      try {
        await s.write(enc.encode(`h2 ${field(s.headers, ":path")} ${field(s.headers, ":scheme")}`));
        await s.end(["x-upstream-trailer", "yes"]);
      } catch { /* reset by the peer */ }
    }, 50);
  }, tls);
}

itest("upstream protocol h2 (TLS) and h2c: multiplexed on few connections", async () => {
  const dir = Deno.makeTempDirSync();
  const ca = await TestCa.create(dir);
  const backend = await ca.leaf("backend", "backend.test", ["DNS:backend.test"]);
  const h2 = h2Upstream(backend);
  const h2c = h2Upstream();
  const loom = await startLoom(`
listeners:
  - name: http
    address: "127.0.0.1:\${PORT}"
    protocol: http
upstreams:
  - name: h2
    protocol: h2
    endpoints: ["127.0.0.1:${h2.port}"]
    tls: { ca_file: "${ca.cert}", server_name: backend.test }
  - name: h2c
    protocol: h2c
    endpoints: ["127.0.0.1:${h2c.port}"]
routes:
  - { id: h2, path: "/h2/*", upstream: h2 }
  - { id: h2c, path: "/h2c/*", upstream: h2c }
`);
  try {
    for (const [prefix, srv, scheme] of [["/h2", h2, "https"], ["/h2c", h2c, "http"]] as const) {
      const bodies = await Promise.all(
        Array.from({ length: 30 }, (_, i) => fetch(loom.url(`${prefix}/r${i}`)).then((r) => r.text())),
      );
      bodies.forEach((b, i) => assert.equal(b, `h2 ${prefix}/r${i} ${scheme}`));
      assert.ok(
        srv.connections() <= 2,
        `${prefix}: ${srv.connections()} upstream connections for 30 concurrent requests`,
      );
    }
  } finally {
    await loom.close();
    await h2.close();
    await h2c.close();
    Deno.removeSync(dir, { recursive: true });
  }
}, { needs: ["openssl"] });

itest("grpcs listener to a TLS gRPC upstream (python grpcio both ends, verified with ca_file)", async () => {
  const dir = Deno.makeTempDirSync();
  const ca = await TestCa.create(dir);
  const front = await ca.leaf("front", "grpc.loom.test", ["DNS:grpc.loom.test"]);
  const backend = await ca.leaf("backend", "backend.test", ["DNS:backend.test"]);
  const up = await startGrpcServer(freePort(), backend);
  const loom = await startLoom(`
listeners:
  - name: g
    address: "127.0.0.1:\${PORT}"
    protocol: grpcs
    tls: { cert_file: "${front.cert}", key_file: "${front.key}" }
upstreams:
  - name: svc
    endpoints: ["127.0.0.1:${up.port}"]
    tls: { ca_file: "${ca.cert}", server_name: backend.test }
  - name: down
    endpoints: ["127.0.0.1:${freePort()}"]
routes:
  - { id: echo, path: "/test.Echo/*", upstream: svc }
  - { id: down, path: "/test.Down/*", upstream: down }
`);
  try {
    assertScenarios(await runPeer(["client", `127.0.0.1:${loom.port}`, "tls", ca.cert, "grpc.loom.test"]));
  } finally {
    await loom.close();
    await up.close();
    Deno.removeSync(dir, { recursive: true });
  }
}, { needs: ["openssl", "python3 grpc"] });
