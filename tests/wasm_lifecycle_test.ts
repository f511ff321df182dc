/**
 * Plugin lifecycle in the running gateway: root-context teardown on reload
 * (proxy_on_done returning false, proxy_done, deferred proxy_on_delete) and
 * the cap on VM re-creation during a crash loop.
 */
import assert from "node:assert/strict";
import { itest, startLoom, waitFor, writeConfig, yamlOf } from "./helpers.ts";
import { get, metricValue, postReload } from "./gateway_util.ts";
import { PLUGINS } from "./wasm_util.ts";
import { startUpstream } from "./upstream.ts";

const LIFE = PLUGINS + "lifecycle.wasm";
const AUTH = new URL("../plugins/auth/auth.wasm", import.meta.url).pathname;

itest(
  "wasm lifecycle: a retired root context waits for proxy_done, then on_delete runs (deferred)",
  async () => {
    const app = startUpstream({ echo: "app" });
    const loom = await startLoom(
      yamlOf({ app, plugins: [{ name: "life", path: LIFE }], pluginRoutes: [["l", ["life"]]] }),
    );
    try {
      assert.equal((await get(loom.url("/l/x"))).status, 200);
      const m0 = (await get(loom.admin("/metrics"))).text;
      assert.equal(metricValue(m0, "wasm_done_early"), 1, "proxy_done outside on_done(root) is NOT_FOUND");
      assert.equal(metricValue(m0, "wasm_root_done"), 0);

      // The reload drops the plugin: on_done(root) returns false, the next tick calls proxy_done.
      writeConfig(loom, yamlOf({ app, plugins: [], pluginRoutes: [["l", []]] }));
      assert.equal((await postReload(loom)).status, 200);
      const m = await waitFor("root context deleted", async () => {
        const t = (await get(loom.admin("/metrics"))).text;
        return metricValue(t, "wasm_root_deleted") >= 1 ? t : undefined;
      }, 3000);
      assert.equal(metricValue(m, "wasm_root_done"), 1);
      assert.equal(metricValue(m, "wasm_done_ok"), 1);
      assert.equal(metricValue(m, "wasm_root_deleted"), 1);
      assert.equal(
        metricValue(m, "wasm_deleted_in_done"),
        0,
        "on_delete is not called from inside proxy_done",
      );
      assert.equal((await get(loom.url("/l/x"))).status, 200);
    } finally {
      await loom.close();
      await app.close();
    }
  },
);

itest("wasm lifecycle: VM re-creation is capped during a crash loop, resumes after the window", async () => {
  const app = startUpstream({ echo: "app" });
  const loom = await startLoom(yamlOf({
    app,
    plugins: [
      { name: "crash", path: LIFE, config: "x" },
      { name: "ok", path: LIFE },
    ],
    pluginRoutes: [["c", ["crash"]], ["ok", ["ok"]]],
  }));
  const info = async (name: string) =>
    (JSON.parse((await get(loom.admin("/plugins"))).text) as { name: string; vms: number; errors: number }[])
      .find((p) => p.name === name)!;
  try {
    for (let i = 0; i < 25; i++) {
      assert.equal((await get(loom.url("/c/x"))).status, 500);
      assert.equal((await get(loom.url("/ok/x"))).status, 200, "other plugins are untouched");
    }
    const capped = await info("crash");
    assert.ok(capped.vms <= 10, `at most 10 VM starts per second, got ${capped.vms}`);
    assert.ok(capped.errors <= 10);
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await get(loom.url("/c/x"))).status, 500);
    assert.equal((await info("crash")).vms, capped.vms + 1, "a fresh VM after the window");
  } finally {
    await loom.close();
    await app.close();
  }
});

itest(
  "wasm lifecycle: a client that leaves during a paused request ends it; the upstream never sees it",
  async () => {
    const app = startUpstream({ echo: "app" });
    let authCalls = 0;
    const auth = startUpstream(async () => {
      authCalls++;
      await new Promise((r) => setTimeout(r, 300));
      return new Response(null, { status: 204 });
    });
    const loom = await startLoom(
      yamlOf({ app, plugins: [{ name: "auth", path: AUTH }], pluginRoutes: [["a", ["auth"]]], auth }),
    );
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
      await c.write(
        new TextEncoder().encode("GET /a/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer good\r\n\r\n"),
      );
      await waitFor("http_call sent", () => authCalls > 0 ? true : undefined, 2000);
      c.close(); // gone while the plugin waits for its http_call
      await new Promise((r) => setTimeout(r, 600)); // the auth answer arrives meanwhile
      assert.equal(app.seen.length, 0, "an abandoned paused request is not forwarded");
      // The plugin and its VM are fine.
      const ok = await get(loom.url("/a/x"), { headers: { authorization: "Bearer good" } });
      assert.equal(ok.status, 200, ok.text);
      const info = JSON.parse((await get(loom.admin("/plugins"))).text) as { errors: number; vms: number }[];
      assert.equal(info[0].errors, 0);
      assert.equal(info[0].vms, 1);
    } finally {
      await loom.close();
      await app.close();
      await auth.close();
    }
  },
);

itest(
  "wasm lifecycle: a request context's on_done=false does not hold back on_log/on_delete (reference host)",
  async () => {
    const app = startUpstream({ echo: "app" });
    const loom = await startLoom(
      yamlOf({ app, plugins: [{ name: "life", path: LIFE }], pluginRoutes: [["l", ["life"]]] }),
    );
    try {
      for (let i = 0; i < 3; i++) assert.equal((await get(loom.url("/l/x"))).status, 200);
      // As proxy-wasm-cpp-host (ContextBase::destroy ignores onDone's result; WasmBase::done only
      // knows root contexts): on_log and on_delete follow at once, proxy_done is NOT_FOUND.
      const m = await waitFor("stream contexts deleted", async () => {
        const t = (await get(loom.admin("/metrics"))).text;
        return metricValue(t, "wasm_stream_deleted") >= 3 ? t : undefined;
      }, 3000);
      assert.equal(metricValue(m, "wasm_stream_done"), 3);
      assert.equal(metricValue(m, "wasm_stream_logged"), 3);
      assert.equal(metricValue(m, "wasm_stream_deleted"), 3);
      assert.equal(
        metricValue(m, "wasm_stream_done_nf"),
        3,
        "proxy_done from a request context is NOT_FOUND",
      );
      assert.equal(metricValue(m, "wasm_root_done"), 0, "the root context is untouched");
    } finally {
      await loom.close();
      await app.close();
    }
  },
);
