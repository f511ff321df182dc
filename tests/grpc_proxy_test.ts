import assert from "node:assert/strict";
import { freePort, itest, startLoomProcess } from "./helpers.ts";
import { assertScenarios, runPeer, startGrpcServer } from "./grpc_util.ts";

itest(
  "grpc listener: four call types, trailers, -bin metadata, errors, deadlines (python grpcio both ends)",
  async () => {
    const up = await startGrpcServer(freePort());
    const dead = freePort();
    const loom = await startLoomProcess(`
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
    } finally {
      await loom.close();
      await up.close();
    }
  },
);

itest(
  "grpc listener: a channel keeps working past the per-connection stream cap (GOAWAY + reconnect)",
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
      // ~2 s of unary calls on one channel from 4 threads: well past 100 streams per connection.
      const r = await runPeer(["bench", `127.0.0.1:${loom.port}`, "2", "4"]);
      assert.ok((r.calls as number) > 300, JSON.stringify(r));
      // A call racing the GOAWAY can fail as UNAVAILABLE (seen once in ~1500 calls under CI load).
      assert.ok((r.errors as number) <= Math.max(1, (r.calls as number) / 200), JSON.stringify(r));
    } finally {
      await loom.close();
      await up.close();
    }
  },
);
