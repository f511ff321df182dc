/**
 * The client-IP rule and ip_filter through a running gateway (HTTP/1.1 and
 * h2c): X-Forwarded-For names the client only when the peer is a trusted
 * proxy; the upstream sees the chain with the peer appended.
 */
import assert from "node:assert/strict";
import { itest } from "./helpers.ts";
import { startDualLoom } from "./mw_auth_util.ts";
import { startUpstream } from "./upstream.ts";

function config(up: string, trusted: string): string {
  return `
upstreams: [{ name: up, endpoints: ["${up}"] }]
trusted_proxies: ${trusted}
routes:
  - id: office
    path: /office/*
    upstream: up
    middleware:
      - ip_filter: { allow: ["198.51.100.0/24", "2001:db8::/32"], deny: ["198.51.100.66"] }
      - headers: { request: { set: { x-client: "\${client_ip}" } } }
`;
}

itest("ip_filter: client IP through trusted proxies only; allow and deny (HTTP/1.1 and h2c)", async () => {
  const up = startUpstream((req) =>
    Response.json({ client: req.headers.get("x-client"), xff: req.headers.get("x-forwarded-for") })
  );
  const gw = await startDualLoom(config(up.address, '["127.0.0.1/32"]'));
  try {
    for (const [proto, base, client] of gw.protocols) {
      const ok = await fetch(base + "/office/x", {
        client,
        headers: { "x-forwarded-for": "203.0.113.5, 198.51.100.7" },
      });
      assert.equal(ok.status, 200, proto);
      assert.deepEqual(await ok.json(), {
        client: "198.51.100.7",
        xff: "203.0.113.5, 198.51.100.7, 127.0.0.1",
      }, proto);
      const v6 = await fetch(base + "/office/x", {
        client,
        headers: { forwarded: 'for="[2001:db8::9]:443"' },
      });
      assert.equal((await v6.json()).client, "2001:db8::9", proto);
      for (const [xff, status] of [["198.51.100.66", 403], ["203.0.113.5", 403], [undefined, 403]] as const) {
        const r = await fetch(base + "/office/x", { client, headers: xff ? { "x-forwarded-for": xff } : {} });
        await r.body?.cancel();
        assert.equal(r.status, status, `${proto} ${xff}`);
      }
    }
    const metrics = await (await fetch(gw.loom.admin("/metrics"))).text();
    assert.match(metrics, /loom_rejections_total\{route="office",middleware="ip_filter",reason="denied"\} 2/);
    assert.match(
      metrics,
      /loom_rejections_total\{route="office",middleware="ip_filter",reason="not_allowed"\} 4/,
    );
  } finally {
    await gw.close();
  }

  // Without trusted proxies a client cannot claim an address.
  const strict = await startDualLoom(config(up.address, "[]"));
  try {
    const r = await fetch(strict.loom.url("/office/x"), { headers: { "x-forwarded-for": "198.51.100.7" } });
    await r.body?.cancel();
    assert.equal(r.status, 403);
  } finally {
    await strict.close();
    await up.close();
  }
});
