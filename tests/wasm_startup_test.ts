/**
 * Start-up under load (issue 14 item 4): many large modules in one config
 * (the SDK filters repeated: Go, C++, Rust, AssemblyScript, C), compiled off
 * the event loop and cached by content, every VM started in the background
 * before any request, start-up bounded by its own running time; and a VM
 * that failed to start retried in the background with backoff, with no
 * request for it.
 */
import assert from "node:assert/strict";
import { itest, startLoom, yamlOf } from "./helpers.ts";
import { get, loadLoop } from "./gateway_util.ts";
import { startUpstream } from "./upstream.ts";
import { PLUGINS, type PluginSpec } from "./wasm_util.ts";

const ROOT = new URL("../plugins/", import.meta.url).pathname;
const SDK = [
  { file: "sdk-go/http_filter.wasm", root_id: "loom_go" },
  { file: "sdk-cpp/http_filter.wasm", root_id: "loom_cpp" },
  { file: "sdk-rust/http_filter.wasm", root_id: "loom_rust" },
  { file: "sdk-assemblyscript/add_header.wasm", root_id: "add_header" },
  { file: "add-headers/add_headers.wasm", root_id: "" },
  { file: "test/cases.wasm", root_id: "" },
];

interface Info {
  name: string;
  running: boolean;
  vms: number;
  errors: number;
  last_error: string | null;
}

async function plugins(admin: (p: string) => string): Promise<Info[]> {
  return JSON.parse((await get(admin("/plugins"))).text) as Info[];
}

itest(
  "wasm start-up: 36 plugin definitions (the SDK filters repeated) all start, before any request",
  async () => {
    const app = startUpstream({ echo: "app" });
    const specs: PluginSpec[] = [];
    for (let i = 0; i < 36; i++) {
      const s = SDK[i % SDK.length];
      specs.push({ name: `p${i}`, path: ROOT + s.file, root_id: s.root_id, config: `c${i}` });
    }
    const loom = await startLoom(yamlOf({
      app,
      plugins: specs,
      pluginRoutes: [["plain", []], ...specs.map((p): [string, string[]] => [p.name, [p.name]])],
    }));
    // The machine is kept busy meanwhile: clients on a route without plugins.
    const load = loadLoop(loom.url("/plain/x"), 4);
    try {
      const t0 = performance.now();
      let info: Info[] = [];
      while (performance.now() - t0 < 60_000) {
        info = await plugins(loom.admin);
        if (info.length === specs.length && info.every((p) => p.running)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const started = performance.now() - t0;
      for (const p of info) {
        assert.ok(p.running, JSON.stringify(p));
        assert.equal(p.vms, 1, JSON.stringify(p));
        assert.equal(p.errors, 0, JSON.stringify(p));
      }
      console.log(`36 plugins running ${started.toFixed(0)} ms after start`);
      await load.stop();
      assert.deepEqual(load.failures, []);
      assert.ok(load.ok > 0);
      for (const p of specs) {
        const r = await get(loom.url(`/${p.name}/x`));
        assert.equal(r.status, 200, `${p.name}: ${r.text}`);
      }
    } finally {
      await load.stop();
      await loom.close();
      await app.close();
    }
  },
  { timeoutMs: 120_000 },
);

itest("wasm start-up: a VM that failed to start is retried in the background until it runs", async () => {
  const app = startUpstream({ echo: "app" });
  const until = Date.now() + 1500;
  const loom = await startLoom(yamlOf({
    app,
    plugins: [{ name: "late", path: PLUGINS + "cases.wasm", config: `until:${until}` }],
    pluginRoutes: [["late", ["late"]]],
  }));
  try {
    let info: Info | undefined;
    const t0 = performance.now();
    while (performance.now() - t0 < 15_000) {
      info = (await plugins(loom.admin))[0];
      if (info.running) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    // No request reached the plugin: the background retries (1 s, 2 s, ...) started it.
    assert.ok(info?.running, JSON.stringify(info));
    assert.ok(Date.now() >= until);
    assert.ok(info!.vms >= 2 && info!.errors >= 1, JSON.stringify(info));
    assert.match(info!.last_error ?? "", /proxy_on_configure returned false/);
    const r = await get(loom.url("/late/x"));
    assert.equal(r.status, 200, r.text);
  } finally {
    await loom.close();
    await app.close();
  }
});
