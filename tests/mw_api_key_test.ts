/**
 * The `api_key` middleware through a running gateway, on HTTP/1.1 and h2c:
 * keys in a header or the query, expiry, metadata and name sent upstream
 * (spoofed values dropped), the key stripped upstream and masked in the
 * access log, a key file re-read on reload, and `GET /config` showing no
 * plain key (nor the jwt middleware's HMAC secret).
 */
import assert from "node:assert/strict";
import { bothProtocols, startEcho } from "./mw_auth_util.ts";
import { freePort, itest, startLoom, waitFor, writeConfig } from "./helpers.ts";

itest(
  "api_key: header and query keys over HTTP/1.1 and h2c; stripped, masked, reloaded, never shown",
  async () => {
    const app = startEcho();
    const h2cPort = freePort();
    const dir = await Deno.makeTempDir();
    const keyFile = `${dir}/keys.yaml`;
    const accessLog = `${dir}/access.log`;
    await Deno.writeTextFile(keyFile, `- { name: from-file, key: file-key-0001 }\n`);
    const yaml = (fileKeyNote: string) => `
listeners:
  - { name: http, address: "127.0.0.1:\${PORT}", protocol: http }
  - { name: h2c, address: "127.0.0.1:${h2cPort}", protocol: h2c }
upstreams: [{ name: app, endpoints: ["${app.address}"] }]
access_log: { enabled: true, path: "${accessLog}" }
routes:
  - id: keyed
    path: /api/*
    upstream: app
    middleware:
      - api_key:
          query: api_key
          file: "${keyFile}"
          keys:
            - { name: alice, key: alice-plain-key-0001, metadata: { x-plan: gold } }
            - { name: old, key: old-plain-key-0001, expires: "2020-01-01T00:00:00Z" }
  - id: signed
    path: /jwt/*
    upstream: app
    middleware:
      - jwt: { keys: [{ secret: "hmac-secret-that-is-long-enough-0001", algorithms: [HS256] }] }
# ${fileKeyNote}
`;
    const loom = await startLoom(yaml("v1"));
    const { protocols, close } = bothProtocols(loom, h2cPort);
    try {
      for (const [proto, base, client] of protocols) {
        const ok = await fetch(base + "/api/x", {
          headers: { "x-api-key": "alice-plain-key-0001", "x-consumer": "mallory", "x-plan": "free" },
          client,
        });
        assert.equal(ok.status, 200, proto);
        const seen = await ok.json();
        assert.equal(seen.headers["x-api-key"], undefined, `${proto}: key stripped`);
        assert.equal(seen.headers["x-consumer"], "alice", proto);
        assert.equal(seen.headers["x-plan"], "gold", proto);

        const expiredInQuery = await fetch(base + "/api/x?api_key=old-plain-key-0001", { client });
        await expiredInQuery.body?.cancel();
        assert.equal(expiredInQuery.status, 401, proto);
        const q = await fetch(base + "/api/x?a=1&api_key=file-key-0001", { client });
        assert.equal(q.status, 200, proto);
        const qs = await q.json();
        assert.equal(qs.search, "?a=1", `${proto}: query key stripped`);
        assert.equal(qs.headers["x-consumer"], "from-file");

        for (
          const [what, headers, status] of [
            ["missing", {}, 401],
            ["invalid", { "x-api-key": "nope" }, 401],
            ["expired", { "x-api-key": "old-plain-key-0001" }, 401],
          ] as const
        ) {
          const r = await fetch(base + "/api/x", { headers, client });
          const body = await r.text();
          assert.equal(r.status, status, `${proto} ${what}`);
          assert.ok(!body.includes("plain-key"), body);
        }
      }

      // The key file is re-read with the config.
      await Deno.writeTextFile(keyFile, `- { name: rotated, key: file-key-0002 }\n`);
      writeConfig(loom, yaml("v2"));
      assert.deepEqual(await loom.sup.reload(), { ok: true });
      for (const [proto, base, client] of protocols) {
        const gone = await fetch(base + "/api/x", { headers: { "x-api-key": "file-key-0001" }, client });
        await gone.body?.cancel();
        assert.equal(gone.status, 401, proto);
        const fresh = await fetch(base + "/api/x", { headers: { "x-api-key": "file-key-0002" }, client });
        assert.equal((await fresh.json()).headers["x-consumer"], "rotated", proto);
      }

      // GET /config: no plain key (only hashes were ever kept), no HMAC secret.
      const config = await (await fetch(loom.admin("/config"))).text();
      assert.ok(!config.includes("alice-plain-key-0001"), "plain API key in /config");
      assert.ok(!config.includes("hmac-secret-that-is-long-enough-0001"), "HMAC secret in /config");

      // The access log shows the query key masked.
      const log = await waitFor("access log lines", async () => {
        const text = await Deno.readTextFile(accessLog).catch(() => "");
        return text.includes("api_key=") ? text : undefined;
      });
      assert.ok(!log.includes("file-key-0001") && !log.includes("old-plain-key-0001"), log);
      assert.match(log, /"path":"\/api\/x","query":"a=1&api_key=\[REDACTED\]"/);
      assert.match(log, /"rejection":"api_key\/expired"/);
    } finally {
      close();
      await loom.close();
      await app.server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
