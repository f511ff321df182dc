/**
 * Plugin isolation in the running gateway: a trapping plugin, an endless
 * loop and a memory hog each fail alone (500, or pass with fail_open), their
 * VM is recreated, and concurrent requests on other routes keep succeeding.
 */
import assert from "node:assert/strict";
import { itest, startLoom, yamlOf } from "./helpers.ts";
import { get, metricValue } from "./gateway_util.ts";
import { KITCHEN } from "./wasm_util.ts";
import { startUpstream } from "./upstream.ts";

interface Info {
  name: string;
  vms: number;
  errors: number;
  last_error: string | null;
  running: boolean;
}

async function plugins(loom: { admin(p: string): string }): Promise<Record<string, Info>> {
  const list = JSON.parse((await get(loom.admin("/plugins"))).text) as Info[];
  return Object.fromEntries(list.map((p) => [p.name, p]));
}

/** Fires `n` requests at /ok while `bad` runs; all must succeed. */
async function alongside(url: (p: string) => string, bad: () => Promise<void>, n = 30): Promise<void> {
  const ok = Array.from({ length: n }, async (_, i) => {
    await new Promise((r) => setTimeout(r, i * 2));
    const r = await get(url("/ok/" + i), { headers: { "x-remove-me": "1" } });
    assert.equal(r.status, 200, r.text);
    assert.equal(JSON.parse(r.text).headers["x-wasm-added"], "ok");
  });
  await Promise.all([bad(), ...ok]);
}

itest("wasm isolation: a trap answers 500 (or passes when fail_open), the VM is recreated", async () => {
  const app = startUpstream({ echo: "app" });
  const loom = await startLoom(yamlOf({
    app,
    plugins: [
      { name: "trap", path: KITCHEN["0.2.1"], config: "x" },
      { name: "trap-open", path: KITCHEN["0.2.1"], config: "x", failure_policy: "fail_open" },
      { name: "good", path: KITCHEN["0.2.1"], config: "hok" },
    ],
    pluginRoutes: [["trap", ["trap"]], ["open", ["trap-open"]], ["ok", ["good"]]],
  }));
  try {
    await alongside(loom.url, async () => {
      for (let i = 0; i < 3; i++) {
        const r = await get(loom.url("/trap/x"));
        assert.equal(r.status, 500);
        assert.match(r.text, /plugin failed/);
        assert.equal((await get(loom.url("/open/x"))).status, 200);
      }
    });
    const info = await plugins(loom);
    assert.equal(info.trap.errors, 3);
    assert.ok(info.trap.vms >= 3, `VM recreated after each trap: ${info.trap.vms}`);
    assert.match(info.trap.last_error!, /unreachable/);
    assert.equal(info.good.errors, 0);
    assert.equal(info.good.vms, 1);
    const m = (await get(loom.admin("/metrics"))).text;
    assert.equal(metricValue(m, "loom_plugin_errors_total", { plugin: "trap" }), 3);
  } finally {
    await loom.close();
    await app.close();
  }
});

itest(
  "wasm isolation: an endless loop is stopped at its timeout; other routes keep being served",
  async () => {
    const app = startUpstream({ echo: "app" });
    const loom = await startLoom(yamlOf({
      app,
      plugins: [
        { name: "loop", path: KITCHEN["0.2.1"], config: "l", timeout: "30ms" },
        { name: "good", path: KITCHEN["0.2.1"], config: "hok" },
      ],
      pluginRoutes: [["loop", ["loop"]], ["ok", ["good"]]],
    }));
    try {
      await alongside(loom.url, async () => {
        const t0 = performance.now();
        const r = await get(loom.url("/loop/x"));
        const ms = performance.now() - t0;
        assert.equal(r.status, 500);
        assert.ok(ms < 1000, `stopped after ${ms} ms`);
      });
      const info = await plugins(loom);
      assert.match(info.loop.last_error!, /timeout/);
      assert.equal(info.good.errors, 0);
      // The loop plugin still answers (a fresh VM each time), the gateway is fine.
      assert.equal((await get(loom.url("/loop/y"))).status, 500);
      assert.equal((await get(loom.url("/ok/z"))).status, 200);
    } finally {
      await loom.close();
      await app.close();
    }
  },
);

itest("wasm isolation: memory_limit caps a memory hog; it fails alone", async () => {
  const app = startUpstream({ echo: "app" });
  const loom = await startLoom(yamlOf({
    app,
    plugins: [
      { name: "hog", path: KITCHEN["0.2.1"], config: "g", memory_limit: "2MB" },
      { name: "good", path: KITCHEN["0.2.1"], config: "hok" },
    ],
    pluginRoutes: [["hog", ["hog"]], ["ok", ["good"]]],
  }));
  try {
    await alongside(loom.url, async () => {
      assert.equal((await get(loom.url("/hog/x"))).status, 500);
    });
    const info = await plugins(loom);
    assert.match(info.hog.last_error!, /unreachable/);
  } finally {
    await loom.close();
    await app.close();
  }
  // A module whose initial memory exceeds its limit is a config error: Loom refuses to start with it.
  await assert.rejects(
    startLoom(yamlOf({
      app,
      plugins: [{ name: "tiny", path: KITCHEN["0.2.1"], config: "hok", memory_limit: "512KB" }],
      pluginRoutes: [["tiny", ["tiny"]]],
    })),
    /memory_limit/,
  );
});

itest("wasm isolation: a trap fails the VM's other paused requests cleanly", async () => {
  const app = startUpstream({ echo: "app" });
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => release = r);
  const auth = startUpstream(async () => {
    await gate;
    return new Response("yes");
  });
  const loom = await startLoom(yamlOf({
    app,
    plugins: [
      { name: "auth", path: KITCHEN["0.2.1"], config: "a" },
      { name: "good", path: KITCHEN["0.2.1"], config: "hok" },
    ],
    pluginRoutes: [["a", ["auth"]], ["ok", ["good"]]],
    auth,
  }));
  try {
    const paused = Array.from(
      { length: 3 },
      (_, i) => get(loom.url("/a/" + i), { headers: { "x-token": "t" } }),
    );
    await new Promise((r) => setTimeout(r, 100));
    const crash = await get(loom.url("/a/crash"), { headers: { "x-token": "t", "x-crash": "1" } });
    assert.equal(crash.status, 500);
    release();
    const res = await Promise.all(paused);
    assert.deepEqual(res.map((r) => r.status), [500, 500, 500]);
    assert.equal((await get(loom.url("/ok/x"))).status, 200);
    // The recreated VM serves new requests.
    const again = await get(loom.url("/a/again"), { headers: { "x-token": "t" } });
    assert.equal(again.status, 200, again.text);
    assert.equal(app.seen.filter((s) => s.url.includes("/a/")).length, 1);
  } finally {
    await loom.close();
    await app.close();
    await auth.close();
  }
});
