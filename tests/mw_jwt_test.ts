/**
 * The `jwt` middleware through a running gateway, on HTTP/1.1 and h2c: every
 * algorithm family, the RFC 6750 answers, claims forwarded upstream, a JWK
 * Set server (Deno.serve) that rotates its keys mid-test, OIDC discovery, and
 * a flood of unknown kids costing at most one refetch.
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoom } from "./helpers.ts";
import { bothProtocols, startEcho } from "./mw_auth_util.ts";
import { b64url, signToken, type TestKey, testKey } from "../src/middleware/jwt/test_keys.ts";

/** The fake IdP: JWK Sets per path (counted), discovery for issuer /realm. */
function startIdp() {
  const sets = new Map<string, { keys: Record<string, unknown>[]; maxAge: number }>();
  const fetches = new Map<string, number>();
  const where = { issuer: "", base: "" };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req): Response => {
    const url = new URL(req.url);
    fetches.set(url.pathname, (fetches.get(url.pathname) ?? 0) + 1);
    if (url.pathname === "/realm/.well-known/openid-configuration") {
      return Response.json({ issuer: where.issuer, jwks_uri: `${where.base}/realm/certs` });
    }
    const set = sets.get(url.pathname);
    if (set === undefined) return new Response("not found", { status: 404 });
    return Response.json({ keys: set.keys }, {
      headers: { "cache-control": `public, max-age=${set.maxAge}` },
    });
  });
  where.base = `http://127.0.0.1:${server.addr.port}`;
  where.issuer = `${where.base}/realm`;
  return {
    server,
    address: `127.0.0.1:${server.addr.port}`,
    issuer: where.issuer,
    sets,
    fetches: (path: string) => fetches.get(path) ?? 0,
  };
}

const FAMILIES = ["HS256", "HS512", "RS256", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA"];

itest(
  "jwt: algorithms, answers and forwarded claims over HTTP/1.1 and h2c; rotation, discovery, kid flood",
  async () => {
    const idp = startIdp();
    const app = startEcho();
    const keys = new Map<string, TestKey>();
    for (const alg of FAMILIES) keys.set(alg, await testKey(alg, alg.toLowerCase()));
    const k1 = await testKey("RS256", "k1");
    const k2 = await testKey("ES256", "k2");
    const oidcKey = await testKey("ES256", "o1");
    idp.sets.set("/rotating", { keys: [k1.jwk], maxAge: 3 });
    idp.sets.set("/flood", { keys: [k1.jwk], maxAge: 300 });
    idp.sets.set("/realm/certs", { keys: [oidcKey.jwk], maxAge: 300 });

    const inlineKeys = [...keys.values()].map((k) =>
      k.alg.startsWith("HS")
        ? { kid: k.alg.toLowerCase(), secret: k.secret, algorithms: [k.alg] }
        : { kid: k.alg.toLowerCase(), pem: k.pem, algorithms: [k.alg] }
    );
    const h2cPort = freePort();
    const route = (id: string, jwt: Record<string, unknown>, extra: unknown[] = []) => ({
      id,
      path: `/${id}/*`,
      upstream: "app",
      middleware: [{ jwt }, ...extra],
    });
    const loom = await startLoom(`
listeners:
  - { name: http, address: "127.0.0.1:\${PORT}", protocol: http }
  - { name: h2c, address: "127.0.0.1:${h2cPort}", protocol: h2c }
upstreams:
  - { name: app, endpoints: ["${app.address}"] }
  - { name: idp, endpoints: ["${idp.address}"] }
routes: ${
      JSON.stringify([
        route("inline", {
          keys: inlineKeys,
          scopes: [],
          forward_claims: { sub: "x-user-id", "org.id": "x-org" },
          max_size: "4KB",
        }, [{ headers: { request: { set: { "x-hello": "hi ${jwt.sub}" } } } }]),
        route("scoped", { keys: [inlineKeys[0]], scopes: ["orders:read"], realm: "orders" }),
        route("rotating", {
          jwks: {
            upstream: "idp",
            path: "/rotating",
            algorithms: ["RS256", "ES256"],
            min_refresh_interval: "500ms",
          },
        }),
        route("flood", {
          jwks: { upstream: "idp", path: "/flood", algorithms: ["RS256"], min_refresh_interval: "1m" },
        }),
        route("oidc", {
          issuer: idp.issuer,
          discovery: true,
          audience: "orders",
          jwks: { upstream: "idp", algorithms: ["ES256"] },
        }),
      ])
    }
`);
    const { protocols, close } = bothProtocols(loom, h2cPort);
    const get = async (
      base: string,
      client: Deno.HttpClient | undefined,
      path: string,
      token?: string,
      h = {},
    ) => {
      const headers: Record<string, string> = { ...h };
      if (token !== undefined) headers.authorization = `Bearer ${token}`;
      const r = await fetch(base + path, { headers, client });
      const text = await r.text();
      return { status: r.status, challenge: r.headers.get("www-authenticate"), text };
    };
    try {
      for (const [proto, base, client] of protocols) {
        // Every algorithm family, with claims forwarded (spoofed values replaced) and ${jwt.sub} templated.
        for (const [alg, key] of keys) {
          const token = await signToken(key, { sub: `u-${alg}`, org: { id: 42 } }, {
            kid: alg.toLowerCase(),
          });
          const r = await get(base, client, "/inline/x", token, { "x-user-id": "spoofed" });
          assert.equal(r.status, 200, `${proto} ${alg}: ${r.text}`);
          const seen = JSON.parse(r.text).headers;
          assert.equal(seen["x-user-id"], `u-${alg}`, `${proto} ${alg}`);
          assert.equal(seen["x-org"], "42");
          assert.equal(seen["x-hello"], `hi u-${alg}`);
        }
        const hs = keys.get("HS256")!;
        const rsa = keys.get("RS256")!;
        const now = Math.floor(Date.now() / 1000);
        const payload = b64url(JSON.stringify({ sub: "x", exp: now + 60 }));
        const refused: [string, string | undefined, number, RegExp][] = [
          ["no token", undefined, 401, /^Bearer realm="loom"$/],
          ["malformed", "not.a-token", 401, /error="invalid_token"/],
          [
            "alg none",
            `${b64url('{"alg":"none"}')}.${payload}.`,
            401,
            /error_description="algorithm not allowed"/,
          ],
          ["expired", await signToken(hs, { exp: now - 3600 }, { kid: "hs256" }), 401, /token expired/],
          ["not yet valid", await signToken(hs, { nbf: now + 3600 }, { kid: "hs256" }), 401, /not yet valid/],
          ["oversized", "a".repeat(5000), 401, /token too large/],
          [
            "algorithm confusion",
            await signToken({ ...hs, sign: new TextEncoder().encode(rsa.pem) }, {}, { kid: "rs256" }),
            401,
            /error="invalid_token"/,
          ],
          [
            "wrong key",
            await signToken(await testKey("RS256"), {}, { kid: "rs256" }),
            401,
            /signature verification failed/,
          ],
        ];
        for (const [what, token, status, challenge] of refused) {
          const r = await get(base, client, "/inline/x", token);
          assert.equal(r.status, status, `${proto} ${what}: ${r.text}`);
          assert.match(r.challenge ?? "", challenge, `${proto} ${what}`);
        }
        for (const [scope, status] of [["orders:write", 403], ["orders:read", 200]] as const) {
          const token = await signToken(hs, { scope }, { kid: "hs256" });
          const r = await get(base, client, "/scoped/x", token);
          assert.equal(r.status, status, `${proto} ${scope}`);
          if (status === 403) {
            assert.match(
              r.challenge ?? "",
              /realm="orders", error="insufficient_scope".*scope="orders:read"/,
            );
          }
        }
        const twice = await fetch(base + "/inline/x", {
          headers: [["authorization", "Bearer a.b.c"], ["authorization", "Bearer a.b.c"]],
          client,
        });
        await twice.body?.cancel();
        assert.equal(twice.status, 400, `${proto}: two Authorization fields`);
        assert.match(twice.headers.get("www-authenticate") ?? "", /error="invalid_request"/);
      }

      // OIDC discovery: the JWK Set is found through the issuer's configuration.
      const oidcToken = await signToken(oidcKey, { iss: idp.issuer, aud: "orders" }, { kid: "o1" });
      for (const [proto, base, client] of protocols) {
        assert.equal((await get(base, client, "/oidc/x", oidcToken)).status, 200, proto);
        const wrongAud = await signToken(oidcKey, { iss: idp.issuer, aud: "other" }, { kid: "o1" });
        assert.match((await get(base, client, "/oidc/x", wrongAud)).challenge ?? "", /audience not accepted/);
      }
      assert.equal(idp.fetches("/realm/.well-known/openid-configuration"), 1);
      assert.equal(idp.fetches("/realm/certs"), 1);

      // Rotation: k1 (RS256) → k2 (ES256). The new kid is fetched; the old one lasts until its max-age.
      const t1 = await signToken(k1, {}, { kid: "k1" });
      const t2 = await signToken(k2, {}, { kid: "k2" });
      const firstFetch = Date.now();
      for (const [proto, base, client] of protocols) {
        assert.equal((await get(base, client, "/rotating/x", t1)).status, 200, proto);
      }
      idp.sets.set("/rotating", { keys: [k2.jwk], maxAge: 3 });
      await new Promise((r) => setTimeout(r, 600)); // min_refresh_interval
      for (const [proto, base, client] of protocols) {
        assert.equal(
          (await get(base, client, "/rotating/x", t2)).status,
          200,
          `${proto}: new kid after refetch`,
        );
        assert.equal(
          (await get(base, client, "/rotating/x", t1)).status,
          200,
          `${proto}: old kid until expiry`,
        );
      }
      assert.equal(idp.fetches("/rotating"), 2);
      await new Promise((r) => setTimeout(r, Math.max(0, firstFetch + 3500 - Date.now())));
      for (const [proto, base, client] of protocols) {
        const old = await get(base, client, "/rotating/x", t1);
        assert.equal(old.status, 401, `${proto}: old kid after its expiry`);
        assert.match(old.challenge ?? "", /no key for this token/);
        assert.equal((await get(base, client, "/rotating/x", t2)).status, 200, proto);
      }

      // A flood of 200 unknown kids (both protocols at once): at most one refetch.
      const before = idp.fetches("/flood");
      assert.equal(before, 1, "the build's fetch");
      const flood = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
        const [, base, client] = protocols[i % 2];
        return (await get(base, client, "/flood/x", await signToken(k1, {}, { kid: `bogus-${i}` }))).status;
      }));
      assert.ok(flood.every((s) => s === 401), JSON.stringify(flood));
      assert.ok(idp.fetches("/flood") - before <= 1, `fetches: ${idp.fetches("/flood")}`);
      assert.equal((await get(protocols[0][1], undefined, "/flood/x", t1)).status, 200);

      const metrics = await (await fetch(loom.admin("/metrics"))).text();
      assert.match(metrics, /loom_rejections_total\{route="inline",middleware="jwt",reason="expired"\} 2/);
      assert.match(
        metrics,
        /loom_rejections_total\{route="flood",middleware="jwt",reason="unknown_key"\} 200/,
      );
    } finally {
      close();
      await loom.close();
      await idp.server.shutdown();
      await app.server.shutdown();
    }
  },
);

itest(
  "jwt: a JWK Set that cannot be fetched gives 503, then recovers after min_refresh_interval",
  async () => {
    const idp = startIdp();
    const app = startEcho();
    const key = await testKey("ES256", "late");
    const loom = await startLoom(`
listeners: [{ name: http, address: "127.0.0.1:\${PORT}", protocol: http }]
upstreams:
  - { name: app, endpoints: ["${app.address}"] }
  - { name: idp, endpoints: ["${idp.address}"] }
routes:
  - id: r
    path: /*
    upstream: app
    middleware:
      - jwt: { jwks: { upstream: idp, path: /late, algorithms: [ES256], min_refresh_interval: 300ms } }
`);
    try {
      const token = await signToken(key, {}, { kid: "late" });
      const first = await fetch(loom.url("/x"), { headers: { authorization: `Bearer ${token}` } });
      await first.body?.cancel();
      assert.equal(first.status, 503);
      idp.sets.set("/late", { keys: [key.jwk], maxAge: 60 });
      await new Promise((r) => setTimeout(r, 350));
      const later = await fetch(loom.url("/x"), { headers: { authorization: `Bearer ${token}` } });
      await later.body?.cancel();
      assert.equal(later.status, 200);
    } finally {
      await loom.close();
      await idp.server.shutdown();
      await app.server.shutdown();
    }
  },
);
