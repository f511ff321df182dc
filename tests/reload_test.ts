/**
 * Hot reload through the running gateway: file watch, POST /reload, invalid
 * configs rejected with located errors, reloads under traffic, in-flight
 * requests surviving the removal of their route, reload metrics.
 */
import assert from "node:assert/strict";
import { itest, startLoom, waitFor, writeConfig, yamlOf } from "./helpers.ts";
import { setLogOutput } from "../src/observability/logger.ts";
import { echo, get, loadLoop, metricValue, postReload } from "./gateway_util.ts";
import { startUpstream, type TestUpstream } from "./upstream.ts";

/** Config with one route per [id, upstream] pair, path /<id>; each upstream one endpoint. */
function config(ups: Record<string, TestUpstream>, routes: [string, string][], extra = ""): string {
  return yamlOf({
    upstreams: Object.entries(ups).map(([name, u]) => ({ name, endpoints: [u.address] })),
    routes: routes.map(([id, upstream]) => ({ id, path: `/${id}`, upstream })),
    extra,
  });
}

async function reloadCount(adminUrl: string, result: "success" | "failure"): Promise<number> {
  return metricValue((await get(adminUrl)).text, "loom_config_reloads_total", { result });
}

/** Captures log lines written while `fn` runs. */
async function captureLogs<T>(fn: () => Promise<T>): Promise<[T, string[]]> {
  const lines: string[] = [];
  const prev = setLogOutput((l) => lines.push(l));
  try {
    return [await fn(), lines];
  } finally {
    setLogOutput(prev);
  }
}

itest("reload: a watched config file picks up new routes (in-place writes and atomic renames)", async () => {
  const a = startUpstream({ echo: "a" });
  const b = startUpstream({ echo: "b" });
  const ups = { a, b };
  const loom = await startLoom(config(ups, [["one", "a"]]), { watch: true });
  try {
    assert.equal((await echo(loom.url("/one"))).tag, "a");
    assert.equal((await get(loom.url("/two"))).status, 404);

    // 1. An in-place write.
    const inPlace = (yaml: string) => {
      const text = yaml.replaceAll("${PORT}", String(loom.port)) +
        `\nadmin:\n  address: "127.0.0.1:${loom.adminPort}"\naccess_log:\n  enabled: false\n`;
      Deno.writeTextFileSync(loom.configPath, text);
    };
    inPlace(config(ups, [["one", "a"], ["two", "b"]]));
    await waitFor("route /two", async () => (await get(loom.url("/two"))).status === 200 || undefined);
    assert.equal((await echo(loom.url("/two"))).tag, "b");

    // 2. An editor-style save: write a temp file and rename it over the config.
    writeConfig(loom, config(ups, [["one", "a"], ["two", "b"], ["three", "a"]]));
    await waitFor("route /three", async () => (await get(loom.url("/three"))).status === 200 || undefined);

    // 3. Still watched after the rename.
    inPlace(config(ups, [["four", "b"]]));
    await waitFor("route /four", async () => (await get(loom.url("/four"))).status === 200 || undefined);
    assert.equal((await get(loom.url("/one"))).status, 404, "removed routes are gone");
  } finally {
    await loom.close();
    await a.close();
    await b.close();
  }
});

itest(
  "reload: POST /reload applies a new config; invalid configs are rejected with located errors",
  async () => {
    const a = startUpstream({ echo: "a" });
    const b = startUpstream({ echo: "b" });
    const ups = { a, b };
    const loom = await startLoom(config(ups, [["one", "a"]]));
    try {
      const metrics = loom.admin("/metrics");
      const ok0 = await reloadCount(metrics, "success");
      const fail0 = await reloadCount(metrics, "failure");

      writeConfig(loom, config(ups, [["one", "b"], ["two", "a"]]));
      const r1 = await postReload(loom);
      assert.deepEqual(r1, { status: 200, body: { result: "success" } });
      assert.equal((await echo(loom.url("/one"))).tag, "b", "an existing route re-pointed");
      assert.equal((await echo(loom.url("/two"))).tag, "a");
      assert.equal(await reloadCount(metrics, "success"), ok0 + 1);

      // Unknown key + missing upstream: both reported with file:line:col and YAML path.
      const bad = config(ups, [["one", "a"]]).replace(
        "routes: [",
        'routes: [{"id":"bad","path":"/bad","upstream":"nope","pathh":"/x"},',
      );
      writeConfig(loom, bad);
      const [r2, logs] = await captureLogs(() => postReload(loom));
      assert.equal(r2.status, 400);
      assert.equal(r2.body.result, "failure");
      const errs = r2.body.errors ?? [];
      const file = loom.configPath.replaceAll(/[.*+?^${}()|[\]\\]/g, "\\$&");
      assert.ok(
        errs.some((e) => new RegExp(`^${file}:\\d+:\\d+: routes\\[0\\]\\.pathh: `).test(e)),
        errs.join("\n"),
      );
      assert.ok(
        errs.some((e) => new RegExp(`^${file}:\\d+:\\d+: routes\\[0\\]\\.upstream: .*nope`).test(e)),
        errs.join("\n"),
      );
      assert.ok(logs.some((l) => l.includes("reload") && l.includes("routes[0].upstream")), logs.join("\n"));
      assert.equal(await reloadCount(metrics, "failure"), fail0 + 1);
      // The old config keeps serving.
      assert.equal((await echo(loom.url("/one"))).tag, "b");
      assert.equal((await echo(loom.url("/two"))).tag, "a");
      assert.equal((await get(loom.url("/bad"))).status, 404);
      const routes = await (await fetch(loom.admin("/routes"))).json() as { id: string }[];
      assert.deepEqual(routes.map((r) => r.id), ["one", "two"]);

      // YAML syntax error.
      Deno.writeTextFileSync(loom.configPath, "listeners: [\n  - name: x\n");
      const [r3] = await captureLogs(() => postReload(loom));
      assert.equal(r3.status, 400);
      assert.ok((r3.body.errors ?? []).every((e) => e.startsWith(loom.configPath)), JSON.stringify(r3.body));
      assert.equal((await echo(loom.url("/two"))).tag, "a");
      assert.equal(await reloadCount(metrics, "failure"), fail0 + 2);
    } finally {
      await loom.close();
      await a.close();
      await b.close();
    }
  },
);

itest("reload: a config the loader chokes on is rejected and later reloads still work", async () => {
  const a = startUpstream({ echo: "a" });
  const ups = { a };
  const loom = await startLoom(config(ups, [["one", "a"]]));
  try {
    // An unset environment variable in a listener address: loadConfig throws a TypeError on it
    // (src/config bug); the supervisor must still answer 400 and keep later reloads working.
    writeConfig(
      loom,
      config(ups, [["one", "a"]]).replace("127.0.0.1:${PORT}", "127.0.0.1:${LOOM_TEST_SURELY_UNSET_VAR}"),
    );
    const [r1] = await captureLogs(() => postReload(loom));
    assert.equal(r1.status, 400, JSON.stringify(r1.body));
    assert.equal((await echo(loom.url("/one"))).tag, "a");

    writeConfig(loom, config(ups, [["one", "a"], ["two", "a"]]));
    const r2 = await postReload(loom);
    assert.equal(r2.status, 200, JSON.stringify(r2.body));
    assert.equal((await echo(loom.url("/two"))).tag, "a");
  } finally {
    await loom.close();
    await a.close();
  }
});

itest("reload: 10 reloads under 50 concurrent clients lose no request", async () => {
  const a = startUpstream({ echo: "a" });
  const b = startUpstream({ echo: "b" });
  const c = startUpstream({ echo: "c" });
  const ups = { a, b, c };
  const cfgA = config(ups, [["stable", "a"], ["x", "b"]]);
  const cfgB = yamlOf({
    upstreams: [{ name: "a", endpoints: [b.address, c.address] }, { name: "c", endpoints: [c.address] }],
    routes: [{ id: "y", path: "/y", upstream: "c" }, { id: "stable", path: "/stable", upstream: "a" }],
  });
  const invalid = cfgA.replace('"upstream":"a"', '"upstream":"missing"');
  const loom = await startLoom(cfgA);
  try {
    const fail0 = await reloadCount(loom.admin("/metrics"), "failure");
    const load = loadLoop(loom.url("/stable"), 50);
    const results: number[] = [];
    const started = Date.now();
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 250));
      writeConfig(loom, i === 5 ? invalid : i % 2 === 0 ? cfgB : cfgA);
      results.push((await captureLogs(() => postReload(loom)))[0].status);
    }
    while (Date.now() - started < 3000) await new Promise((r) => setTimeout(r, 50));
    await load.stop();
    const { ok, failures } = load;
    assert.deepEqual(results, [200, 200, 200, 200, 200, 400, 200, 200, 200, 200]);
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} failed of ${ok + failures.length}`);
    assert.ok(ok > 500, `only ${ok} requests in 3 s`);
    assert.equal(await reloadCount(loom.admin("/metrics"), "failure"), fail0 + 1);
  } finally {
    await loom.close();
    await a.close();
    await b.close();
    await c.close();
  }
});

itest("reload: in-flight requests on a removed route finish with 200", async () => {
  const slow = startUpstream({ echo: "slow", delayMs: 1000 });
  const fast = startUpstream({ echo: "fast" });
  const ups = { slow, fast };
  const loom = await startLoom(config(ups, [["slow", "slow"], ["fast", "fast"]]));
  try {
    const inflight = Array.from({ length: 5 }, () => get(loom.url("/slow")));
    await waitFor("requests at the slow upstream", () => slow.seen.length === 5 || undefined, 3000);
    writeConfig(loom, config({ fast }, [["fast", "fast"]]));
    assert.equal((await postReload(loom)).status, 200);
    assert.equal((await get(loom.url("/slow"))).status, 404, "the route is gone for new requests");
    for (const r of await Promise.all(inflight)) {
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.text).tag, "slow");
    }
    assert.equal((await echo(loom.url("/fast"))).tag, "fast");
  } finally {
    await loom.close();
    await slow.close();
    await fast.close();
  }
});
