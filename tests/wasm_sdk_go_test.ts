/**
 * A plugin built with the official Proxy-Wasm Go SDK
 * (proxy-wasm/proxy-wasm-go-sdk, unmodified; Go 1.24 GOOS=wasip1
 * -buildmode=c-shared, see plugins/sdk-go/README.md) in the running gateway:
 * a WASI reactor whose Go runtime starts in _initialize. Its PluginContext
 * gets the YAML configuration in OnPluginStart, its HttpContext edits request
 * and response headers, reads properties, answers locally (SendHttpResponse),
 * counts a metric and rewrites the buffered request body.
 */
import assert from "node:assert/strict";
import { itest, startLoom } from "./helpers.ts";
import { get, metricValue } from "./gateway_util.ts";
import { type Echoed, jsonEcho, pluginYaml } from "./wasm_util.ts";

const WASM = new URL("../plugins/sdk-go/http_filter.wasm", import.meta.url).pathname;

itest("go sdk plugin: configuration, header edits, properties, local response, metric", async () => {
  const app = jsonEcho();
  const config = { greeting: "from-yaml", n: 2 };
  const loom = await startLoom(pluginYaml(app, [
    { name: "go", path: WASM, root_id: "loom_go", phase: "on_response_headers", config },
    { name: "go-text", path: WASM, root_id: "loom_go", phase: "on_response_headers", config: "plain text" },
  ], [["go", ["go"]], ["got", ["go-text"]]]));
  try {
    for (let i = 0; i < 3; i++) {
      const r = await get(loom.url("/go/x?q=1"), { headers: { "x-remove-me": "1", "x-go-config": "old" } });
      assert.equal(r.status, 200, r.text);
      const e = JSON.parse(r.text) as Echoed;
      // Request side (AddHttpRequestHeader / ReplaceHttpRequestHeader / RemoveHttpRequestHeader).
      assert.equal(e.headers["x-go-sdk"], "proxy-wasm-go-sdk");
      assert.equal(e.headers["x-go-config"], JSON.stringify(config)); // a mapping is passed as JSON
      assert.equal(e.headers["x-remove-me"], undefined);
      // Properties read with proxywasm.GetProperty (NUL-separated paths).
      assert.equal(e.headers["x-go-path"], "/go/x?q=1");
      assert.equal(e.headers["x-go-root"], "loom_go");
      // Response side.
      assert.equal(r.headers.get("x-go-config"), JSON.stringify(config));
      assert.equal(r.headers.get("x-go-status"), "200"); // response.code, 8-byte integer
      assert.equal(r.headers.get("x-upstream-secret"), null);
    }
    const t = await get(loom.url("/got/x"));
    assert.equal(t.status, 200, t.text);
    assert.equal((JSON.parse(t.text) as Echoed).headers["x-go-config"], "plain text");
    assert.equal(t.headers.get("x-go-config"), "plain text");

    // SendHttpResponse (proxy_send_local_response): the upstream never sees the request.
    const before = app.seen.length;
    const d = await get(loom.url("/go/deny"));
    assert.equal(d.status, 403);
    assert.equal(d.text, "denied by the Go SDK plugin\n");
    assert.equal(d.headers.get("x-go-local"), "1");
    assert.equal(app.seen.length, before);

    const metrics = (await get(loom.admin("/metrics"))).text;
    assert.ok(metricValue(metrics, "wasm_go_requests") >= 4, metrics);
    const info = JSON.parse((await get(loom.admin("/plugins"))).text) as { name: string; errors: number }[];
    for (const p of info) assert.equal(p.errors, 0, JSON.stringify(p));
  } finally {
    await loom.close();
    await app.close();
  }
});

itest("go sdk plugin: buffered request body rewritten with ReplaceHttpRequestBody", async () => {
  const app = jsonEcho();
  const loom = await startLoom(pluginYaml(app, [
    { name: "go-body", path: WASM, root_id: "loom_go", phase: "on_request_body", config: "body" },
  ], [["b", ["go-body"]]]));
  try {
    const r = await get(loom.url("/b/x"), { method: "POST", body: "hello wasm" });
    assert.equal(r.status, 200, r.text);
    const e = JSON.parse(r.text) as Echoed;
    assert.equal(e.body, "go[10]:hello wasm");
    assert.equal(e.headers["content-length"], String("go[10]:hello wasm".length));
    assert.equal(e.headers["x-go-config"], "body");
    // A streamed (chunked) body is buffered (types.ActionPause) until its end.
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
    assert.equal((JSON.parse(s.text) as Echoed).body, "go[13]:one,two,three");
  } finally {
    await loom.close();
    await app.close();
  }
});

itest("go sdk plugin: many large bodies (the Go runtime's GC runs inside callbacks)", async () => {
  const app = jsonEcho();
  const loom = await startLoom(pluginYaml(app, [
    { name: "go-gc", path: WASM, root_id: "loom_go", phase: "on_request_body", config: "gc" },
  ], [["gc", ["go-gc"]]]));
  try {
    // ~40 MiB through the Go heap (GetHttpRequestBody copies, the rewritten
    // body, string conversions): several GC cycles, all inside exports.
    const chunk = "0123456789abcdef".repeat(16 * 1024); // 256 KiB
    for (let i = 0; i < 40; i++) {
      const body = `${i}:` + chunk;
      const r = await get(loom.url(`/gc/${i}`), { method: "POST", body });
      assert.equal(r.status, 200, r.text.slice(0, 200));
      const e = JSON.parse(r.text) as Echoed;
      assert.equal(e.body, `go[${body.length}]:${body}`);
      assert.equal(e.headers["x-go-sdk"], "proxy-wasm-go-sdk");
    }
    const info = JSON.parse((await get(loom.admin("/plugins"))).text) as { name: string; errors: number }[];
    for (const p of info) assert.equal(p.errors, 0, JSON.stringify(p));
  } finally {
    await loom.close();
    await app.close();
  }
});

itest("go sdk plugin: OnPluginStartStatusFailed marks the plugin failed", async () => {
  const app = jsonEcho();
  const loom = await startLoom(pluginYaml(app, [
    { name: "go-bad", path: WASM, root_id: "loom_go", phase: "on_request_headers", config: "reject" },
  ], [["bad", ["go-bad"]]]));
  try {
    const r = await get(loom.url("/bad/x"));
    assert.equal(r.status, 500, r.text); // fail_closed: {"error":"plugin failed"}
    assert.equal(app.seen.length, 0);
  } finally {
    await loom.close();
    await app.close();
  }
});
