/**
 * A plugin built with the official Proxy-Wasm Rust SDK (crate proxy-wasm,
 * proxy-wasm/proxy-wasm-rust-sdk; see plugins/sdk-rust/README.md) in the
 * running gateway: its RootContext gets the YAML configuration in
 * on_configure, its HttpContext edits request and response headers, reads
 * properties, answers locally, counts a metric and rewrites the request body.
 */
import assert from "node:assert/strict";
import { sdkFilterTests } from "./wasm_sdk_util.ts";
import { type Tool, toolTest } from "./tools.ts";

const WASM = new URL("../plugins/sdk-rust/http_filter.wasm", import.meta.url).pathname;
/** Without a build (plugins/sdk-rust/README.md explains it) these tests are skipped; the build is committed. */
const needs: Tool[] = ["plugins/sdk-rust/http_filter.wasm"];

toolTest(needs, "rust sdk plugin: the module imports only Proxy-Wasm host functions", () => {
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

sdkFilterTests({ lang: "rust", label: "Rust", wasm: WASM, needs });
