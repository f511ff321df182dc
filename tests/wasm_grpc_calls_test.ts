/**
 * gRPC calls and streams from a plugin (plugins/test/grpc_calls.c) to a real
 * gRPC server (tests/grpc/peer.py, python3-grpcio) through the running
 * gateway: a unary call, a bidirectional and a server stream, failures
 * (status and message via proxy_get_status), a timeout, cancel/close and the
 * statuses of misuse — in both isolation modes.
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoom } from "./helpers.ts";
import { get, metricValue } from "./gateway_util.ts";
import { startGrpcServer } from "./grpc_util.ts";
import { TestCa } from "./tls_util.ts";
import { PLUGINS } from "./wasm_util.ts";
import { type Echo, startUpstream } from "./upstream.ts";

const WASM = PLUGINS + "grpc_calls.wasm";

function yaml(app: string, grpc: string, isolation: string, tls?: Record<string, string>): string {
  const up = { name: "grpc_up", endpoints: [grpc], ...(tls ? { tls } : {}) };
  return [
    "listeners:",
    '  - name: http\n    address: "127.0.0.1:${PORT}"\n    protocol: http',
    `upstreams: ${JSON.stringify([{ name: "app", endpoints: [app] }, up])}`,
    `routes: ${JSON.stringify([{ id: "g", path: "/g/*", upstream: "app", plugins: ["grpc"] }])}`,
    `plugins: ${JSON.stringify([{ name: "grpc", path: WASM, config: "grpc_up", isolation }])}`,
  ].join("\n") + "\n";
}

for (const isolation of ["timeslice", "inline"]) {
  itest(`plugin gRPC calls and streams reach a real gRPC server (${isolation})`, async () => {
    const app = startUpstream({ echo: "app" });
    const server = await startGrpcServer(freePort());
    const loom = await startLoom(yaml(app.address, `127.0.0.1:${server.port}`, isolation));
    const log = async (headers: Record<string, string>) => {
      const r = await get(loom.url("/g/x"), { headers });
      assert.equal(r.status, 200, r.text);
      return (JSON.parse(r.text) as Echo).headers["x-grpc-log"];
    };
    try {
      // Unary: the one message arrives in proxy_on_grpc_receive (no close callback), metadata reached the server.
      assert.equal(await log({ "x-grpc": "unary", "x-msg": "hi" }), "M:echo:hi;");
      // Concurrent calls keep their tokens apart.
      const many = await Promise.all(
        Array.from({ length: 8 }, (_, i) => log({ "x-grpc": "unary", "x-msg": `m${i}` })),
      );
      assert.deepEqual(many, Array.from({ length: 8 }, (_, i) => `M:echo:m${i};`));
      // A failing call: proxy_on_grpc_close with the status, its message via proxy_get_status.
      assert.equal(await log({ "x-grpc": "unary", "x-method": "Fail" }), "C:5:no such thing;");
      assert.equal(await log({ "x-grpc": "unary", "x-method": "Nope" }), "C:12:Method not found!;");
      // The timeout ends the call with DEADLINE_EXCEEDED (Loom's timer or the server's, whichever is first).
      assert.match(
        await log({ "x-grpc": "unary", "x-method": "Slow", "x-msg": "1", "x-timeout": "100" }),
        /^C:4:(gRPC call timed out|Deadline Exceeded);$/,
      );

      // Bidi stream: initial metadata, one message per message sent, trailers, close OK.
      assert.equal(await log({ "x-grpc": "stream" }), "I:;M:re:one;M:re:two;T:;C:0:;");
      // Server stream with a request ended by grpc_send(end_stream).
      assert.equal(await log({ "x-grpc": "sstream" }), "I:;M:msg-0;M:msg-1;M:msg-2;T:3;C:0:;");
      // A unary method as a stream: the server's initial metadata, and the plugin's metadata it saw.
      assert.equal(
        await log({ "x-grpc": "sstream", "x-method": "Unary" }),
        "I:i1;M:echo:3;T:from-plugin;C:0:;",
      );
      // A failing stream: trailers-only answer, status and message.
      assert.equal(await log({ "x-grpc": "sstream", "x-method": "Fail" }), "T:;C:5:no such thing;");

      // cancel: OK, then NOT_FOUND for the dead token; no callback ever comes for it.
      assert.equal(await log({ "x-grpc": "cancel" }), "cancel:000000010101");
      // An unknown upstream is BAD_ARGUMENT (Envoy's answer); grpc_send on a call token too.
      assert.equal(await log({ "x-grpc": "badup" }), "badup:02");
      assert.equal(await log({ "x-grpc": "sendcall" }), "sendcall:000200");

      // No callback reached the plugin for a cancelled call or stream.
      await new Promise((r) => setTimeout(r, 200)); // let a stray answer arrive if one were coming
      const metrics = (await get(loom.admin("/metrics"))).text;
      assert.equal(metricValue(metrics, "wasm_grpc_stray"), 0, metrics);
      const info = JSON.parse((await get(loom.admin("/plugins"))).text) as { name: string; errors: number }[];
      for (const p of info) assert.equal(p.errors, 0, JSON.stringify(p));
    } finally {
      await loom.close();
      await server.close();
      await app.close();
    }
  }, { needs: ["python3 grpc"] });
}

itest("plugin gRPC call to an unreachable upstream closes with UNAVAILABLE", async () => {
  const app = startUpstream({ echo: "app" });
  const dead = `127.0.0.1:${freePort()}`;
  const loom = await startLoom(yaml(app.address, dead, "timeslice"));
  try {
    const r = await get(loom.url("/g/x"), { headers: { "x-grpc": "unary", "x-msg": "hi" } });
    assert.equal(r.status, 200, r.text);
    assert.match((JSON.parse(r.text) as Echo).headers["x-grpc-log"], /^C:14:gRPC upstream unreachable: /);
  } finally {
    await loom.close();
    await app.close();
  }
});

itest("plugin gRPC calls and streams to a TLS upstream (h2 with ALPN, verified with ca_file)", async () => {
  const dir = Deno.makeTempDirSync();
  const ca = await TestCa.create(dir);
  const backend = await ca.leaf("backend", "backend.test", ["DNS:backend.test"]);
  const app = startUpstream({ echo: "app" });
  const server = await startGrpcServer(freePort(), backend);
  const loom = await startLoom(
    yaml(app.address, `127.0.0.1:${server.port}`, "timeslice", {
      ca_file: ca.cert,
      server_name: "backend.test",
    }),
  );
  try {
    for (
      const [headers, want] of [
        [{ "x-grpc": "unary", "x-msg": "tls" }, "M:echo:tls;"],
        [{ "x-grpc": "stream" }, "I:;M:re:one;M:re:two;T:;C:0:;"],
      ] as const
    ) {
      const r = await get(loom.url("/g/x"), { headers });
      assert.equal(r.status, 200, r.text);
      assert.equal((JSON.parse(r.text) as Echo).headers["x-grpc-log"], want);
    }
  } finally {
    await loom.close();
    await server.close();
    await app.close();
    Deno.removeSync(dir, { recursive: true });
  }
}, { needs: ["openssl", "python3 grpc"] });
