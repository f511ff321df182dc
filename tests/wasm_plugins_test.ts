/**
 * Proxy-Wasm plugins in the running gateway: real .wasm modules (built from
 * plugins/test/kitchen.wat.in for each ABI version) on routes, asserting on
 * what the upstream and the client see.
 */
import assert from "node:assert/strict";
import { itest, startLoom, waitFor, writeConfig, yamlOf } from "./helpers.ts";
import { get, metricValue, postReload } from "./gateway_util.ts";
import { KITCHEN, PLUGINS } from "./wasm_util.ts";
import { type Echo, startUpstream } from "./upstream.ts";

for (const abi of ["0.1.0", "0.2.0", "0.2.1"] as const) {
  itest(`wasm ${abi}: headers added/removed both ways, properties, plugin_name`, async () => {
    const app = startUpstream({ echo: "app" });
    const loom = await startLoom(yamlOf({
      app,
      plugins: [
        { name: "hdr", path: KITCHEN[abi], config: "hfrom-config", phase: "on_response_headers" },
      ],
      pluginRoutes: [["h", ["hdr"]], ["plain", []]],
    }));
    try {
      const r = await get(loom.url("/h/x?q=1"), { headers: { "x-remove-me": "1", "x-keep": "2" } });
      assert.equal(r.status, 200, r.text);
      const e = JSON.parse(r.text) as Echo;
      assert.equal(e.headers["x-wasm-added"], "from-config");
      assert.equal(e.headers["x-remove-me"], undefined);
      assert.equal(e.headers["x-keep"], "2");
      assert.equal(e.headers["x-wasm-path"], "/h/x?q=1");
      assert.equal(e.headers["x-wasm-plugin"], "hdr");
      assert.equal(r.headers.get("x-wasm-response"), "yes");
      assert.equal(r.headers.get("x-upstream-secret"), null);
      // A route without plugins is untouched.
      const p = await get(loom.url("/plain/x"));
      assert.equal(JSON.parse(p.text).headers["x-wasm-added"], undefined);
      assert.equal(p.headers.get("x-upstream-secret"), "s3cr3t");
      const info = JSON.parse((await get(loom.admin("/plugins"))).text);
      assert.equal(info[0].name, "hdr");
      assert.equal(info[0].abi_version, abi);
      assert.equal(info[0].vms, 1);
      assert.equal(info[0].errors, 0);
    } finally {
      await loom.close();
      await app.close();
    }
  });
}

itest("wasm: local response from request headers and from response headers", async () => {
  const app = startUpstream({ echo: "app" });
  const loom = await startLoom(yamlOf({
    app,
    plugins: [
      { name: "deny", path: KITCHEN["0.2.1"], config: "d", phase: "on_response_headers" },
    ],
    pluginRoutes: [["d", ["deny"]]],
  }));
  try {
    const r = await get(loom.url("/d/x"), { headers: { "x-deny": "yes" } });
    assert.equal(r.status, 403);
    assert.equal(r.text, "denied by wasm");
    assert.equal(r.headers.get("x-denied"), "1");
    assert.equal(app.seen.length, 0, "the upstream never saw the denied request");
    const ok = await get(loom.url("/d/x"));
    assert.equal(ok.status, 200);
    // The upstream's answer carries x-deny: the plugin replaces it in on_response_headers.
    const late = await get(loom.url("/d/x?deny=1"));
    assert.equal(late.status, 403);
    assert.equal(late.text, "denied by wasm");
  } finally {
    await loom.close();
    await app.close();
  }
});

itest("wasm: http_call round trip pauses the request until the auth upstream answers", async () => {
  const app = startUpstream({ echo: "app" });
  const auth = startUpstream(async (req) => {
    const token = await req.text();
    await new Promise((r) => setTimeout(r, 20));
    return new Response(token === "good" ? "yes" : "no", { status: token === "good" ? 200 : 403 });
  });
  const loom = await startLoom(
    yamlOf({
      app,
      plugins: [{ name: "auth", path: KITCHEN["0.2.1"], config: "a" }],
      pluginRoutes: [[
        "a",
        ["auth"],
      ]],
      auth,
    }),
  );
  try {
    const ok = await get(loom.url("/a/x"), { headers: { "x-token": "good" } });
    assert.equal(ok.status, 200, ok.text);
    assert.equal((JSON.parse(ok.text) as Echo).headers["x-auth"], "ok");
    assert.equal(auth.seen[0].url.endsWith("/check"), true);
    assert.equal(auth.seen[0].method, "POST");
    const bad = await get(loom.url("/a/x"), { headers: { "x-token": "bad" } });
    assert.equal(bad.status, 401);
    assert.equal(bad.text, "unauthorized");
    const none = await get(loom.url("/a/x"));
    assert.equal(none.status, 401);
    // Concurrent paused requests resume independently.
    const many = await Promise.all(
      Array.from(
        { length: 10 },
        (_, i) => get(loom.url("/a/" + i), { headers: { "x-token": i % 2 ? "good" : "bad" } }),
      ),
    );
    assert.deepEqual(many.map((r) => r.status), many.map((_, i) => i % 2 ? 200 : 401));
    assert.equal(app.seen.length, 6);
  } finally {
    await loom.close();
    await app.close();
    await auth.close();
  }
});

itest("wasm 0.1.0: http_call resumes with proxy_continue_request", async () => {
  const app = startUpstream({ echo: "app" });
  const auth = startUpstream(() => new Response("yes"));
  const loom = await startLoom(
    yamlOf({
      app,
      plugins: [{ name: "auth", path: KITCHEN["0.1.0"], config: "a" }],
      pluginRoutes: [["a", ["auth"]]],
      auth,
    }),
  );
  try {
    const ok = await get(loom.url("/a/x"), { headers: { "x-token": "t" } });
    assert.equal(ok.status, 200, ok.text);
    assert.equal((JSON.parse(ok.text) as Echo).headers["x-auth"], "ok");
  } finally {
    await loom.close();
    await app.close();
    await auth.close();
  }
});

itest("wasm: shared data with CAS across requests (rate limit), queue, ticks and metrics", async () => {
  const app = startUpstream({ echo: "app" });
  const loom = await startLoom(yamlOf({
    app,
    plugins: [
      { name: "rl", path: KITCHEN["0.2.0"], config: "r3" },
      { name: "tick", path: KITCHEN["0.2.1"], config: "t" },
      { name: "count", path: KITCHEN["0.2.1"], config: "m" },
      { name: "queue", path: KITCHEN["0.2.1"], config: "q" },
    ],
    pluginRoutes: [["rl", ["rl"]], ["t", ["tick", "count"]], ["q", ["queue"]]],
  }));
  try {
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await get(loom.url("/rl/x"))).status);
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
    const ticked = await waitFor("a tick", async () => {
      const e = JSON.parse((await get(loom.url("/t/x"))).text) as Echo;
      return e.headers["x-ticked"];
    });
    assert.equal(ticked, "yes");
    const metrics = (await get(loom.admin("/metrics"))).text;
    assert.ok(metricValue(metrics, "wasm_ticks") >= 1, metrics);
    assert.ok(metricValue(metrics, "wasm_requests_seen") >= 1);
    assert.ok(metricValue(metrics, "loom_plugin_duration_seconds_count", { plugin: "rl" }) >= 5);
    await get(loom.url("/q/x"));
    const dq = await waitFor("on_queue_ready", async () => {
      const e = JSON.parse((await get(loom.url("/q/x"))).text) as Echo;
      return e.headers["x-dequeued"];
    });
    assert.equal(dq, "hello");
  } finally {
    await loom.close();
    await app.close();
  }
});

itest("wasm: request and response bodies rewritten (buffered while paused)", async () => {
  const app = startUpstream({ echo: "app" });
  const loom = await startLoom(yamlOf({
    app,
    plugins: [
      { name: "req", path: KITCHEN["0.2.1"], config: "b", phase: "on_request_body" },
      { name: "res", path: KITCHEN["0.2.1"], config: "b", phase: "on_response_body" },
    ],
    pluginRoutes: [["req", ["req"]], ["res", ["res"]]],
  }));
  try {
    const body = "hello body ".repeat(3000); // ~33 KB: several chunks
    const r = await get(loom.url("/req/x"), { method: "POST", body });
    assert.equal(r.status, 200);
    const e = JSON.parse(r.text) as Echo;
    assert.equal(e.body, body.toUpperCase());
    assert.equal(e.headers["content-length"], String(body.length));
    // Chunked upload.
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode("abc"));
        c.enqueue(new TextEncoder().encode("def"));
        c.close();
      },
    });
    const r2 = await get(loom.url("/req/y"), { method: "POST", body: stream });
    assert.equal((JSON.parse(r2.text) as Echo).body, "ABCDEF");
    const r3 = await get(loom.url("/res/x"), { method: "POST", body: "quiet" });
    assert.equal(r3.status, 200);
    const upper = JSON.parse(r3.text.toLowerCase()) as Echo;
    assert.equal(upper.body, "quiet");
    assert.ok(r3.text.includes('"BODY":"QUIET"'));
    assert.equal(r3.headers.get("content-length"), String(r3.text.length));
  } finally {
    await loom.close();
    await app.close();
  }
});

itest("wasm: plugins reload with the config; unchanged plugins keep their state", async () => {
  const app = startUpstream({ echo: "app" });
  const plugins = [{ name: "rl", path: KITCHEN["0.2.1"], config: "r2" }];
  const loom = await startLoom(yamlOf({ app, plugins, pluginRoutes: [["rl", ["rl"]]] }));
  try {
    assert.equal((await get(loom.url("/rl/x"))).status, 200);
    writeConfig(loom, yamlOf({ app, plugins, pluginRoutes: [["rl", ["rl"]], ["other", []]] }));
    assert.equal((await postReload(loom)).status, 200);
    assert.equal((await get(loom.url("/rl/x"))).status, 200);
    assert.equal((await get(loom.url("/rl/x"))).status, 429, "shared data survived the reload");
    // A changed config builds a new plugin (new VM), shared data is per isolate and stays.
    writeConfig(
      loom,
      yamlOf({
        app,
        plugins: [{ name: "rl", path: KITCHEN["0.2.1"], config: "r9" }],
        pluginRoutes: [["rl", ["rl"]]],
      }),
    );
    assert.equal((await postReload(loom)).status, 200);
    assert.equal((await get(loom.url("/rl/x"))).status, 200);
  } finally {
    await loom.close();
    await app.close();
  }
});

itest(
  "wasm: a module without ABI marker refuses the config; a plugin failing on_configure answers 500",
  async () => {
    const app = startUpstream({ echo: "app" });
    // Checked before anything is applied (src/wasm/check.ts): the config is refused, naming the plugin's path.
    const refused = await startLoom(yamlOf({
      app,
      plugins: [{ name: "bad", path: PLUGINS + "no_abi.wasm", failure_policy: "fail_open" }],
      pluginRoutes: [["open", ["bad"]]],
    })).then(async (l) => {
      await l.close();
      return null;
    }, (e: Error) => e);
    assert.match(
      String(refused?.message),
      /plugins\[0\]\.path: .*no_abi\.wasm: not a Proxy-Wasm module \(no proxy_abi_version/,
    );
    const loom = await startLoom(yamlOf({
      app,
      plugins: [{ name: "reject", path: KITCHEN["0.2.1"], config: "c" }],
      pluginRoutes: [["rej", ["reject"]]],
    }));
    try {
      assert.equal((await get(loom.url("/rej/x"))).status, 500);
      const info = JSON.parse((await get(loom.admin("/plugins"))).text) as {
        name: string;
        last_error: string;
      }[];
      assert.match(info.find((p) => p.name === "reject")!.last_error, /on_configure/);
    } finally {
      await loom.close();
      await app.close();
    }
  },
);
