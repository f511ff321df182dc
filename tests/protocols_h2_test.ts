/**
 * HTTP/2 at the edge with nghttp2's own tools: nghttp and h2load through the
 * h2c listener (Deno.listen) and a TLS listener offering ALPN h2 (node:tls),
 * both on Loom's own HTTP/2 stack (src/http2),
 * the header-list limit, native gRPC on both listeners, and the gRPC health
 * check used for upstream health checks.
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoomProcess } from "./helpers.ts";
import { startUpstream } from "./upstream.ts";
import { TestCa } from "./tls_util.ts";
import { assertScenarios, runPeer, startGrpcServer } from "./grpc_util.ts";
import { grpcProbe } from "../src/upstream/health_check.ts";

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  const child = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).spawn();
  const t = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const o = await child.output();
  clearTimeout(t);
  return { ok: o.success, out: new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr) };
}

itest("h2c and h2 (ALPN) listeners: nghttp and h2load succeed; header list limit enforced", async () => {
  const dir = Deno.makeTempDirSync();
  const ca = await TestCa.create(dir);
  const cert = await ca.leaf("server", "localhost", ["DNS:localhost", "IP:127.0.0.1"]);
  const up = startUpstream((req) => new Response(`ok ${new URL(req.url).pathname}`));
  const tlsPort = freePort();
  const loom = await startLoomProcess(`
listeners:
  - name: h2c
    address: "127.0.0.1:\${PORT}"
    protocol: h2c
  - name: h2
    address: "127.0.0.1:${tlsPort}"
    protocol: https
    tls: { cert_file: "${cert.cert}", key_file: "${cert.key}", alpn: [h2, http/1.1] }
    http2: { max_concurrent_streams: 50, max_header_list_size: 16KB }
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - { id: all, path: "/*", upstream: up }
`);
  try {
    for (const url of [loom.url("/n"), `https://127.0.0.1:${tlsPort}/n`]) {
      const n = await run("nghttp", ["-v", url]);
      assert.ok(n.ok, n.out);
      assert.match(n.out, /recv \(stream_id=\d+\) :status: 200/);
      assert.match(n.out, /ok \/n/);
      const h = await run("h2load", ["-n", "200", "-c", "4", "-m", "5", url]);
      assert.ok(h.ok, h.out);
      assert.match(h.out, /200 succeeded, 0 failed, 0 errored/, h.out);
    }
    // The TLS listener advertises our limits and refuses a header list above 16 KiB.
    const settings = await run("nghttp", ["-v", `https://127.0.0.1:${tlsPort}/n`]);
    assert.match(settings.out, /SETTINGS_MAX_CONCURRENT_STREAMS\(0x03\):50/);
    const big = await run("nghttp", [
      "-v",
      "-t",
      "5",
      "-H",
      `x-big: ${"a".repeat(20_000)}`,
      `https://127.0.0.1:${tlsPort}/n`,
    ]);
    // The header list is still decoded and the listener answers 431 itself (never served upstream).
    assert.match(big.out, /recv \(stream_id=\d+\) :status: 431/, big.out);
    assert.doesNotMatch(big.out, /:status: 200/);
  } finally {
    await loom.close();
    await up.close();
    Deno.removeSync(dir, { recursive: true });
  }
}, { needs: ["openssl", "nghttp", "h2load"] });

itest(
  "gRPC on a TLS listener offering h2 and on an h2c listener: all call types, trailers, statuses",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const cert = await ca.leaf("server", "api.loom.test", ["DNS:api.loom.test"]);
    const up = await startGrpcServer(freePort());
    const h2cPort = freePort();
    const loom = await startLoomProcess(`
listeners:
  - name: tls
    address: "127.0.0.1:\${PORT}"
    protocol: https
    tls: { cert_file: "${cert.cert}", key_file: "${cert.key}", alpn: [h2, http/1.1] }
  - name: h2c
    address: "127.0.0.1:${h2cPort}"
    protocol: h2c
upstreams:
  - name: svc
    endpoints: ["127.0.0.1:${up.port}"]
  - name: down
    endpoints: ["127.0.0.1:${freePort()}"]
routes:
  - { id: echo, path: "/test.Echo/*", upstream: svc }
  - { id: down, path: "/test.Down/*", upstream: down }
`);
    try {
      assertScenarios(await runPeer(["client", `127.0.0.1:${loom.port}`, "tls", ca.cert, "api.loom.test"]));
      // Loom's own HTTP/2 sends trailers on every HTTP/2 listener, so h2c carries gRPC too.
      assertScenarios(await runPeer(["client", `127.0.0.1:${h2cPort}`]));
    } finally {
      await loom.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl", "python3 grpc"] },
);

itest("gRPC health probe: SERVING, NOT_SERVING, unreachable, timeout", async () => {
  const up = await startGrpcServer(freePort());
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const check = (port: number, service: string, timeout: number) =>
    grpcProbe({ hostname: "127.0.0.1", port, address: `127.0.0.1:${port}` }, service, timeout);
  try {
    assert.equal(await check(up.port, "", 2000), true);
    assert.equal(await check(up.port, "test.Echo", 2000), true);
    assert.equal(await check(up.port, "down", 2000), false);
    assert.equal(await check(freePort(), "", 2000), false);
    // Accepts but never speaks HTTP/2: the timeout decides.
    const t0 = Date.now();
    assert.equal(await check((silent.addr as Deno.NetAddr).port, "", 300), false);
    assert.ok(Date.now() - t0 < 2000);
  } finally {
    silent.close();
    await up.close();
  }
}, { needs: ["python3 grpc"] });
