/**
 * The `forward_auth` middleware through a running gateway on HTTP/1.1 and h2c,
 * against an auth service (Deno.serve): allow with response fields copied
 * upstream (forged ones replaced), deny with its body, a redirect to a login
 * page, a timeout with `on_error: deny` and `allow`, an unreachable service;
 * the check never carries the request body and gets X-Forwarded-*.
 */
import assert from "node:assert/strict";
import { itest } from "./helpers.ts";
import { configErrors, echoUpstream, rejections, serve, startDualLoom } from "./mw_auth_util.ts";

interface Seen {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

itest(
  "forward_auth: allow, deny with body, redirect, timeout (deny/allow), header copying; HTTP/1.1 and h2c",
  async () => {
    const seen: Seen[] = [];
    const auth = serve(async (req) => {
      const headers: Record<string, string> = {};
      req.headers.forEach((v, k) => headers[k] = v);
      const u = new URL(req.url);
      seen.push({ method: req.method, path: u.pathname + u.search, headers, body: await req.text() });
      switch (req.headers.get("authorization")) {
        case "Bearer good":
          return new Response(null, {
            status: 200,
            headers: { "x-user": "ada", "x-groups": "admin,dev", "x-internal": "not copied" },
          });
        case "Bearer bad":
          return Response.json({ error: "token expired" }, {
            status: 401,
            headers: { "www-authenticate": 'Bearer error="invalid_token"' },
          });
        case "Bearer forbidden":
          return new Response("not for you", { status: 403, headers: { "content-type": "text/plain" } });
        case "Bearer slow":
          await new Promise((r) => setTimeout(r, 1500));
          return new Response(null, { status: 200, headers: { "x-user": "late" } });
        default:
          return new Response(null, {
            status: 302,
            headers: {
              location: "https://login.example/?rd=" +
                encodeURIComponent(req.headers.get("x-forwarded-uri") ?? ""),
              "set-cookie": "state=xyz; HttpOnly",
            },
          });
      }
    });
    const up = echoUpstream();
    const check =
      "{ upstream: auth, path: '/check?v=1', response_headers: [x-user, x-groups], timeout: 300ms";
    const gw = await startDualLoom(`
upstreams:
  - { name: up, endpoints: ["${up.address}"] }
  - { name: auth, endpoints: ["${auth.address}"] }
  - { name: dead, endpoints: ["127.0.0.1:1"] }
routes:
  - { id: api, path: /api/*, upstream: up, middleware: [{ forward_auth: ${check} } }] }
  - { id: lax, path: /lax/*, upstream: up, middleware: [{ forward_auth: ${check}, on_error: allow } }] }
  - { id: down, path: /down/*, upstream: up, middleware: [{ forward_auth: { upstream: dead } }] }
`);
    try {
      for (const [proto, base, client] of gw.protocols) {
        const call = (path: string, init: RequestInit = {}) =>
          fetch(base + path, { client, redirect: "manual", ...init });

        // Allowed: the upstream gets the body and the auth service's fields, not the client's forgeries.
        seen.length = 0;
        const ok = await call("/api/items?q=1", {
          method: "POST",
          body: "payload",
          headers: { authorization: "Bearer good", cookie: "sid=1", "x-user": "forged", "x-trace": "t" },
        });
        assert.equal(ok.status, 200, proto);
        const echoed = await ok.json();
        assert.equal(echoed.body, "payload", proto);
        assert.equal(echoed.headers["x-user"], "ada", proto);
        assert.equal(echoed.headers["x-groups"], "admin,dev", proto);
        assert.equal(echoed.headers["x-internal"], undefined, proto);
        assert.equal(echoed.headers["authorization"], "Bearer good", "the token still goes upstream");
        // The check: listed fields and X-Forwarded-*, no body.
        assert.equal(seen.length, 1, proto);
        const c = seen[0];
        assert.equal(c.method, "GET", proto);
        assert.equal(c.path, "/check?v=1", proto);
        assert.equal(c.body, "", proto);
        assert.equal(c.headers["content-length"], undefined, proto);
        assert.equal(c.headers["authorization"], "Bearer good", proto);
        assert.equal(c.headers["cookie"], "sid=1", proto);
        assert.equal(c.headers["x-trace"], undefined, "only the listed fields");
        assert.equal(c.headers["x-forwarded-method"], "POST", proto);
        assert.equal(c.headers["x-forwarded-uri"], "/api/items?q=1", proto);
        assert.equal(c.headers["x-forwarded-host"], new URL(base).host, proto);
        assert.equal(c.headers["x-forwarded-proto"], "http", proto);
        assert.equal(c.headers["x-forwarded-for"], "127.0.0.1", proto);
        assert.ok(c.headers["x-request-id"], proto);

        // Denied: the auth service's status, headers and body reach the client.
        const bad = await call("/api/x", { headers: { authorization: "Bearer bad" } });
        assert.equal(bad.status, 401, proto);
        assert.equal(bad.headers.get("www-authenticate"), 'Bearer error="invalid_token"', proto);
        assert.deepEqual(await bad.json(), { error: "token expired" }, proto);
        const forbidden = await call("/api/x", { headers: { authorization: "Bearer forbidden" } });
        assert.equal(forbidden.status, 403, proto);
        assert.equal(forbidden.headers.get("content-type"), "text/plain", proto);
        assert.equal(await forbidden.text(), "not for you", proto);

        // Redirect to a login page, with its cookie.
        const login = await call("/api/secret?x=1");
        await login.body?.cancel();
        assert.equal(login.status, 302, proto);
        assert.equal(
          login.headers.get("location"),
          "https://login.example/?rd=%2Fapi%2Fsecret%3Fx%3D1",
          proto,
        );
        assert.equal(login.headers.get("set-cookie"), "state=xyz; HttpOnly", proto);

        // Timeout: deny answers 503; allow lets the request through without the late fields.
        const t0 = Date.now();
        const slow = await call("/api/x", { headers: { authorization: "Bearer slow" } });
        assert.equal(slow.status, 503, proto);
        assert.equal((await slow.json()).error, "authentication service unavailable", proto);
        assert.ok(Date.now() - t0 < 1400, "answered at the timeout, not after the auth service");
        const lax = await call("/lax/x", { headers: { authorization: "Bearer slow", "x-user": "forged" } });
        assert.equal(lax.status, 200, proto);
        assert.equal((await lax.json()).headers["x-user"], undefined, proto);

        // Nobody listening: 503.
        const down = await call("/down/x");
        await down.body?.cancel();
        assert.equal(down.status, 503, proto);
      }
      const counted = await rejections(gw.loom.admin("/metrics"), "forward_auth");
      assert.equal(counted.get("api/unauthorized"), 2);
      assert.equal(counted.get("api/forbidden"), 2);
      assert.equal(counted.get("api/redirect"), 2);
      assert.equal(counted.get("api/timeout"), 2);
      assert.equal(counted.get("down/unavailable"), 2);
    } finally {
      await gw.close();
      await up.close();
      await auth.close();
    }
  },
);

Deno.test("forward_auth config: an undefined upstream and a bad path are located errors", () => {
  configErrors(
    `listeners: [{ name: l, address: ":1", protocol: http }]
upstreams: [{ name: u, endpoints: ["127.0.0.1:2"] }]
middleware:
  - forward_auth: { upstream: auht }
routes:
  - id: r
    path: /
    upstream: u
    middleware:
      - forward_auth: { upstream: u, path: check, on_error: maybe }
`,
    [
      /^4: middleware\[0\]\.forward_auth\.upstream: upstream "auht" is not defined/,
      /^10: .*forward_auth\.path: path must start with \//,
      /^10: .*forward_auth\.on_error: .*allowed: deny, allow/,
    ],
  );
});
