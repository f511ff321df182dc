/**
 * Envoy's behaviour for the published SDKs (issue 14), through a running
 * gateway with the C test plugin plugins/test/cases.c: buffer appends past
 * the end, http_call pseudo headers, local responses checked like every
 * header edit, WASI poll_oneoff, and a panicking plugin logged once.
 */
import assert from "node:assert/strict";
import { itest, startLoom, yamlOf } from "./helpers.ts";
import { echo, get, metricValue } from "./gateway_util.ts";
import { rawRequest } from "./http1_util.ts";
import { startUpstream } from "./upstream.ts";
import { PLUGINS } from "./wasm_util.ts";
import { setLogLevel, setLogOutput } from "../src/observability/logger.ts";

const CASES = PLUGINS + "cases.wasm";

itest(
  "wasm envoy: set_buffer_bytes appends past the end; http_call pseudo headers; local responses",
  async () => {
    const app = startUpstream({ echo: "app" });
    const loom = await startLoom(yamlOf({
      app,
      plugins: [{ name: "cases", path: CASES, phase: "on_request_body", config: "c" }],
      pluginRoutes: [["c", ["cases"]]],
    }));
    try {
      // 1. Appends: start 0x7fffffff (Go SDK), start = size, start 0xffffffff.
      const e = await echo(loom.url("/c/append"), {
        method: "POST",
        headers: { "x-case": "append" },
        body: "body",
      });
      assert.equal(e.body, "body+go+at+max");

      // 2. http_call: the first :path and :method win; the answer's :status is no header line.
      const r = await rawRequest(loom.port, { target: "/c/call", headers: { "x-case": "callpseudo" } });
      assert.equal(r.res?.status, 200, r.text);
      const call = JSON.parse(new TextDecoder().decode(r.res!.body));
      assert.equal(call.path, "/first");
      assert.equal(call.method, "GET");
      assert.equal(call.headers["x-from"], "cases");
      assert.ok(!/^:/m.test(r.text), r.text);
      assert.ok(r.res!.fields.some(([k]) => k.toLowerCase() === "x-upstream-secret"), r.text);

      // 3. Local response headers: CR LF in names or values never reach the client.
      const inj = await rawRequest(loom.port, { target: "/c/inject", headers: { "x-case": "inject" } });
      assert.equal(inj.res?.status, 200, inj.text);
      const names = inj.res!.fields.map(([k]) => k.toLowerCase());
      assert.ok(names.includes("x-ok"), inj.text);
      assert.ok(names.includes("x-upper"), inj.text);
      assert.ok(
        !names.some((n) => n.startsWith("x-injected") || n.startsWith("x-bad") || n === "x-val"),
        inj.text,
      );
      assert.ok(!/^:/m.test(inj.text), inj.text);
      assert.equal(new TextDecoder().decode(inj.res!.body), "local\n");
    } finally {
      await loom.close();
      await app.close();
    }
  },
);

itest("wasm envoy: WASI poll_oneoff; a panicking plugin logs its panic once", async () => {
  const app = startUpstream({ echo: "app" });
  const loom = await startLoom(yamlOf({
    app,
    plugins: [{ name: "cases", path: CASES, config: "c", failure_policy: "fail_closed" }],
    pluginRoutes: [["c", ["cases"]]],
  }));
  const lines: string[] = [];
  const prev = setLogOutput((l) => void lines.push(l));
  setLogLevel("warn");
  try {
    const e = await echo(loom.url("/c/poll"), { headers: { "x-case": "poll" } });
    assert.equal(e.headers["x-poll"], "0:1:0:1");
    for (let i = 0; i < 5; i++) {
      const r = await get(loom.url("/c/panic"), { headers: { "x-case": "panic" } });
      assert.equal(r.status, 500);
      await new Promise((r) => setTimeout(r, 20));
    }
    const panics = lines.filter((l) => l.includes("boom from cases.c"));
    assert.equal(panics.length, 1, panics.join("\n"));
    const entry = JSON.parse(panics[0]);
    assert.equal(entry.level, "error");
    assert.match(entry.output, /^panic: boom from cases\.c\n\ngoroutine 1 \[running\]:/);
    // Nothing else of the traceback was logged line by line.
    assert.equal(lines.filter((l) => l.includes("main.handler")).length, 1);
    // The plugin still serves once its VM is recreated.
    assert.equal((await echo(loom.url("/c/ok"))).headers["x-cases"], "c");
  } finally {
    setLogOutput(prev);
    setLogLevel("error");
    await loom.close();
    await app.close();
  }
});

itest("wasm envoy: every callback a module exports runs unless phase restricts it", async () => {
  const app = startUpstream({ echo: "app" });
  const loom = await startLoom(yamlOf({
    app,
    plugins: [
      { name: "all", path: CASES, config: "a" },
      { name: "restricted", path: CASES, config: "r", phase: "on_request_headers" },
    ],
    pluginRoutes: [["all", ["all"]], ["r", ["restricted"]]],
  }));
  try {
    const init = { method: "POST", headers: { "x-case": "both" }, body: "b" };
    const r = await get(loom.url("/all/x"), init);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get("x-both"), "resp");
    assert.ok(r.text.endsWith("+resp"), r.text);
    assert.equal(JSON.parse(r.text.slice(0, -5)).body, "b+req");
    // phase: on_request_headers restricts it to the request headers.
    const only = await get(loom.url("/r/x"), init);
    assert.equal(only.headers.get("x-both"), null);
    assert.equal(JSON.parse(only.text).body, "b");
    const info = JSON.parse((await get(loom.admin("/plugins"))).text) as { name: string; phase: string }[];
    assert.deepEqual(info.map((p) => p.phase).sort(), ["all", "on_request_headers"]);
  } finally {
    await loom.close();
    await app.close();
  }
});

itest(
  "wasm envoy: request edits route the request again (proxy_clear_route_cache); foreign functions",
  async () => {
    const app = startUpstream({ echo: "app" });
    const canary = startUpstream({ echo: "canary" });
    const loom = await startLoom(yamlOf({
      upstreams: [{ name: "app", endpoints: [app.address] }, { name: "canary", endpoints: [canary.address] }],
      routes: [
        { id: "canary", path: "/rr/*", headers: { "x-canary": "1" }, upstream: "canary" },
        { id: "rr", path: "/rr/*", upstream: "app", plugins: ["cases"] },
        { id: "other", path: "/other/*", upstream: "canary", strip_prefix: true },
      ],
      plugins: [{ name: "cases", path: CASES, config: "c" }],
    }));
    try {
      // A header edit: the route matching it now wins, and the request goes to its upstream.
      const c = await echo(loom.url("/rr/x"), { headers: { "x-case": "canary" } });
      assert.equal(c.tag, "canary");
      assert.equal(c.headers["x-canary"], "1");
      assert.equal(c.path, "/rr/x");
      // A new :path: routed on it, with the new route's strip_prefix.
      const p = await echo(loom.url("/rr/y"), { headers: { "x-case": "repath" } });
      assert.equal(p.tag, "canary");
      assert.equal(p.path, "/z?q=1");
      // Foreign functions: compress OK (smaller), uncompress OK (same text), junk SERIALIZATION_FAILURE,
      // declare_property and clear_route_cache OK, an unknown name NOT_FOUND.
      const f = await echo(loom.url("/rr/f"), { headers: { "x-case": "foreign" } });
      assert.equal(f.headers["x-foreign"], "0:1:0:1:3:0:0:1");
      // An edit that matches the same route changes nothing.
      const same = await echo(loom.url("/rr/k"));
      assert.equal(same.tag, "app");
      assert.equal(same.headers["x-cases"], "c");
      const m = await get(loom.admin("/metrics"));
      assert.match(m.text, /loom_requests_total\{[^}]*route="other"/);
    } finally {
      await loom.close();
      await app.close();
      await canary.close();
    }
  },
);

itest("wasm envoy: route metadata as properties, vm_config, vm_id; histogram metrics", async () => {
  const app = startUpstream({ echo: "app" });
  const loom = await startLoom(yamlOf({
    upstreams: [{ name: "app", endpoints: [app.address] }],
    routes: [{
      id: "m",
      path: "/m/*",
      upstream: "app",
      plugins: ["cases"],
      metadata: { filter_metadata: { loom: { tier: "gold", n: 3 } } },
    }],
    plugins: [{ name: "cases", path: CASES, config: "c", vm_id: "shared-vm", vm_config: { vm: 1 } }],
  }));
  try {
    const e = await echo(loom.url("/m/x"), { headers: { "x-case": "meta" } });
    assert.equal(e.headers["x-meta"], 'gold|3|{"vm":1}|shared-vm');
    // A histogram metric a plugin defines is a Prometheus histogram.
    await echo(loom.url("/m/h"), { headers: { "x-case": "hist" } });
    const m = (await get(loom.admin("/metrics"))).text;
    assert.match(m, /# TYPE wasm_cases_size histogram/);
    assert.equal(metricValue(m, "wasm_cases_size_bucket", { le: "5" }), 1);
    assert.equal(metricValue(m, "wasm_cases_size_bucket", { le: "1000" }), 2);
    assert.equal(metricValue(m, "wasm_cases_size_count"), 2);
    assert.equal(metricValue(m, "wasm_cases_size_sum"), 703);
  } finally {
    await loom.close();
    await app.close();
  }
});
