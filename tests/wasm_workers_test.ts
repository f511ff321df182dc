/**
 * `GET /plugins` with `workers: 2`: the supervisor gathers every worker's
 * plugin state and merges it (VMs and errors summed, latest error kept).
 */
import assert from "node:assert/strict";
import { itest, startLoom, yamlOf } from "./helpers.ts";
import { rawRequest } from "./http1_util.ts";
import { get } from "./gateway_util.ts";
import { KITCHEN } from "./wasm_util.ts";
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
