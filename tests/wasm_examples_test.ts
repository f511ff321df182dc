/**
 * The example plugins in plugins/ (add-headers, auth, rate-limit,
 * body-rewrite) doing their job in the running gateway.
 */
import assert from "node:assert/strict";
import { itest, startLoom, yamlOf } from "./helpers.ts";
import { get } from "./gateway_util.ts";
import { type Echo, startUpstream } from "./upstream.ts";
import { TestCa } from "./tls_util.ts";

const root = new URL("../plugins/", import.meta.url).pathname;

itest("example plugins: add-headers, auth via http_call, rate-limit, body-rewrite", async () => {
  const app = startUpstream({ echo: "app" });
  const auth = startUpstream(async (req) => {
    const ok = (await req.text()) === "Bearer good";
    return new Response(ok ? null : "no", { status: ok ? 204 : 403 });
  });
  const loom = await startLoom(yamlOf({
    app,
    plugins: [
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
    pluginRoutes: [["hdr", ["hdr"]], ["auth", ["auth"]], ["rl", ["rl"]], ["body", ["body"]]],
    auth,
  }));
  try {
    const h = await get(loom.url("/hdr/x"), { headers: { "x-internal": "1" } });
    const e = JSON.parse(h.text) as Echo;
    assert.equal(e.headers["x-gateway"], "loom");
    assert.equal(e.headers["x-internal"], undefined);
    assert.equal(h.headers.get("x-served-by"), "loom");
    assert.equal(h.headers.get("x-upstream-secret"), null);

    const good = await get(loom.url("/auth/x"), { headers: { authorization: "Bearer good" } });
    assert.equal(good.status, 200, good.text);
    assert.equal((JSON.parse(good.text) as Echo).headers["x-auth"], "ok");
    assert.equal((await get(loom.url("/auth/x"), { headers: { authorization: "Bearer bad" } })).status, 401);
    assert.equal((await get(loom.url("/auth/x"))).status, 401);

    const codes = [];
    for (let i = 0; i < 5; i++) codes.push((await get(loom.url("/rl/x"))).status);
    assert.deepEqual(codes, [200, 200, 200, 429, 429]);

    const b = await get(loom.url("/body/x"), { method: "POST", body: "banana" });
    assert.equal((JSON.parse(b.text) as Echo).body, "bonono");
  } finally {
    await loom.close();
    await app.close();
    await auth.close();
  }
});

itest(
  "example auth plugin: http_call to a TLS upstream (ca_file + server_name), on kept-alive connections",
  async () => {
    const app = startUpstream({ echo: "app" });
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const leaf = await ca.leaf("auth", "auth.test", ["DNS:auth.test"]);
    const conns = new Set<string>();
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      cert: Deno.readTextFileSync(leaf.cert),
      key: Deno.readTextFileSync(leaf.key),
      onListen: () => {},
    }, async (req, info) => {
      conns.add(`${info.remoteAddr.hostname}:${info.remoteAddr.port}`);
      const ok = (await req.text()) === "Bearer good";
      return new Response(ok ? null : "no", { status: ok ? 204 : 403 });
    });
    const yaml = yamlOf({
      app,
      plugins: [{ name: "auth", path: root + "auth/auth.wasm" }],
      pluginRoutes: [["auth", ["auth"]]],
    })
      .replace(
        /upstreams: .*\n/,
        `upstreams: ${
          JSON.stringify([
            { name: "app", endpoints: [app.address] },
            {
              name: "auth",
              endpoints: [`127.0.0.1:${server.addr.port}`],
              tls: { ca_file: ca.cert, server_name: "auth.test" },
            },
          ])
        }\n`,
      );
    const loom = await startLoom(yaml);
    try {
      for (let i = 0; i < 5; i++) {
        const good = await get(loom.url("/auth/x"), { headers: { authorization: "Bearer good" } });
        assert.equal(good.status, 200, good.text);
        assert.equal((JSON.parse(good.text) as Echo).headers["x-auth"], "ok");
        assert.equal(
          (await get(loom.url("/auth/x"), { headers: { authorization: "Bearer bad" } })).status,
          401,
        );
      }
      // The calls share the upstream's pooled (TLS, keep-alive) connections.
      assert.ok(conns.size <= 2, `${conns.size} connections for 10 sequential calls`);
    } finally {
      await loom.close();
      await app.close();
      await server.shutdown();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl"] },
);
