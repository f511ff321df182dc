/**
 * The compile worker's warm-up run (src/wasm/compile_worker.ts): before a
 * module is handed out it runs its start-up once in a throwaway VM, and
 * whatever that run does stays in the compile worker. Loom runs in a process
 * of its own so that its whole stderr (every isolate's) is seen.
 */
import assert from "node:assert/strict";
import { itest, startLoomProcess, waitFor, yamlOf } from "./helpers.ts";
import { get } from "./gateway_util.ts";
import { watModule } from "./wasm_util.ts";
import { startUpstream } from "./upstream.ts";

/** A plugin that logs (at error level: logged whatever Loom's level) from on_vm_start and on_configure. */
const LOGGING_WAT = `(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "vm-start-marker")
  (data (i32.const 48) "configure-marker")
  (func (export "proxy_abi_version_0_2_1"))
  ;; Nothing is allocated for it that outlives a call: one scratch area does.
  (func (export "malloc") (param i32) (result i32) (i32.const 8192))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $log (i32.const 4) (i32.const 16) (i32.const 15)))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $log (i32.const 4) (i32.const 48) (i32.const 16)))
    (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))`;

itest(
  "wasm compile: the warm-up run's output stays in the compile worker; each VM logs its start once",
  async () => {
    const app = startUpstream({ echo: "app" });
    const wasm = await watModule(LOGGING_WAT);
    const loom = await startLoomProcess(
      yamlOf({ app, plugins: [{ name: "logs", path: wasm }], pluginRoutes: [["logs", ["logs"]]] }) +
        "workers: 2\n",
    );
    try {
      await waitFor("both workers' VMs running", async () => {
        const list = JSON.parse((await get(loom.admin("/plugins"))).text) as {
          running: boolean;
          workers: number;
        }[];
        return list[0]?.running && list[0].workers === 2;
      }, 30_000);
      assert.equal((await get(loom.url("/logs/x"))).status, 200);
      const count = (marker: string) => loom.log().split(marker).length - 1;
      // One VM per worker; the main isolate's compile worker ran the same callbacks and logged nothing.
      assert.equal(count("vm-start-marker"), 2, loom.log());
      assert.equal(count("configure-marker"), 2, loom.log());
    } finally {
      await loom.close();
      await app.close();
      await Deno.remove(wasm);
    }
  },
);
