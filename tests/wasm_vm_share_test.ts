/**
 * Plugins with the same vm_id and module share one VM, as in Envoy (issue 14
 * item 8), through a running gateway with the C test plugin
 * plugins/test/queues.c: one start of the module, a root context per plugin
 * with its own configuration, a shared queue registered by one plugin and
 * fed by another, a trap that gives every plugin of the VM one fresh VM, and
 * a reload that adds a changed plugin's root context to the running VM,
 * and the plugins' stdout/stderr logged under the plugin that wrote it.
 */
import assert from "node:assert/strict";
import { type ConfigParts, itest, startLoom, waitFor, writeConfig, yamlOf } from "./helpers.ts";
import { echo, get, postReload } from "./gateway_util.ts";
import { PLUGINS, type PluginSpec } from "./wasm_util.ts";
import { startUpstream } from "./upstream.ts";
import { getLogLevel, setLogLevel, setLogOutput } from "../src/observability/logger.ts";

const QUEUES = PLUGINS + "queues.wasm";

interface Info {
  name: string;
  vms: number;
  running: boolean;
  errors: number;
  vm_shared_with: string[];
}

async function plugins(loom: { admin(p: string): string }): Promise<Record<string, Info>> {
  const list = JSON.parse((await get(loom.admin("/plugins"))).text) as Info[];
  return Object.fromEntries(list.map((p) => [p.name, p]));
}

/** Waits until every plugin named runs (the VM and each root context start in the background). */
function running(loom: { admin(p: string): string }, names: string[]): Promise<Record<string, Info>> {
  return waitFor(`plugins ${names.join(", ")} running`, async () => {
    const info = await plugins(loom);
    return names.every((n) => info[n]?.running) && info;
  });
}

/** The x-q-* headers the plugin set on the request, as the echo upstream saw them. */
async function q(url: string, action?: string, vm?: string): Promise<Record<string, string>> {
  const headers: Record<string, string> = {};
  if (action !== undefined) headers["x-q"] = action;
  if (vm !== undefined) headers["x-q-vm"] = vm;
  const e = await echo(url, { headers });
  return Object.fromEntries(Object.entries(e.headers).filter(([k]) => k.startsWith("x-q-")));
}

const shared = (name: string, config: string): PluginSpec => ({
  name,
  path: QUEUES,
  vm_id: "shared",
  config,
  failure_policy: "fail_closed",
});

/** Plugins qa (configuration "reg-A": it registers the queue "jobs") and qb sharing one VM, on routes /a and /b. */
const pairYaml = (app: ConfigParts["app"], bConfig: string): string =>
  yamlOf({
    app,
    plugins: [shared("qa", "reg-A"), shared("qb", bConfig)],
    pluginRoutes: [["a", ["qa"]], ["b", ["qb"]]],
  });

itest(
  "wasm vm sharing: one VM per vm_id and module, a root context per plugin, queues between plugins",
  async () => {
    const app = startUpstream({ echo: "app" });
    const loom = await startLoom(yamlOf({
      app,
      plugins: [
        shared("qa", "reg-A"),
        shared("qb", "B"),
        { name: "qc", path: QUEUES, vm_id: "other", config: "C" },
        // An empty vm_id is never shared: each of these has a VM of its own.
        { name: "qd", path: QUEUES, config: "D" },
        { name: "qe", path: QUEUES, config: "E" },
      ],
      pluginRoutes: [["a", ["qa"]], ["b", ["qb"]], ["c", ["qc"]], ["d", ["qd"]], ["e", ["qe"]]],
    }));
    try {
      const info = await running(loom, ["qa", "qb", "qc", "qd", "qe"]);
      assert.deepEqual(info.qa.vm_shared_with, ["qb"]);
      assert.deepEqual(info.qb.vm_shared_with, ["qa"]);
      for (const n of ["qc", "qd", "qe"]) assert.deepEqual(info[n].vm_shared_with, [], n);
      for (const n of ["qa", "qb", "qc", "qd", "qe"]) assert.equal(info[n].vms, 1, n);

      // qa and qb: the module started once; a root context each (on_vm_start and on_configure per root
      // context, as proxy-wasm-cpp-host), each with its own configuration; one memory counts both.
      const a = await q(loom.url("/a/x"));
      const b = await q(loom.url("/b/x"));
      assert.equal(a["x-q-plugin"], "reg-A");
      assert.equal(b["x-q-plugin"], "B");
      assert.notEqual(a["x-q-root"], b["x-q-root"]);
      for (const h of [a, b]) {
        assert.equal(h["x-q-inits"], "1");
        assert.equal(h["x-q-vm-starts"], "2");
        assert.equal(h["x-q-configures"], "2");
      }
      assert.equal(Number(b["x-q-count"]), Number(a["x-q-count"]) + 1);
      // Another vm_id, or none: VMs of their own.
      for (const [route, config] of [["c", "C"], ["d", "D"], ["e", "E"]]) {
        const h = await q(loom.url(`/${route}/x`));
        assert.equal(h["x-q-plugin"], config);
        assert.equal(h["x-q-inits"], "1", route);
        assert.equal(h["x-q-vm-starts"], "1", route);
        assert.equal(h["x-q-configures"], "1", route);
        assert.equal(h["x-q-count"], "1", route);
      }

      // qa's root context registered "jobs"; qb resolves it by vm_id and name and enqueues;
      // on_queue_ready goes to qa's root context, which writes shared data qb reads back.
      assert.equal((await q(loom.url("/b/x"), "enqueue:job1"))["x-q-enq"], "0:0");
      await waitFor(
        "qa's root context dequeues job1",
        async () => (await q(loom.url("/b/x"), "read"))["x-q-got"] === `${a["x-q-root"]}:reg-A:job1`,
      );
      // A plugin of another VM resolves the queue by vm_id too; under its own vm_id there is none.
      assert.equal((await q(loom.url("/c/x"), "enqueue:job2", "shared"))["x-q-enq"], "0:0");
      await waitFor(
        "qa's root context dequeues job2",
        async () => (await q(loom.url("/c/x"), "read"))["x-q-got"] === `${a["x-q-root"]}:reg-A:job2`,
      );
      assert.equal((await q(loom.url("/c/x"), "enqueue:job3"))["x-q-enq"], "1:99");
    } finally {
      await loom.close();
      await app.close();
    }
  },
);

itest(
  "wasm vm sharing: a trap gives every plugin of the VM one fresh VM, each root context configured again",
  async () => {
    const app = startUpstream({ echo: "app" });
    const loom = await startLoom(pairYaml(app, "B"));
    try {
      await running(loom, ["qa", "qb"]);
      assert.equal((await q(loom.url("/b/x")))["x-q-count"], "1");
      assert.equal((await get(loom.url("/a/x"), { headers: { "x-q": "trap" } })).status, 500);
      let info = await plugins(loom);
      assert.equal(info.qa.running, false);
      assert.equal(info.qb.running, false, "qb lost the VM too");

      // qb's next request starts one VM for both: the module's start once, both root contexts again.
      const b = await q(loom.url("/b/x"));
      assert.equal(b["x-q-plugin"], "B");
      assert.equal(b["x-q-inits"], "1");
      assert.equal(b["x-q-vm-starts"], "2");
      assert.equal(b["x-q-configures"], "2");
      assert.equal(b["x-q-count"], "1", "a fresh memory");
      const a = await q(loom.url("/a/x"));
      assert.equal(a["x-q-plugin"], "reg-A");
      assert.equal(a["x-q-count"], "2");
      info = await plugins(loom);
      assert.equal(info.qa.vms, 2);
      assert.equal(info.qb.vms, 2);
      // The failure is charged to the plugin whose callback trapped.
      assert.equal(info.qa.errors, 1);
      assert.equal(info.qb.errors, 0);

      // qa's new root context registered the queue again: items reach it.
      assert.equal((await q(loom.url("/b/x"), "enqueue:after"))["x-q-enq"], "0:0");
      await waitFor(
        "the new root context dequeues",
        async () => (await q(loom.url("/b/x"), "read"))["x-q-got"] === `${a["x-q-root"]}:reg-A:after`,
      );
    } finally {
      await loom.close();
      await app.close();
    }
  },
);

itest(
  "wasm vm sharing: a reload that changes one plugin gives it a new root context in the running VM",
  async () => {
    const app = startUpstream({ echo: "app" });
    const loom = await startLoom(pairYaml(app, "B"));
    try {
      await running(loom, ["qa", "qb"]);
      const before = await q(loom.url("/b/x"));
      writeConfig(loom, pairYaml(app, "B2"));
      assert.equal((await postReload(loom)).status, 200);
      const b = await waitFor("qb with its new configuration", async () => {
        const h = await q(loom.url("/b/x"));
        return h["x-q-plugin"] === "B2" && h;
      });
      // The same VM (its memory counted on), a third root context configured in it.
      assert.equal(b["x-q-inits"], "1");
      assert.equal(b["x-q-configures"], "3");
      assert.notEqual(b["x-q-root"], before["x-q-root"]);
      assert.ok(Number(b["x-q-count"]) > Number(before["x-q-count"]));
      assert.equal((await q(loom.url("/a/x")))["x-q-plugin"], "reg-A");
      const info = await plugins(loom);
      assert.equal(info.qa.vms, 1);
      assert.equal(info.qb.vms, 1);
      assert.deepEqual(info.qb.vm_shared_with, ["qa"], "the retired qb left the VM");
      // The old qb's root context is torn down once its requests are done (on_done, on_delete); qa keeps serving.
      await waitFor(
        "the retired root context deleted",
        async () => (await q(loom.url("/a/x")))["x-q-root-deletes"] === "1",
      );
      assert.equal((await q(loom.url("/b/x")))["x-q-plugin"], "B2");
      assert.equal((await q(loom.url("/a/x")))["x-q-plugin"], "reg-A", "qa's root context is untouched");
    } finally {
      await loom.close();
      await app.close();
    }
  },
);

itest(
  "wasm vm sharing: what a plugin writes to stdout and stderr is logged under the plugin whose callback wrote it",
  async () => {
    const app = startUpstream({ echo: "app" });
    const loom = await startLoom(pairYaml(app, "B"));
    const lines: string[] = [];
    const prevOutput = setLogOutput((l) => void lines.push(l));
    const prevLevel = getLogLevel();
    setLogLevel("info");
    try {
      await running(loom, ["qa", "qb"]);
      // The callback's output is logged when it ends, before the request goes upstream.
      await q(loom.url("/b/x"), "say");
      await q(loom.url("/a/x"), "say");
      const said = lines.map((l) => JSON.parse(l) as Record<string, string>)
        .filter((e) => e.msg.startsWith("plugin: "))
        .map((e) => `${e.level} ${e.plugin} ${e.msg}`);
      // qb is the VM's second plugin (the VM's output was all logged under the first, qa).
      assert.deepEqual(said, [
        "info qb plugin: B says hi",
        "warn qb plugin: B warns",
        "info qa plugin: reg-A says hi",
        "warn qa plugin: reg-A warns",
      ]);
    } finally {
      setLogOutput(prevOutput);
      setLogLevel(prevLevel);
      await loom.close();
      await app.close();
    }
  },
);

/** The SDK filters of plugins/sdk-<lang>/ (tests/wasm_sdk_util.ts): their x-<lang>-config header shows the configuration. */
const SDKS = ["go", "rust", "cpp"] as const;

itest(
  "wasm vm sharing: Go, Rust and C++ SDK filters keep a configuration per root context in one VM",
  async () => {
    const app = startUpstream({ echo: "app" });
    const defs: PluginSpec[] = [];
    const routes: [string, string[]][] = [];
    for (const lang of SDKS) {
      const path = new URL(`../plugins/sdk-${lang}/http_filter.wasm`, import.meta.url).pathname;
      for (const config of ["one", "two", "reject"]) {
        const name = `${lang}-${config}`;
        defs.push({ name, path, root_id: `loom_${lang}`, vm_id: "sdk", config, phase: "on_request_headers" });
        routes.push([name, [name]]);
      }
    }
    const loom = await startLoom(yamlOf({ app, plugins: defs, pluginRoutes: routes }));
    try {
      // The good ones run; the refused ones joined their VM and were refused (modules load in the background).
      const info = await waitFor("SDK plugins started or refused", async () => {
        const info = await plugins(loom);
        const settled = (l: string) =>
          info[`${l}-one`]?.running && info[`${l}-two`]?.running && info[`${l}-reject`]?.errors > 0;
        return SDKS.every(settled) && info;
      });
      for (const lang of SDKS) {
        assert.deepEqual(info[`${lang}-one`].vm_shared_with, [`${lang}-reject`, `${lang}-two`]);
        assert.equal(info[`${lang}-one`].vms, 1);
        // Each root context has its own configuration (the SDKs keep a plugin context per root context id).
        for (const config of ["one", "two", "one"]) {
          const e = await echo(loom.url(`/${lang}-${config}/x`));
          assert.equal(e.headers[`x-${lang}-config`], config, lang);
        }
        // The one refusing its configuration fails alone; its VM serves the others.
        assert.equal((await get(loom.url(`/${lang}-reject/x`))).status, 500);
        assert.equal(info[`${lang}-reject`].running, false);
        assert.ok(info[`${lang}-reject`].errors >= 1);
        assert.equal(info[`${lang}-one`].errors, 0);
        assert.equal(info[`${lang}-two`].errors, 0);
      }
    } finally {
      await loom.close();
      await app.close();
    }
  },
);
