/**
 * CPU cost per request added by Proxy-Wasm plugins, measured in process like
 * bench/inproc.ts (in-memory client and upstream connections): the same
 * request loop with no plugin, with plugins/add-headers (adds one request
 * header) and with the test plugin reading and rewriting a 16 KiB request
 * body (phase on_request_body). Prints CPU µs per request for each and the
 * difference to the plain route.
 *
 *   deno run -A --unstable-net bench/plugins.ts [requests] [none|header|post|read|body|sdk-cpp|sdk-go|sdk-rust]
 *     [timeslice|inline]
 *
 * The third argument sets the plugin's `isolation` (default: the config default).
 *
 * `post` is the baseline for `read` (the plugin reads the 16 KiB body) and
 * `body` (it also upper-cases it in wasm and writes it back): the same upload on a plain route.
 */
import { GET_REQUEST, runInproc } from "./inproc_harness.ts";

const enc = new TextEncoder();
const mode = Deno.args[1] ?? "header";
const BODY = "b".repeat(16 * 1024);
const REQUEST = mode === "body" || mode === "read" || mode === "post"
  ? enc.encode(
    "POST /file1k HTTP/1.1\r\nHost: 127.0.0.1:9201\r\nUser-Agent: wrk\r\nContent-Length: 16384\r\n\r\n" +
      BODY,
  )
  : GET_REQUEST;

const total = Number(Deno.args[0] ?? 200_000);
const isolation = Deno.args[2] ? `, isolation: ${Deno.args[2]}` : "";
const root = new URL("../plugins/", import.meta.url).pathname;
/** The SDK-built filters (plugins/sdk-*): request-header edits, two property reads and a counter per request. */
const SDK: Record<string, string> = {
  "sdk-cpp": `{name: p, path: "${root}sdk-cpp/http_filter.wasm", root_id: loom_cpp, config: c${isolation}}`,
  "sdk-go": `{name: p, path: "${root}sdk-go/http_filter.wasm", config: c${isolation}}`,
  "sdk-rust": `{name: p, path: "${root}sdk-rust/http_filter.wasm", config: c${isolation}}`,
};
const plugin = SDK[mode] ??
  (mode === "header"
    ? `{name: p, path: "${root}add-headers/add_headers.wasm", config: "+x-bench: 1"${isolation}}`
    : mode === "body" || mode === "read"
    ? `{name: p, path: "${root}test/kitchen_0_2_1.wasm", config: "${
      mode === "body" ? "b" : "R"
    }", phase: on_request_body${isolation}}`
    : "");
const { cpu, wall, requests } = await runInproc(
  `listeners: [{name: http, address: "127.0.0.1:9", protocol: http}]
upstreams: [{name: up, endpoints: ["127.0.0.1:1"]}]
routes: [{id: all, path: "/*", upstream: up${plugin === "" ? "" : ", plugins: [p]"}}]
plugins: [${plugin}]
access_log: {enabled: false}`,
  REQUEST,
  total,
);
console.log(
  `plugin=${mode}${Deno.args[2] ? ` (${Deno.args[2]})` : ""}: ${cpu.toFixed(2)} µs CPU per request (${
    wall.toFixed(2)
  } µs wall), ${requests} requests`,
);
Deno.exit(0);
