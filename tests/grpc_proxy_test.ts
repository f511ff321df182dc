import assert from "node:assert/strict";
import { freePort, itest, startLoomProcess } from "./helpers.ts";
import { assertScenarios, runPeer, startGrpcServer } from "./grpc_util.ts";
import { metricValue } from "./gateway_util.ts";

itest(
  "grpc listener: four call types, trailers, -bin metadata, errors, deadlines (python grpcio both ends)",
  async () => {
    const up = await startGrpcServer(freePort());
    const dead = freePort();
    const logPath = Deno.makeTempFileSync({ suffix: ".log" });
    const loom = await startLoomProcess(`
access_log:
  enabled: true
  path: "${logPath}"
listeners:
  - name: g
    address: "127.0.0.1:\${PORT}"
    protocol: grpc
upstreams:
  - name: svc
    endpoints: ["127.0.0.1:${up.port}"]
  - name: down
    endpoints: ["127.0.0.1:${dead}"]
routes:
  - id: echo
    path: /test.Echo/{method}
    upstream: svc
  - id: down
    path: /test.Down/*
    upstream: down
`);
    try {
      assertScenarios(await runPeer(["client", `127.0.0.1:${loom.port}`]));
      // Every answer was HTTP 200; the grpc-status is what tells them apart.
      const metrics = await (await fetch(loom.admin("/metrics"))).text();
      const grpc = (route: string, grpc_status: string) =>
        metricValue(metrics, "loom_grpc_responses_total", { route, grpc_status });
      assert.ok(grpc("echo", "0") >= 5, metrics); // unary, 3 streaming kinds, deadline echo
      assert.equal(grpc("echo", "5"), 1, "NOT_FOUND from the upstream (trailers-only)");
      assert.equal(grpc("", "12"), 1, "UNIMPLEMENTED made by the gateway (no route)");
      assert.equal(grpc("down", "14"), 1, "UNAVAILABLE made by the gateway (upstream down)");
      await loom.close(); // flushes the access log
      const lines = Deno.readTextFileSync(logPath).trim().split("\n").map((l) => JSON.parse(l));
      const nope = lines.find((l) => l.path === "/test.Nope/Missing");
      assert.equal(nope?.grpc_status, "12", JSON.stringify(nope));
      assert.equal(nope?.status, 200);
      assert.equal(lines.find((l) => l.path === "/test.Echo/Fail")?.grpc_status, "5");
    } finally {
      await loom.close();
      await up.close();
      Deno.removeSync(logPath);
    }
  },
  { needs: ["python3 grpc"] },
);

itest(
  "grpc listener: one channel carries many concurrent unary calls without an error",
  async () => {
    const up = await startGrpcServer(freePort());
    const loom = await startLoomProcess(`
listeners:
  - name: g
    address: "127.0.0.1:\${PORT}"
    protocol: grpc
upstreams:
  - name: svc
    endpoints: ["127.0.0.1:${up.port}"]
routes:
  - id: echo
    path: /test.Echo/*
    upstream: svc
`);
    try {
      // ~2 s of unary calls on one channel (one HTTP/2 connection) from 4 threads.
      const r = await runPeer(["bench", `127.0.0.1:${loom.port}`, "2", "4"]);
      assert.ok((r.calls as number) > 300, JSON.stringify(r));
      assert.equal(r.errors, 0, JSON.stringify(r));
    } finally {
      await loom.close();
      await up.close();
    }
  },
  { needs: ["python3 grpc"] },
);
