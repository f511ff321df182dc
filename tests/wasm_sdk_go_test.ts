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
import { itest, startLoom, yamlOf } from "./helpers.ts";
import { get } from "./gateway_util.ts";
import { type Echo, startUpstream } from "./upstream.ts";
import { sdkFilterTests } from "./wasm_sdk_util.ts";

const WASM = new URL("../plugins/sdk-go/http_filter.wasm", import.meta.url).pathname;

sdkFilterTests({ lang: "go", label: "Go", wasm: WASM });

itest("go sdk plugin: many large bodies (the Go runtime's GC runs inside callbacks)", async () => {
  const app = startUpstream({ echo: "app" });
  const loom = await startLoom(yamlOf({
    app,
    plugins: [
      { name: "go-gc", path: WASM, root_id: "loom_go", phase: "on_request_body", config: "gc" },
    ],
    pluginRoutes: [["gc", ["go-gc"]]],
  }));
  try {
    // ~40 MiB through the Go heap (GetHttpRequestBody copies, the rewritten
    // body, string conversions): several GC cycles, all inside exports.
    const chunk = "0123456789abcdef".repeat(16 * 1024); // 256 KiB
    for (let i = 0; i < 40; i++) {
      const body = `${i}:` + chunk;
      const r = await get(loom.url(`/gc/${i}`), { method: "POST", body });
      assert.equal(r.status, 200, r.text.slice(0, 200));
      const e = JSON.parse(r.text) as Echo;
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
