/**
 * A plugin built with the official Proxy-Wasm C++ SDK
 * (proxy-wasm/proxy-wasm-cpp-sdk, unmodified; see plugins/sdk-cpp/README.md)
 * in the running gateway: its RootContext gets the YAML configuration in
 * on_configure, its Context edits request and response headers, reads
 * properties, answers locally, counts a metric and rewrites the request body.
 */
import assert from "node:assert/strict";
import { itest, startLoom } from "./helpers.ts";
import { get, metricValue } from "./gateway_util.ts";
import { type Echoed, jsonEcho, pluginYaml } from "./wasm_util.ts";

const WASM = new URL("../plugins/sdk-cpp/http_filter.wasm", import.meta.url).pathname;

itest("c++ sdk plugin: configuration, header edits, properties, local response, metric", async () => {
  const app = jsonEcho();
  const config = { greeting: "from-yaml", n: 2 };
  const loom = await startLoom(pluginYaml(app, [
    { name: "cpp", path: WASM, root_id: "loom_cpp", phase: "on_response_headers", config },
    { name: "cpp-text", path: WASM, root_id: "loom_cpp", phase: "on_response_headers", config: "plain text" },
  ], [["cpp", ["cpp"]], ["cppt", ["cpp-text"]]]));
  try {
    for (let i = 0; i < 3; i++) {
      const r = await get(loom.url("/cpp/x?q=1"), { headers: { "x-remove-me": "1", "x-cpp-config": "old" } });
      assert.equal(r.status, 200, r.text);
      const e = JSON.parse(r.text) as Echoed;
      // Request side (SDK addRequestHeader / replaceRequestHeader / removeRequestHeader).
      assert.equal(e.headers["x-cpp-sdk"], "proxy-wasm-cpp-sdk");
      assert.equal(e.headers["x-cpp-config"], JSON.stringify(config)); // a mapping is passed as JSON
      assert.equal(e.headers["x-remove-me"], undefined);
      // Properties read with the SDK's getValue (NUL-separated paths).
      assert.equal(e.headers["x-cpp-path"], "/cpp/x?q=1");
      assert.equal(e.headers["x-cpp-root"], "loom_cpp");
      // Response side.
      assert.equal(r.headers.get("x-cpp-config"), JSON.stringify(config));
      assert.equal(r.headers.get("x-cpp-status"), "200"); // response.code, 8-byte integer
      assert.equal(r.headers.get("x-upstream-secret"), null);
    }
    const t = await get(loom.url("/cppt/x"));
    assert.equal(t.status, 200, t.text);
    assert.equal((JSON.parse(t.text) as Echoed).headers["x-cpp-config"], "plain text");
    assert.equal(t.headers.get("x-cpp-config"), "plain text");

    // sendLocalResponse: the upstream never sees the request.
    const before = app.seen.length;
    const d = await get(loom.url("/cpp/deny"));
    assert.equal(d.status, 403);
    assert.equal(d.text, "denied by the C++ SDK plugin\n");
    assert.equal(d.headers.get("x-cpp-local"), "1");
    assert.equal(app.seen.length, before);

    const metrics = (await get(loom.admin("/metrics"))).text;
    assert.ok(metricValue(metrics, "wasm_cpp_requests") >= 4, metrics);
    const info = JSON.parse((await get(loom.admin("/plugins"))).text) as { name: string; errors: number }[];
    for (const p of info) assert.equal(p.errors, 0, JSON.stringify(p));
  } finally {
    await loom.close();
    await app.close();
  }
});

itest("c++ sdk plugin: buffered request body rewritten with the SDK's setBuffer", async () => {
  const app = jsonEcho();
  const loom = await startLoom(pluginYaml(app, [
    { name: "cpp-body", path: WASM, root_id: "loom_cpp", phase: "on_request_body", config: "body" },
  ], [["b", ["cpp-body"]]]));
  try {
    const r = await get(loom.url("/b/x"), { method: "POST", body: "hello wasm" });
    assert.equal(r.status, 200, r.text);
    const e = JSON.parse(r.text) as Echoed;
    assert.equal(e.body, "cpp[10]:hello wasm");
    assert.equal(e.headers["content-length"], String("cpp[10]:hello wasm".length));
    assert.equal(e.headers["x-cpp-config"], "body");
    // A streamed (chunked) body is buffered by StopIterationAndBuffer until its end.
    const chunks = ["one,", "two,", "three"];
    const stream = new ReadableStream<Uint8Array>({
      async pull(c) {
        const next = chunks.shift();
        if (next === undefined) return c.close();
        await new Promise((res) => setTimeout(res, 10));
        c.enqueue(new TextEncoder().encode(next));
      },
    });
    const s = await get(loom.url("/b/y"), { method: "POST", body: stream });
    assert.equal(s.status, 200, s.text);
    assert.equal((JSON.parse(s.text) as Echoed).body, "cpp[13]:one,two,three");
  } finally {
    await loom.close();
    await app.close();
  }
});

itest("c++ sdk plugin: on_configure returning false marks the plugin failed", async () => {
  const app = jsonEcho();
  const loom = await startLoom(pluginYaml(app, [
    { name: "cpp-bad", path: WASM, root_id: "loom_cpp", phase: "on_request_headers", config: "reject" },
  ], [["bad", ["cpp-bad"]]]));
  try {
    const r = await get(loom.url("/bad/x"));
    assert.equal(r.status, 500, r.text); // fail_closed: {"error":"plugin failed"}
    assert.equal(app.seen.length, 0);
  } finally {
    await loom.close();
    await app.close();
  }
});
