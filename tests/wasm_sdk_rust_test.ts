/**
 * A plugin built with the official Proxy-Wasm Rust SDK (crate proxy-wasm,
 * proxy-wasm/proxy-wasm-rust-sdk; see plugins/sdk-rust/README.md) in the
 * running gateway: its RootContext gets the YAML configuration in
 * on_configure, its HttpContext edits request and response headers, reads
 * properties, answers locally, counts a metric and rewrites the request body.
 */
import assert from "node:assert/strict";
import { itest, startLoom } from "./helpers.ts";
import { get, metricValue } from "./gateway_util.ts";
import { type Echoed, jsonEcho, pluginYaml } from "./wasm_util.ts";

const WASM = new URL("../plugins/sdk-rust/http_filter.wasm", import.meta.url).pathname;
/** The build is not committed (plugins/sdk-rust/README.md): these tests run once it has been built. */
const ignore = !existsSync(WASM);

function existsSync(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

Deno.test("rust sdk plugin: the module imports only Proxy-Wasm host functions", { ignore }, () => {
  const mod = new WebAssembly.Module(Deno.readFileSync(WASM));
  const imports = WebAssembly.Module.imports(mod).map((i) => `${i.module}.${i.name}`);
  assert.ok(imports.length > 0);
  for (const name of imports) assert.match(name, /^env\.proxy_[a-z_]+$/);
  const exports = WebAssembly.Module.exports(mod).map((e) => e.name);
  for (
    const name of ["_initialize", "proxy_abi_version_0_2_1", "proxy_on_context_create", "proxy_on_configure"]
  ) {
    assert.ok(exports.includes(name), `missing export ${name}: ${exports.join(" ")}`);
  }
});

itest("rust sdk plugin: configuration, header edits, properties, local response, metric", async () => {
  const app = jsonEcho();
  const config = { greeting: "from-yaml", n: 3 };
  const loom = await startLoom(pluginYaml(app, [
    { name: "rust", path: WASM, root_id: "loom_rust", phase: "on_response_headers", config },
    {
      name: "rust-text",
      path: WASM,
      root_id: "loom_rust",
      phase: "on_response_headers",
      config: "plain text",
    },
  ], [["rust", ["rust"]], ["rustt", ["rust-text"]]]));
  try {
    for (let i = 0; i < 3; i++) {
      const r = await get(loom.url("/rust/x?q=1"), {
        headers: { "x-remove-me": "1", "x-rust-config": "old" },
      });
      assert.equal(r.status, 200, r.text);
      const e = JSON.parse(r.text) as Echoed;
      // Request side (add_http_request_header / set_http_request_header, Some and None).
      assert.equal(e.headers["x-rust-sdk"], "proxy-wasm-rust-sdk");
      assert.equal(e.headers["x-rust-config"], JSON.stringify(config)); // a mapping is passed as JSON
      assert.equal(e.headers["x-remove-me"], undefined);
      // Properties read with get_property (NUL-separated paths).
      assert.equal(e.headers["x-rust-path"], "/rust/x?q=1");
      assert.equal(e.headers["x-rust-root"], "loom_rust");
      // Response side.
      assert.equal(r.headers.get("x-rust-config"), JSON.stringify(config));
      assert.equal(r.headers.get("x-rust-status"), "200"); // response.code, 8-byte integer
      assert.equal(r.headers.get("x-upstream-secret"), null);
    }
    const t = await get(loom.url("/rustt/x"));
    assert.equal(t.status, 200, t.text);
    assert.equal((JSON.parse(t.text) as Echoed).headers["x-rust-config"], "plain text");
    assert.equal(t.headers.get("x-rust-config"), "plain text");

    // send_http_response: the upstream never sees the request.
    const before = app.seen.length;
    const d = await get(loom.url("/rust/deny"));
    assert.equal(d.status, 403);
    assert.equal(d.text, "denied by the Rust SDK plugin\n");
    assert.equal(d.headers.get("x-rust-local"), "1");
    assert.equal(app.seen.length, before);

    const metrics = (await get(loom.admin("/metrics"))).text;
    assert.ok(metricValue(metrics, "wasm_rust_requests") >= 4, metrics);
    const info = JSON.parse((await get(loom.admin("/plugins"))).text) as { name: string; errors: number }[];
    assert.ok(info.some((p) => p.name === "rust"), JSON.stringify(info));
    for (const p of info) assert.equal(p.errors, 0, JSON.stringify(p));
  } finally {
    await loom.close();
    await app.close();
  }
}, { ignore });

itest("rust sdk plugin: body paused until end_of_stream, then set_http_request_body", async () => {
  const app = jsonEcho();
  const loom = await startLoom(pluginYaml(app, [
    { name: "rust-body", path: WASM, root_id: "loom_rust", phase: "on_request_body", config: "body" },
  ], [["b", ["rust-body"]]]));
  try {
    const r = await get(loom.url("/b/x"), { method: "POST", body: "hello wasm" });
    assert.equal(r.status, 200, r.text);
    const e = JSON.parse(r.text) as Echoed;
    assert.equal(e.body, "rust[10]:hello wasm");
    assert.equal(e.headers["content-length"], String("rust[10]:hello wasm".length));
    assert.equal(e.headers["x-rust-config"], "body");
    // A streamed (chunked) body: Action::Pause until its end, the host buffers the chunks.
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
    assert.equal((JSON.parse(s.text) as Echoed).body, "rust[13]:one,two,three");
    const info = JSON.parse((await get(loom.admin("/plugins"))).text) as { name: string; errors: number }[];
    for (const p of info) assert.equal(p.errors, 0, JSON.stringify(p));
  } finally {
    await loom.close();
    await app.close();
  }
}, { ignore });

itest("rust sdk plugin: on_configure returning false marks the plugin failed", async () => {
  const app = jsonEcho();
  const loom = await startLoom(pluginYaml(app, [
    { name: "rust-bad", path: WASM, root_id: "loom_rust", phase: "on_request_headers", config: "reject" },
  ], [["bad", ["rust-bad"]]]));
  try {
    const r = await get(loom.url("/bad/x"));
    assert.equal(r.status, 500, r.text); // fail_closed: {"error":"plugin failed"}
    assert.equal(app.seen.length, 0);
  } finally {
    await loom.close();
    await app.close();
  }
}, { ignore });
