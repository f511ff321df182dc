/**
 * A plugin built with the official Proxy-Wasm C++ SDK
 * (proxy-wasm/proxy-wasm-cpp-sdk, unmodified; see plugins/sdk-cpp/README.md)
 * in the running gateway: its RootContext gets the YAML configuration in
 * on_configure, its Context edits request and response headers, reads
 * properties, answers locally (sendLocalResponse), counts a metric and
 * rewrites the request body (setBuffer).
 */
import { sdkFilterTests } from "./wasm_sdk_util.ts";

sdkFilterTests({
  lang: "cpp",
  label: "C++",
  wasm: new URL("../plugins/sdk-cpp/http_filter.wasm", import.meta.url).pathname,
});
