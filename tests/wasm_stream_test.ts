/**
 * Streamed response bodies through Proxy-Wasm plugins: on_response_body per
 * chunk with end_of_stream (bytes reach the client before the upstream sent
 * the rest), StopIterationAndBuffer with cumulative sizes, and
 * on_response_trailers for upstream trailers.
 */
import assert from "node:assert/strict";
import { itest, startLoom } from "./helpers.ts";
import { get, metricValue } from "./gateway_util.ts";
import { deferred, fieldValues, RawClient } from "./http1_util.ts";
import { PLUGINS } from "./wasm_util.ts";
import { startUpstream } from "./upstream.ts";

const dec = new TextDecoder();

/** Upstream answering chunked "hello" … (until released) " world", with a trailer on /t/. */
function chunkedUpstream() {
  const gates: { resolve(): void }[] = [];
  const up = startUpstream({
    raw: async (c) => {
      for (;;) {
        const req = await c.nextRequest();
        if (req === null) return;
        const gate = deferred();
        gates.push(gate);
        await c.write(
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        );
        await gate.promise;
        const trailer = req.start.includes(" /t/") ? "X-Up: 1\r\n" : "";
        await c.write(`6\r\n world\r\n0\r\n${trailer}\r\n`);
      }
    },
  });
  return { up, release: () => gates.shift()?.resolve() };
}

function yaml(address: string): string {
  return [
    "listeners:",
    '  - name: http\n    address: "127.0.0.1:${PORT}"\n    protocol: http',
    `upstreams: [{ name: app, endpoints: ["${address}"] }]`,
    "routes:",
    "  - { id: s, path: /s/*, upstream: app, plugins: [stream] }",
    "  - { id: t, path: /t/*, upstream: app, plugins: [stream] }",
    "  - { id: b, path: /b/*, upstream: app, plugins: [buffer] }",
    "plugins:",
    `  - { name: stream, path: ${PLUGINS}stream_body.wasm, phase: on_response_body }`,
    `  - { name: buffer, path: ${PLUGINS}stream_body.wasm, phase: on_response_body, config: B }`,
  ].join("\n") + "\n";
}

async function metrics(loom: { admin(p: string): string }): Promise<string> {
  return (await get(loom.admin("/metrics"))).text;
}

itest("wasm streaming: on_response_body per chunk, bytes flow before the upstream finished", async () => {
  const { up, release } = chunkedUpstream();
  const loom = await startLoom(yaml(up.address));
  try {
    const c = await RawClient.connect(loom.port);
    try {
      await c.write("GET /s/x HTTP/1.1\r\nHost: a\r\n\r\n");
      // The first chunk, rewritten by the plugin, arrives while the upstream still holds the rest.
      await c.until((b) => b.includes("HELLO"));
      release();
      const res = await c.response();
      assert.equal(res.status, 200);
      assert.equal(dec.decode(res.body), "HELLO WORLD");
      assert.deepEqual(fieldValues(res, "content-length"), []);
    } finally {
      c.close();
    }
    const m = await metrics(loom);
    // "hello" (eos=0), " world" (eos=0), then the end of the chunked body (0 bytes, eos=1).
    assert.equal(metricValue(m, "wasm_stream_body_calls"), 3, m);
    assert.equal(metricValue(m, "wasm_stream_body_eos"), 1);
    assert.equal(metricValue(m, "wasm_stream_body_bytes"), 11);
    assert.equal(metricValue(m, "wasm_stream_trailers"), 0);
  } finally {
    await loom.close();
    up.close();
  }
});

itest("wasm streaming: StopIterationAndBuffer gets cumulative sizes; one exact-length answer", async () => {
  const { up, release } = chunkedUpstream();
  const loom = await startLoom(yaml(up.address));
  try {
    const c = await RawClient.connect(loom.port);
    try {
      await c.write("GET /b/x HTTP/1.1\r\nHost: a\r\n\r\n");
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(c.buf, "", "nothing is sent while the plugin buffers");
      release();
      const res = await c.response();
      assert.equal(dec.decode(res.body), "HELLO WORLD");
      assert.deepEqual(fieldValues(res, "content-length"), ["11"]);
    } finally {
      c.close();
    }
    const m = await metrics(loom);
    // 5 (paused), 11 (cumulative, paused), 11 at end_of_stream.
    assert.equal(metricValue(m, "wasm_stream_body_calls"), 3, m);
    assert.equal(metricValue(m, "wasm_stream_body_bytes"), 27);
    assert.equal(metricValue(m, "wasm_stream_body_eos"), 1);
  } finally {
    await loom.close();
    up.close();
  }
});

itest("wasm streaming: upstream trailers reach on_response_trailers, which can add one", async () => {
  const { up, release } = chunkedUpstream();
  const loom = await startLoom(yaml(up.address));
  try {
    const c = await RawClient.connect(loom.port);
    try {
      await c.write("GET /t/x HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n");
      await c.until((b) => b.includes("HELLO"));
      release();
      const res = await c.response();
      assert.equal(dec.decode(res.body), "HELLO WORLD");
      const trailers = Object.fromEntries(res.trailers.map(([k, v]) => [k.toLowerCase(), v]));
      assert.equal(trailers["x-up"], "1");
      assert.equal(trailers["x-wasm-trailer"], "seen");
    } finally {
      c.close();
    }
    const m = await metrics(loom);
    assert.equal(metricValue(m, "wasm_stream_trailers"), 1, m);
    // With trailers the body never carries end_of_stream (as in Envoy).
    assert.equal(metricValue(m, "wasm_stream_body_eos"), 0);
  } finally {
    await loom.close();
    up.close();
  }
});
