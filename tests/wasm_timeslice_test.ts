/**
 * `isolation: timeslice`: a runaway callback is suspended every few ms, so
 * requests on other routes are served while it runs, and it still ends at
 * its timeout like a trap. `inline` keeps the old behaviour (other requests
 * wait). Calls into one VM are serialized: a request to the same plugin waits
 * for the suspended callback, then moves to the recreated VM.
 *
 * Proved by the order of events, not by latencies (a loaded machine stretches
 * those; speed is bench/'s): the plugins log "spinning" just before their
 * endless loop, and the requests answered between that line and the
 * runaway's answer are counted.
 */
import assert from "node:assert/strict";
import { itest, startLoom, yamlOf } from "./helpers.ts";
import { setLogOutput } from "../src/observability/logger.ts";
import { get } from "./gateway_util.ts";
import { KITCHEN, watModule } from "./wasm_util.ts";
import { startUpstream, type TestUpstream } from "./upstream.ts";

/**
 * A minimal plugin: on_request_headers logs "spinning" (at error level: logged
 * whatever Loom's level) and loops forever when the request has `x-spin`, else continues.
 */
const SPIN_WAT = `(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "x-spin")
  (data (i32.const 64) "spinning")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $heap (i32.const 4096))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 16) (i32.const 6) (i32.const 32) (i32.const 36)))
      (then
        (drop (call $log (i32.const 4) (i32.const 64) (i32.const 8)))
        (loop $forever (br $forever))))
    (i32.const 0)))`;

/**
 * A plugin whose VM start-up runs away: on_configure loops forever once the
 * shared-data key `cfg-spin` is set, which a request with `x-trap` does
 * before trapping (so the next request starts a new VM).
 */
const CONFIGURE_SPIN_WAT = `(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $sget (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $sset (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "x-trap")
  (data (i32.const 48) "cfg-spin")
  (data (i32.const 64) "spinning")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (if (i32.eqz (call $sget (i32.const 48) (i32.const 8) (i32.const 32) (i32.const 36) (i32.const 40)))
      (then
        (drop (call $log (i32.const 4) (i32.const 64) (i32.const 8)))
        (loop $forever (br $forever))))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $heap (i32.const 4096))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 16) (i32.const 6) (i32.const 32) (i32.const 36)))
      (then
        (drop (call $sset (i32.const 48) (i32.const 8) (i32.const 16) (i32.const 1) (i32.const 0)))
        (unreachable)))
    (i32.const 0)))`;

/**
 * Events of a test in order: "spin" when a plugin logs "spinning" (the line
 * is not printed), pushed by the logger hook until `stop()`; `spun` resolves
 * at the first one.
 */
function spinEvents(): { events: string[]; spun: Promise<void>; stop(): void } {
  const events: string[] = [];
  let spun!: () => void;
  const p = new Promise<void>((r) => spun = r);
  const prev = setLogOutput((line) => {
    if (!line.includes('"plugin: spinning"')) return prev(line);
    events.push("spin");
    spun();
  });
  return { events, spun: p, stop: () => setLogOutput(prev) };
}

/** Requests answered after the first "spin" and before "runaway" in `events`. */
function servedWhileSpinning(events: string[]): number {
  const from = events.indexOf("spin"), to = events.indexOf("runaway");
  assert.ok(from >= 0, `the plugin never started spinning: ${events.join(" ")}`);
  assert.ok(to > from, `the runaway was answered before it spun: ${events.join(" ")}`);
  return events.slice(from, to).filter((e) => e === "served").length;
}

/**
 * Sends a runaway request to /spin and, until it is answered, requests to
 * /plain (no plugin) and /ok (another plugin) one after another; returns the
 * runaway's status and the order of events ("spin", "served", "runaway").
 */
async function duringRunaway(
  url: (p: string) => string,
  runawayPath = "/spin/x",
  headers: Record<string, string> = { "x-spin": "1" },
  warm = true,
) {
  // Warm-up: first requests pay connection set-up and compilation, not the plugin's stall.
  for (const p of warm ? ["/ok/w", "/plain/w", "/spin/w"] : []) assert.equal((await get(url(p))).status, 200);
  const spins = spinEvents();
  const events = spins.events;
  try {
    let done = false;
    const runaway = get(url(runawayPath), { headers }).then((r) => {
      done = true;
      events.push("runaway");
      return r.status;
    });
    for (let i = 0; !done && i < 1000; i++) {
      const r = await get(url(i % 2 ? "/plain/" + i : "/ok/" + i));
      assert.equal(r.status, 200, r.text);
      if (!done) events.push("served");
    }
    return { status: await runaway, events };
  } finally {
    spins.stop();
  }
}

/** The last error GET /plugins reports for plugin `name`. */
async function lastError(admin: (p: string) => string, name: string): Promise<string> {
  const list = JSON.parse((await get(admin("/plugins"))).text) as { name: string; last_error: string }[];
  return list.find((p) => p.name === name)!.last_error;
}

function yaml(app: TestUpstream, spin: string, isolation: string): string {
  return yamlOf({
    app,
    plugins: [
      { name: "spin", path: spin, timeout: "300ms", start_timeout: "300ms", isolation },
      { name: "good", path: KITCHEN["0.2.1"], config: "hok", isolation },
    ],
    pluginRoutes: [["spin", ["spin"]], ["ok", ["good"]], ["plain", []]],
  });
}

itest(
  "wasm timeslice: other routes are served while a runaway callback runs; it ends at its timeout",
  async () => {
    const app = startUpstream({ echo: "app" });
    const spin = await watModule(SPIN_WAT);
    const loom = await startLoom(yaml(app, spin, "timeslice"));
    try {
      const r = await duringRunaway(loom.url);
      assert.equal(r.status, 500);
      assert.match(await lastError(loom.admin, "spin"), /timeout|timed out/i, "ended by its timeout");
      // 300 ms of running time is ~150 slices of 2 ms, each followed by a turn of the event loop
      // (a loaded machine stretches the slices' wall time, not their number).
      const served = servedWhileSpinning(r.events);
      console.log(`timeslice: ${served} requests answered while the callback spun`);
      assert.ok(served >= 5, `only ${served} requests answered while the callback spun`);
      // The plugin works again (fresh VM) for requests that do not spin.
      assert.equal((await get(loom.url("/spin/y"))).status, 200);
    } finally {
      await loom.close();
      await app.close();
      await Deno.remove(spin);
    }
  },
);

itest("wasm timeslice: inline isolation keeps other requests waiting for the runaway callback", async () => {
  const app = startUpstream({ echo: "app" });
  const spin = await watModule(SPIN_WAT);
  const loom = await startLoom(yaml(app, spin, "inline"));
  try {
    const r = await duringRunaway(loom.url);
    assert.equal(r.status, 500);
    // The event loop was held: at most the request in flight when it spun (and one racing the answer).
    const served = servedWhileSpinning(r.events);
    console.log(`inline: ${served} requests answered while the callback spun`);
    assert.ok(served <= 2, `${served} requests answered while an inline callback held the event loop`);
  } finally {
    await loom.close();
    await app.close();
    await Deno.remove(spin);
  }
});

itest("wasm timeslice: a request to the same plugin waits for its suspended VM, then is served", async () => {
  const app = startUpstream({ echo: "app" });
  const spin = await watModule(SPIN_WAT);
  const loom = await startLoom(yaml(app, spin, "timeslice"));
  try {
    const spins = spinEvents();
    const order: string[] = [];
    try {
      const runaway = get(loom.url("/spin/x"), { headers: { "x-spin": "1" } }).then((r) => {
        order.push("runaway");
        return r;
      });
      await spins.spun;
      const second = await get(loom.url("/spin/y"));
      order.push("second");
      assert.equal(second.status, 200, second.text);
      assert.equal((await runaway).status, 500);
      assert.deepEqual(order, ["runaway", "second"], "the second request waited for the suspended VM");
    } finally {
      spins.stop();
    }
    const list = JSON.parse((await get(loom.admin("/plugins"))).text) as { name: string; vms: number }[];
    assert.equal(list.find((p) => p.name === "spin")!.vms, 2, "served by the recreated VM");
  } finally {
    await loom.close();
    await app.close();
    await Deno.remove(spin);
  }
});

itest(
  "wasm timeslice: a runaway VM start-up (on_configure) is sliced too, and stopped at its timeout",
  async () => {
    const app = startUpstream({ echo: "app" });
    const spin = await watModule(CONFIGURE_SPIN_WAT);
    const loom = await startLoom(yaml(app, spin, "timeslice"));
    try {
      for (const p of ["/ok/w", "/plain/w", "/spin/w"]) assert.equal((await get(loom.url(p))).status, 200);
      // The trap drops the VM; the next request to the plugin starts one whose on_configure runs away.
      assert.equal((await get(loom.url("/spin/t"), { headers: { "x-trap": "1" } })).status, 500);
      const r = await duringRunaway(loom.url, "/spin/y", {}, false);
      assert.equal(r.status, 500);
      const served = servedWhileSpinning(r.events);
      console.log(`start-up runaway: ${served} requests answered while on_configure spun`);
      assert.ok(served >= 5, `only ${served} requests answered while on_configure spun`);
      assert.match(await lastError(loom.admin, "spin"), /timeout|timed out/i);
    } finally {
      await loom.close();
      await app.close();
      await Deno.remove(spin);
    }
  },
);
