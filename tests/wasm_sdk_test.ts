/**
 * Plugins built with real Proxy-Wasm SDKs (unmodified SDK code) in the
 * running gateway: the AssemblyScript `@solo-io/proxy-runtime` add-header
 * example and a C plugin compiled with clang against the ABI.
 */
import assert from "node:assert/strict";
import { itest, startLoom, yamlOf } from "./helpers.ts";
import { get } from "./gateway_util.ts";
import { type Echo, startUpstream } from "./upstream.ts";

const root = new URL("../plugins/", import.meta.url).pathname;

itest("sdk plugin: AssemblyScript proxy-runtime add_header (config and default)", async () => {
  const app = startUpstream({ echo: "app" });
  const loom = await startLoom(yamlOf({
    app,
    plugins: [
      {
        name: "as",
        path: root + "sdk-assemblyscript/add_header.wasm",
        phase: "on_response_headers",
        config: "from-loom",
        root_id: "add_header",
      },
      {
        name: "as-default",
        path: root + "sdk-assemblyscript/add_header.wasm",
        phase: "on_response_headers",
        root_id: "add_header",
      },
    ],
    pluginRoutes: [["as", ["as"]], ["asd", ["as-default"]]],
  }));
  try {
    for (let i = 0; i < 3; i++) {
      const r = await get(loom.url("/as/x"));
      assert.equal(r.status, 200, r.text);
      assert.equal((JSON.parse(r.text) as Echo).headers["x-sdk"], "assemblyscript");
      assert.equal(r.headers.get("hello"), "from-loom");
    }
    // Empty configuration: the SDK's onConfigure passes the size as size_ptr and
    // then decodes stale memory (the reference host writes nothing for a 0-byte
    // read, as Loom does), so its "world!" default is never reached. The garbage
    // header value is dropped by the host: the response stays well-formed.
    const d = await get(loom.url("/asd/x"));
    assert.equal(d.status, 200, d.text);
    assert.equal((JSON.parse(d.text) as Echo).headers["x-sdk"], "assemblyscript");
    assert.notEqual(d.headers.get("hello"), "world!");
    const info = JSON.parse((await get(loom.admin("/plugins"))).text) as { name: string; errors: number }[];
    for (const p of info) assert.equal(p.errors, 0, JSON.stringify(p));
  } finally {
    await loom.close();
    await app.close();
  }
});

itest("c plugin: clang --target=wasm32 against the ABI (hand-written externs)", async () => {
  const app = startUpstream({ echo: "app" });
  const loom = await startLoom(yamlOf({
    app,
    plugins: [
      { name: "c", path: root + "c-headers/add_header.wasm", phase: "on_response_headers", config: "c-ok" },
    ],
    pluginRoutes: [["c", ["c"]]],
  }));
  try {
    const r = await get(loom.url("/c/x"));
    assert.equal(r.status, 200, r.text);
    assert.equal((JSON.parse(r.text) as Echo).headers["x-c-plugin"], "clang");
    assert.equal(r.headers.get("x-c-config"), "c-ok");
  } finally {
    await loom.close();
    await app.close();
  }
});
