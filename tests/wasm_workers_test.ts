/**
 * Plugins with `workers: 2`: `GET /plugins` gathers every worker's plugin
 * state and merges it (VMs and errors summed, latest error kept); and
 * compiled modules are shared: the main isolate's config check compiles each
 * module content once and the workers get the `WebAssembly.Module` from it
 * (loom_wasm_module_compilations_total counts every isolate's compilations).
 */
import assert from "node:assert/strict";
import { itest, startLoom, startLoomProcess, waitFor, writeConfig, yamlOf } from "./helpers.ts";
import { rawRequest } from "./http1_util.ts";
import { get, metricValue } from "./gateway_util.ts";
import { KITCHEN, type PluginSpec } from "./wasm_util.ts";
import { startUpstream } from "./upstream.ts";

interface Info {
  name: string;
  vms: number;
  errors: number;
  last_error: string | null;
  last_error_at: string | null;
  running: boolean;
  workers: number;
}

itest("wasm workers: GET /plugins merges every worker (errors summed)", async () => {
  const app = startUpstream({ echo: "app" });
  const loom = await startLoom(
    yamlOf({
      app,
      plugins: [
        { name: "trap", path: KITCHEN["0.2.1"], config: "x" },
        { name: "good", path: KITCHEN["0.2.1"], config: "hok" },
      ],
      pluginRoutes: [["trap", ["trap"]], ["ok", ["good"]]],
    }) + "workers: 2\n",
  );
  try {
    const N = 16; // 8 traps: below the per-worker cap of 10 VM starts per second
    // Fresh connections: the kernel spreads them over both workers.
    const codes = await Promise.all(
      Array.from(
        { length: N },
        async (_, i) => (await rawRequest(loom.port, { target: i % 2 ? "/trap/x" : "/ok/x" })).res?.status,
      ),
    );
    assert.deepEqual(codes, Array.from({ length: N }, (_, i) => i % 2 ? 500 : 200));
    const list = JSON.parse((await get(loom.admin("/plugins"))).text) as Info[];
    const by = Object.fromEntries(list.map((p) => [p.name, p]));
    assert.equal(list.length, 2, "one entry per plugin, not per worker");
    assert.equal(by.good.workers, 2);
    assert.equal(by.good.vms, 2, "one VM per worker");
    assert.equal(by.good.errors, 0);
    assert.equal(by.good.running, true);
    assert.equal(by.trap.workers, 2);
    assert.equal(by.trap.errors, N / 2, "errors of both workers are summed");
    assert.ok(by.trap.vms >= 2);
    assert.match(by.trap.last_error ?? "", /unreachable/);
    assert.ok(by.trap.last_error_at !== null);
  } finally {
    await loom.close();
    await app.close();
  }
});

itest(
  "wasm workers: each module content is compiled once, in the main isolate; both workers run it",
  async () => {
    const app = startUpstream({ echo: "app" });
    const config = (plugins: PluginSpec[]) =>
      yamlOf({ app, plugins, pluginRoutes: plugins.map((p): [string, string[]] => [p.name, [p.name]]) }) +
      "workers: 2\n";
    // Two definitions of one module (one compilation) and a second module.
    const first: PluginSpec[] = [
      { name: "a", path: KITCHEN["0.2.1"], config: "hok" },
      { name: "b", path: KITCHEN["0.2.1"], config: "hok" },
      { name: "c", path: KITCHEN["0.2.0"], config: "hok" },
    ];
    // A Loom process of its own: the counter is the process's, not this test runner's.
    const loom = await startLoomProcess(config(first));
    const compilations = async () =>
      metricValue(await (await fetch(loom.admin("/metrics"))).text(), "loom_wasm_module_compilations_total");
    const allRunning = async (n: number) => {
      const list = JSON.parse((await get(loom.admin("/plugins"))).text) as Info[];
      return list.length === n && list.every((p) => p.running && p.workers === 2 && p.vms === 2) && list;
    };
    try {
      await waitFor("every plugin running in both workers", () => allRunning(3), 30_000);
      assert.equal(await compilations(), 2, "one compilation per module content, none in the workers");
      // Each plugin answers on fresh connections (spread over both workers).
      const codes = await Promise.all(
        Array.from(
          { length: 12 },
          async (_, i) => (await rawRequest(loom.port, { target: `/${"abc"[i % 3]}/x` })).res?.status,
        ),
      );
      assert.deepEqual(codes, Array(12).fill(200), loom.log());
      // A reload adding a definition of a module compiled before, and changing another's config: nothing compiles.
      writeConfig(
        loom,
        config([...first.slice(0, 2), { ...first[2], config: "hok2" }, {
          name: "d",
          path: KITCHEN["0.2.0"],
          config: "hok",
        }]),
      );
      const res = await fetch(loom.admin("/reload"), { method: "POST", headers: { "X-Loom-Admin": "1" } });
      assert.equal(res.status, 200, await res.text());
      await waitFor("plugin d running in both workers", () => allRunning(4), 30_000);
      assert.equal(await compilations(), 2, "a reload reuses compiled modules");
      assert.equal((await get(loom.url("/d/x"))).status, 200);
    } finally {
      await loom.close();
      await app.close();
    }
  },
);
