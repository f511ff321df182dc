/**
 * `workers: 2` with HTTP/2 listeners (grpc, grpcs, https offering h2; Loom's
 * own HTTP/2 on Deno.listen / node:tls): every worker isolate opens its own
 * listener on the shared port (SO_REUSEPORT), so start-up succeeds and calls
 * on many fresh connections (spread over both workers by the kernel) all
 * succeed. Loom runs as a child process, with its workers.
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoomProcess } from "./helpers.ts";
import { runPeer, startGrpcServer } from "./grpc_util.ts";
import { curl, TestCa } from "./tls_util.ts";

itest("workers: 2 with grpc, grpcs and https+h2 listeners: fresh connections all succeed", async () => {
  const dir = Deno.makeTempDirSync();
  const ca = await TestCa.create(dir);
  const front = await ca.leaf("front", "loom.test", ["DNS:loom.test"]);
  const up = await startGrpcServer(freePort());
  const grpcsPort = freePort();
  const httpsPort = freePort();
  const loom = await startLoomProcess(`
workers: 2
listeners:
  - name: g
    address: "127.0.0.1:\${PORT}"
    protocol: grpc
  - name: gs
    address: "127.0.0.1:${grpcsPort}"
    protocol: grpcs
    tls: { cert_file: "${front.cert}", key_file: "${front.key}" }
  - name: web
    address: "127.0.0.1:${httpsPort}"
    protocol: https
    tls: { cert_file: "${front.cert}", key_file: "${front.key}", alpn: [h2, http/1.1] }
upstreams:
  - name: svc
    endpoints: ["127.0.0.1:${up.port}"]
routes:
  - { id: echo, path: "/test.Echo/*", upstream: svc }
  - { id: info, path: /info, redirect: { url: "https://loom.test/", code: 302 } }
`);
  try {
    const info = await fetch(loom.admin("/info"));
    assert.equal((await info.json()).workers, 2);
    const [plain, secure] = await Promise.all([
      runPeer(["fresh", `127.0.0.1:${loom.port}`, "40"]),
      runPeer(["fresh", `127.0.0.1:${grpcsPort}`, "20", "tls", ca.cert, "loom.test"]),
    ]);
    assert.deepEqual(plain, { ok: 40, errors: [] }, loom.log());
    assert.deepEqual(secure, { ok: 20, errors: [] }, loom.log());
    // Each curl run is a new TLS connection negotiating h2.
    const url = `https://loom.test:${httpsPort}/info`;
    const args = ["--cacert", ca.cert, "--resolve", `loom.test:${httpsPort}:127.0.0.1`, "-o", "/dev/null"];
    for (let batch = 0; batch < 3; batch++) {
      const runs = await Promise.all(
        Array.from({ length: 10 }, () => curl([...args, "-w", "%{http_code} %{http_version}", url])),
      );
      for (const r of runs) assert.equal(r.stdout, "302 2", `${r.stderr}\n${loom.log()}`);
    }
  } finally {
    await loom.close();
    await up.close();
    Deno.removeSync(dir, { recursive: true });
  }
}, { needs: ["openssl", "python3 grpc", "curl"] });
