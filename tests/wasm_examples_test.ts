/**
 * The example plugins in plugins/ (add-headers, auth, rate-limit,
 * body-rewrite) doing their job in the running gateway.
 */
import assert from "node:assert/strict";
import { itest, startLoom, startUpstream } from "./helpers.ts";
import { get } from "./gateway_util.ts";
import { type Echoed, jsonEcho, pluginYaml } from "./wasm_util.ts";

const root = new URL("../plugins/", import.meta.url).pathname;

itest("example plugins: add-headers, auth via http_call, rate-limit, body-rewrite", async () => {
  const app = jsonEcho();
  const auth = startUpstream(async (req) => {
    const ok = (await req.text()) === "Bearer good";
    return new Response(ok ? null : "no", { status: ok ? 204 : 403 });
  });
  const loom = await startLoom(pluginYaml(
    app,
    [
      {
        name: "hdr",
        path: root + "add-headers/add_headers.wasm",
        phase: "on_response_headers",
        config: "+x-gateway: loom\n-x-internal\n>x-served-by: loom\n<x-upstream-secret\n",
      },
      { name: "auth", path: root + "auth/auth.wasm" },
      { name: "rl", path: root + "rate-limit/rate_limit.wasm", config: "3" },
      { name: "body", path: root + "body-rewrite/body_rewrite.wasm", phase: "on_request_body", config: "ao" },
    ],
    [["hdr", ["hdr"]], ["auth", ["auth"]], ["rl", ["rl"]], ["body", ["body"]]],
    auth,
  ));
  try {
    const h = await get(loom.url("/hdr/x"), { headers: { "x-internal": "1" } });
    const e = JSON.parse(h.text) as Echoed;
    assert.equal(e.headers["x-gateway"], "loom");
    assert.equal(e.headers["x-internal"], undefined);
    assert.equal(h.headers.get("x-served-by"), "loom");
    assert.equal(h.headers.get("x-upstream-secret"), null);

    const good = await get(loom.url("/auth/x"), { headers: { authorization: "Bearer good" } });
    assert.equal(good.status, 200, good.text);
    assert.equal((JSON.parse(good.text) as Echoed).headers["x-auth"], "ok");
    assert.equal((await get(loom.url("/auth/x"), { headers: { authorization: "Bearer bad" } })).status, 401);
    assert.equal((await get(loom.url("/auth/x"))).status, 401);

    const codes = [];
    for (let i = 0; i < 5; i++) codes.push((await get(loom.url("/rl/x"))).status);
    assert.deepEqual(codes, [200, 200, 200, 429, 429]);

    const b = await get(loom.url("/body/x"), { method: "POST", body: "banana" });
    assert.equal((JSON.parse(b.text) as Echoed).body, "bonono");
  } finally {
    await loom.close();
    await app.close();
    await auth.close();
  }
});
