/**
 * Global plugin chains (`global: true` on a plugin): they run on every
 * route, merged with the route's own plugins in priority order, once each.
 */
import assert from "node:assert/strict";
import { itest, startLoom, writeConfig, yamlOf } from "./helpers.ts";
import { get, postReload } from "./gateway_util.ts";
import { type Echo, startUpstream } from "./upstream.ts";

const ADD = new URL("../plugins/add-headers/add_headers.wasm", import.meta.url).pathname;

itest("wasm global plugins: every route, merged by priority, no duplicates, reloadable", async () => {
  const app = startUpstream({ echo: "app" });
  const plugins = [
    { name: "g-high", path: ADD, config: "+x-order: g-high\n", priority: 10, global: true },
    {
      name: "g-low",
      path: ADD,
      config: "+x-order: g-low\n>x-global: yes\n",
      priority: -10,
      global: true,
      phase: "on_response_headers",
    },
    { name: "r", path: ADD, config: "+x-order: r\n", priority: 0 },
  ];
  const yaml = yamlOf({ app, plugins, pluginRoutes: [["plain", []], ["both", ["r", "g-high"]]] });
  const loom = await startLoom(yaml);
  try {
    const order = async (route: string) => {
      const res = await get(loom.url(`/${route}/x`));
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers.get("x-global"), "yes");
      return (JSON.parse(res.text) as Echo).headers["x-order"];
    };
    assert.equal(await order("plain"), "g-high, g-low");
    // The route also lists g-high: it still runs once, in priority order with the route's plugin.
    assert.equal(await order("both"), "g-high, r, g-low");

    // Dropping `global` on reload takes the plugin off routes that do not list it.
    plugins[0].global = false;
    writeConfig(loom, yamlOf({ app, plugins, pluginRoutes: [["plain", []], ["both", ["r", "g-high"]]] }));
    assert.equal((await postReload(loom)).status, 200);
    assert.equal(await order("plain"), "g-low");
    assert.equal(await order("both"), "g-high, r, g-low");
  } finally {
    await loom.close();
    await app.close();
  }
});
