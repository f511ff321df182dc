/**
 * Streamed request bodies through Proxy-Wasm plugins, as in Envoy:
 * on_request_body per client chunk with end_of_stream (bytes reach the
 * upstream before the client sent the rest), StopIterationAndBuffer with
 * cumulative sizes, on_request_trailers, the 413 buffer limit, and no body
 * handling for a plugin without proxy_on_request_body.
 */
import assert from "node:assert/strict";
import { itest, startLoom, waitFor } from "./helpers.ts";
import { get, metricValue } from "./gateway_util.ts";
import { fieldValues, RawClient } from "./http1_util.ts";
import { PLUGINS } from "./wasm_util.ts";
import { type RawUpstream, startUpstream } from "./upstream.ts";

const dec = new TextDecoder();
const ADD_HEADERS = new URL("../plugins/add-headers/add_headers.wasm", import.meta.url).pathname;

function yaml(address: string): string {
  return [
    "listeners:",
    '  - name: http\n    address: "127.0.0.1:${PORT}"\n    protocol: http',
    `upstreams: [{ name: app, endpoints: ["${address}"] }]`,
    "routes:",
    "  - { id: s, path: /s/*, upstream: app, plugins: [stream] }",
    "  - { id: b, path: /b/*, upstream: app, plugins: [buffer] }",
    "  - { id: n, path: /n/*, upstream: app, plugins: [nobody] }",
    "  - { id: l, path: /l/*, upstream: app, plugins: [deny] }",
    "plugins:",
    `  - { name: stream, path: ${PLUGINS}stream_body.wasm, phase: on_request_body }`,
    `  - { name: buffer, path: ${PLUGINS}stream_body.wasm, phase: on_request_body, config: B }`,
    `  - { name: deny, path: ${PLUGINS}stream_body.wasm, phase: on_request_body, config: L }`,
    `  - { name: nobody, path: ${ADD_HEADERS}, phase: on_request_body, config: "+x-a: 1" }`,
  ].join("\n") + "\n";
}

async function metrics(loom: { admin(p: string): string }): Promise<string> {
  return (await get(loom.admin("/metrics"))).text;
}

interface Rig {
  up: RawUpstream;
  loom: Awaited<ReturnType<typeof startLoom>>;
  c: RawClient;
}

/** Runs `body` with a gateway on the routes above, a raw upstream and one raw client connection. */
async function withRig(body: (rig: Rig) => Promise<void>): Promise<void> {
  const up = startUpstream({ raw: true });
  const loom = await startLoom(yaml(up.address));
  try {
    const c = await RawClient.connect(loom.port);
    try {
      await body({ up, loom, c });
    } finally {
      c.close();
    }
  } finally {
    await loom.close();
    up.close();
  }
}

itest(
  "wasm request streaming: on_request_body per chunk, bytes reach the upstream early",
  () =>
    withRig(async ({ up, loom, c }) => {
      await c.write("POST /s/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
      // The first chunk, rewritten by the plugin, is upstream while the client still holds the rest.
      await waitFor("first chunk upstream", () => up.raw[0]?.includes("HELLO") ? true : undefined);
      await c.write("6\r\n world\r\n0\r\n\r\n");
      const res = await c.response();
      assert.equal(res.status, 200);
      const req = up.requests[0];
      assert.equal(dec.decode(req.body), "HELLO WORLD");
      assert.deepEqual(fieldValues(req, "content-length"), []);
      assert.deepEqual(fieldValues(req, "transfer-encoding"), ["chunked"]);
      const m = await metrics(loom);
      // "hello" (eos=0), " world" (eos=0), then the end of the chunked body (0 bytes, eos=1).
      assert.equal(metricValue(m, "wasm_req_body_calls"), 3, m);
      assert.equal(metricValue(m, "wasm_req_body_eos"), 1);
      assert.equal(metricValue(m, "wasm_req_body_bytes"), 11);
    }),
);

itest(
  "wasm request streaming: StopIterationAndBuffer gets cumulative sizes; exact length upstream",
  () =>
    withRig(async ({ up, loom, c }) => {
      await c.write("POST /b/x HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello");
      await new Promise((r) => setTimeout(r, 80));
      assert.equal(up.raw[0] ?? "", "", "nothing goes upstream while the plugin buffers");
      await c.write(" world");
      const res = await c.response();
      assert.equal(res.status, 200);
      const req = up.requests[0];
      assert.equal(dec.decode(req.body), "HELLO WORLD");
      assert.deepEqual(fieldValues(req, "content-length"), ["11"]);
      const m = await metrics(loom);
      // 5 (paused), then 11 cumulative with end_of_stream (the length tells the last chunk).
      assert.equal(metricValue(m, "wasm_req_body_calls"), 2, m);
      assert.equal(metricValue(m, "wasm_req_body_bytes"), 16);
      assert.equal(metricValue(m, "wasm_req_body_eos"), 1);
    }),
);

itest(
  "wasm request streaming: client trailers reach on_request_trailers, body without end_of_stream",
  () =>
    withRig(async ({ up, loom, c }) => {
      await c.write(
        "POST /s/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
      );
      const res = await c.response();
      assert.equal(res.status, 200);
      assert.equal(dec.decode(up.requests[0].body), "HELLO");
      const m = await metrics(loom);
      assert.equal(metricValue(m, "wasm_req_trailers"), 1, m);
      assert.equal(metricValue(m, "wasm_req_body_eos"), 0);
    }),
);

itest(
  "wasm request streaming: a plugin buffering past the limit gets the request a 413",
  () =>
    withRig(async ({ up, c }) => {
      let writing: Promise<void> = Promise.resolve();
      try {
        const size = 17 * 1024 * 1024;
        await c.write(`POST /b/x HTTP/1.1\r\nHost: a\r\nContent-Length: ${size}\r\n\r\n`);
        const chunk = new Uint8Array(256 * 1024).fill(0x61);
        // The gateway answers (and closes) before everything was sent: write in the background.
        writing = (async () => {
          for (let sent = 0; sent < size; sent += chunk.length) await c.write(chunk);
        })().catch(() => {});
        const res = await c.response({ ms: 10000 });
        assert.equal(res.status, 413);
      } finally {
        c.close();
        await writing;
      }
      assert.equal(up.requests.length, 0, "nothing reached the upstream");
    }),
);

itest(
  "wasm request streaming: a local response after part of the body went upstream",
  () =>
    withRig(async ({ up, c }) => {
      await c.write("POST /l/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
      await waitFor("first chunk upstream", () => up.raw[0]?.includes("HELLO") ? true : undefined);
      await c.write("0\r\n\r\n");
      const res = await c.response();
      // The plugin's answer, not the gateway's error for the aborted upload.
      assert.equal(res.status, 403);
      assert.equal(dec.decode(res.body), "denied");
      await waitFor("upstream connection closed", () => up.ended[0] ? true : undefined);
      assert.equal(up.requests.length, 0, "the upstream never got a complete request");
    }),
);

itest(
  "wasm request streaming: a plugin without proxy_on_request_body leaves the body alone",
  () =>
    withRig(async ({ up, c }) => {
      await c.write("POST /n/x HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world");
      assert.equal((await c.response()).status, 200);
      const req = up.requests[0];
      assert.equal(dec.decode(req.body), "hello world");
      assert.deepEqual(fieldValues(req, "content-length"), ["11"]);
      assert.deepEqual(fieldValues(req, "x-a"), ["1"]);
    }),
);
