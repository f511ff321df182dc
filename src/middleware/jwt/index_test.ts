import assert from "node:assert/strict";
import { HeaderList } from "../../core/headers.ts";
import type { Middleware } from "../../core/middleware.ts";
import { testContext } from "../test_context.ts";
import { JWT_CLAIMS_VAR } from "../template.ts";
import { JWT_ALGORITHMS } from "../../config/middleware/jwt.ts";
import { b64url, middlewareFrom, signToken, testKey } from "./test_keys.ts";

/** Runs the request phase with `token` in `where`; returns status, challenge, reason and whether next() ran. */
async function run(
  mw: Middleware,
  token: string | null,
  opts: { header?: string; cookie?: string; query?: string; extra?: [string, string][] } = {},
) {
  const { ctx, sent } = testContext();
  if (token !== null) {
    if (opts.cookie) ctx.headers.append("cookie", `a=1; ${opts.cookie}=${token}`);
    else if (opts.query) {
      ctx.query = `x=1&${opts.query}=${token}`;
      ctx.target = `/p?${ctx.query}`;
    } else ctx.headers.append(opts.header ?? "authorization", `Bearer ${token}`);
  }
  for (const [k, v] of opts.extra ?? []) ctx.headers.append(k, v);
  let passed = false;
  await mw.request!(ctx, () => {
    passed = true;
    return Promise.resolve();
  });
  return {
    ctx,
    passed,
    status: sent.status,
    challenge: sent.headers.get("www-authenticate") ?? "",
    rejection: ctx.rejection,
    body: sent.body,
  };
}

Deno.test("jwt: every algorithm family verifies with its inline key (PEM, JWK, secret)", async () => {
  for (const alg of JWT_ALGORITHMS) {
    const key = await testKey(alg);
    const source = alg.startsWith("HS")
      ? { secret: key.secret }
      : alg.startsWith("ES")
      ? { jwk: key.jwk }
      : { pem: key.pem };
    const mw = middlewareFrom("jwt", { keys: [{ ...source, algorithms: [alg] }] });
    const r = await run(mw, await signToken(key, { sub: "ada" }));
    assert.equal(r.passed, true, `${alg}: ${r.body}`);
    assert.equal((r.ctx.vars.get(JWT_CLAIMS_VAR) as { sub: string }).sub, "ada", alg);
    // Another key of the same algorithm: bad signature.
    const other = await testKey(alg);
    const bad = await run(mw, await signToken(other, { sub: "ada" }));
    assert.equal(bad.status, 401, alg);
    assert.equal(bad.rejection, "jwt/bad_signature", alg);
    assert.match(
      bad.challenge,
      /^Bearer realm="loom", error="invalid_token", error_description="signature verification failed"$/,
    );
  }
});

Deno.test("jwt: no token → 401 without error code; other schemes count as none; malformed requests → 400", async () => {
  const key = await testKey("HS256");
  const mw = middlewareFrom("jwt", {
    keys: [{ secret: key.secret, algorithms: ["HS256"] }],
    realm: "orders",
  });
  const none = await run(mw, null);
  assert.equal(none.status, 401);
  assert.equal(none.challenge, 'Bearer realm="orders"');
  assert.equal(none.rejection, "jwt/missing_token");
  const basic = await run(mw, null, { extra: [["authorization", "Basic YTpi"]] });
  assert.equal(basic.status, 401);
  assert.equal(basic.challenge, 'Bearer realm="orders"');
  const token = await signToken(key);
  const two = await run(mw, token, { extra: [["authorization", `Bearer ${token}`]] });
  assert.equal(two.status, 400);
  assert.match(two.challenge, /error="invalid_request"/);
  const empty = await run(mw, null, { extra: [["authorization", "Bearer "]] });
  assert.equal(empty.status, 400);
  assert.equal(empty.rejection, "jwt/bad_request");
});

Deno.test("jwt: malformed tokens, alg none, algorithm confusion and oversized tokens are 401 invalid_token", async () => {
  const rsa = await testKey("RS256");
  const hs = await testKey("HS256");
  const mw = middlewareFrom("jwt", {
    keys: [{ pem: rsa.pem, algorithms: ["RS256"] }, { secret: hs.secret, algorithms: ["HS256"] }],
    max_size: "2KB",
  });
  const payload = b64url(JSON.stringify({ sub: "x", exp: Math.floor(Date.now() / 1000) + 60 }));
  const cases: [string, string][] = [
    ["abc", "jwt/malformed"],
    ["a.b", "jwt/malformed"],
    ["a.b.c.d.e", "jwt/malformed"],
    [`${b64url("not json")}.${payload}.sig`, "jwt/malformed"],
    [`${b64url('{"alg":"none"}')}.${payload}.`, "jwt/alg_not_allowed"],
    [`${b64url('{"alg":"None"}')}.${payload}.`, "jwt/alg_not_allowed"],
    [`${b64url('{"alg":"RS256","kid":7}')}.${payload}.sig`, "jwt/malformed"],
    [`${b64url('{"alg":"RS256"}')}.${payload}.!!!`, "jwt/malformed"],
    ["x".repeat(3000), "jwt/token_too_large"],
  ];
  for (const [token, reason] of cases) {
    const r = await run(mw, token);
    assert.equal(r.status, 401, token.slice(0, 40));
    assert.equal(r.rejection, reason, token.slice(0, 40));
    assert.match(r.challenge, /error="invalid_token"/);
  }
  // Algorithm confusion: HS256 signed with the RSA public key's PEM as the secret.
  const confused = { ...hs, sign: new TextEncoder().encode(rsa.pem) };
  const r = await run(mw, await signToken(confused, { sub: "mallory" }));
  assert.equal(r.status, 401);
  assert.equal(r.rejection, "jwt/bad_signature");
  // Only the RSA key: HS256 is not allowed at all.
  const rsaOnly = middlewareFrom("jwt", { keys: [{ pem: rsa.pem, algorithms: ["RS256"] }] });
  assert.equal((await run(rsaOnly, await signToken(confused))).rejection, "jwt/alg_not_allowed");
});

Deno.test("jwt: a key's type limits its algorithms; a public key is refused as a secret", () => {
  assert.throws(
    () =>
      middlewareFrom("jwt", {
        keys: [{
          secret: "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
          algorithms: ["HS256"],
        }],
      }),
    /algorithm confusion/,
  );
  assert.throws(
    () => middlewareFrom("jwt", { keys: [{ secret: "short", algorithms: ["HS256"] }] }),
    /at least 32 bytes/,
  );
  assert.throws(
    () => middlewareFrom("jwt", { keys: [{ secret: "x".repeat(40), algorithms: ["HS512"] }] }),
    /at least 64 bytes/,
  );
  assert.throws(
    () => middlewareFrom("jwt", { keys: [{ pem: "nope", algorithms: ["RS256"] }] }),
    /not a PEM public key/,
  );
  assert.throws(() => middlewareFrom("jwt", { keys: [{ algorithms: ["RS256"] }] }), /exactly one of/);
  assert.throws(
    () => middlewareFrom("jwt", { keys: [{ secret: "x".repeat(40), algorithms: ["none"] }] }),
    /allowed: HS256/,
  );
  assert.throws(
    () => middlewareFrom("jwt", { jwks: { upstream: "nope", path: "/k", algorithms: ["RS256"] } }),
    /not defined/,
  );
});

Deno.test("jwt: mismatched key type and algorithm, and a private key, are build errors", async () => {
  const ec = await testKey("ES256");
  const rsa = await testKey("RS256");
  assert.throws(
    () => middlewareFrom("jwt", { keys: [{ pem: rsa.pem, algorithms: ["HS256"] }] }),
    /HS256 needs an HMAC secret/,
  );
  assert.throws(
    () => middlewareFrom("jwt", { keys: [{ pem: ec.pem, algorithms: ["ES384"] }] }),
    /ES384 needs curve/,
  );
  assert.throws(
    () => middlewareFrom("jwt", { keys: [{ jwk: { ...ec.jwk, alg: undefined }, algorithms: ["RS256"] }] }),
    /RS256 needs an RSA key/,
  );
  assert.throws(
    () => middlewareFrom("jwt", { keys: [{ jwk: ec.jwk, algorithms: ["ES256", "ES384"] }] }),
    /for ES256 only/,
  );
  assert.throws(
    () =>
      middlewareFrom("jwt", {
        keys: [{ pem: "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----", algorithms: ["RS256"] }],
      }),
    /private key/,
  );
});

Deno.test("jwt: exp, nbf with leeway, iss, aud, required claims", async () => {
  const key = await testKey("ES256");
  const mw = middlewareFrom("jwt", {
    keys: [{ pem: key.pem, algorithms: ["ES256"] }],
    issuer: "https://idp.example",
    audience: ["orders", "billing"],
    leeway: "30s",
    required_claims: ["sub"],
  });
  const now = Math.floor(Date.now() / 1000);
  const good = { iss: "https://idp.example", aud: "billing", sub: "u" };
  const cases: [Record<string, unknown>, string][] = [
    [good, ""],
    [{ ...good, aud: ["x", "orders"] }, ""],
    [{ ...good, exp: now - 10 }, ""], // within leeway
    [{ ...good, exp: now - 60 }, "jwt/expired"],
    [{ ...good, nbf: now + 10 }, ""],
    [{ ...good, nbf: now + 120 }, "jwt/not_yet_valid"],
    [{ ...good, iss: "https://evil.example" }, "jwt/bad_issuer"],
    [{ ...good, aud: "other" }, "jwt/bad_audience"],
    [{ ...good, sub: null }, "jwt/missing_claim"],
    [{ ...good, exp: null }, "jwt/missing_claim"],
  ];
  for (const [claims, reason] of cases) {
    const r = await run(mw, await signToken(key, claims));
    assert.equal(r.rejection, reason, JSON.stringify(claims));
    assert.equal(r.passed, reason === "", JSON.stringify(claims));
  }
  const noExp = middlewareFrom("jwt", {
    keys: [{ pem: key.pem, algorithms: ["ES256"] }],
    require_exp: false,
  });
  assert.equal((await run(noExp, await signToken(key, { exp: null }))).passed, true);
});

Deno.test("jwt: scopes (scope or scp) and roles → 403 insufficient_scope", async () => {
  const key = await testKey("HS256");
  const keys = [{ secret: key.secret, algorithms: ["HS256"] }];
  const scoped = middlewareFrom("jwt", { keys, scopes: ["orders:read", "orders:write"] });
  assert.equal(
    (await run(scoped, await signToken(key, { scope: "a orders:write orders:read" }))).passed,
    true,
  );
  assert.equal(
    (await run(scoped, await signToken(key, { scp: ["orders:read", "orders:write"] }))).passed,
    true,
  );
  const missing = await run(scoped, await signToken(key, { scope: "orders:read" }));
  assert.equal(missing.status, 403);
  assert.equal(missing.rejection, "jwt/insufficient_scope");
  assert.equal(
    missing.challenge,
    'Bearer realm="loom", error="insufficient_scope", error_description="insufficient scope", scope="orders:read orders:write"',
  );
  const roles = middlewareFrom("jwt", {
    keys,
    roles: { claim: "realm_access.roles", any_of: ["admin", "ops"] },
  });
  assert.equal((await run(roles, await signToken(key, { realm_access: { roles: ["ops"] } }))).passed, true);
  const noRole = await run(roles, await signToken(key, { realm_access: { roles: ["user"] } }));
  assert.equal(noRole.status, 403);
  assert.equal(noRole.rejection, "jwt/missing_role");
});

Deno.test("jwt: token from a cookie or a query parameter; forward_claims and strip upstream", async () => {
  const key = await testKey("HS256");
  const keys = [{ secret: key.secret, algorithms: ["HS256"] }];
  const token = await signToken(key, { sub: "ada", "https://example.com/tenant": "t1", n: 7, name: "José" });
  const fromCookie = middlewareFrom("jwt", {
    keys,
    from: { cookie: "session" },
    strip: true,
    forward_claims: {
      sub: "x-user-id",
      "https://example.com/tenant": "x-tenant",
      n: "x-n",
      name: "x-name",
      gone: "x-gone",
    },
  });
  const c = await run(fromCookie, token, { cookie: "session" });
  assert.equal(c.passed, true);
  const h = new HeaderList();
  h.append("cookie", `a=1; session=${token}`);
  h.append("x-user-id", "spoofed");
  h.append("x-gone", "spoofed");
  const head = { method: "GET", target: "/", authority: "a", headers: h };
  fromCookie.upstreamRequest!(c.ctx, head);
  assert.deepEqual(h.entries(), [
    ["x-user-id", "ada"],
    ["x-tenant", "t1"],
    ["x-n", "7"],
    ["x-name", "Jos%C3%A9"],
    ["cookie", "a=1"],
  ]);

  const fromQuery = middlewareFrom("jwt", { keys, from: { query: "access_token" }, strip: true });
  const q = await run(fromQuery, token, { query: "access_token" });
  assert.equal(q.passed, true);
  assert.equal(q.ctx.target, "/p?x=1&access_token=[REDACTED]", "masked for the access log");
  const qh = {
    method: "GET",
    target: `/p?x=1&access_token=${token}`,
    authority: "a",
    headers: new HeaderList(),
  };
  fromQuery.upstreamRequest!(q.ctx, qh);
  assert.equal(qh.target, "/p?x=1");
  const refused = await run(fromQuery, "x.y.z", { query: "access_token" });
  assert.equal(refused.rejection, "jwt/malformed");
  assert.equal(refused.ctx.target, "/p?x=1&access_token=[REDACTED]", "masked even when refused");
  // The header is not looked at when the token comes from the query.
  assert.equal((await run(fromQuery, token)).rejection, "jwt/missing_token");
});

Deno.test("jwt: kid selects the key; several keys without kid are tried", async () => {
  const a = await testKey("RS256");
  const b = await testKey("RS256");
  const mw = middlewareFrom("jwt", {
    keys: [{ kid: "a", pem: a.pem, algorithms: ["RS256"] }, { pem: b.pem, algorithms: ["RS256"] }],
  });
  const token = await signToken(a, {}, { kid: "a" });
  const first = await run(mw, token);
  assert.equal(first.passed, true);
  // The second use is a cache hit: the very same (frozen) claims object.
  const second = await run(mw, token);
  assert.equal(second.ctx.vars.get(JWT_CLAIMS_VAR), first.ctx.vars.get(JWT_CLAIMS_VAR));
  assert.ok(Object.isFrozen(second.ctx.vars.get(JWT_CLAIMS_VAR)));
  assert.equal((await run(mw, await signToken(a))).passed, true, "no kid: both keys tried");
  assert.equal(
    (await run(mw, await signToken(b, {}, { kid: "zzz" }))).passed,
    true,
    "keys without kid match any kid",
  );
  const onlyKid = middlewareFrom("jwt", { keys: [{ kid: "a", pem: a.pem, algorithms: ["RS256"] }] });
  assert.equal((await run(onlyKid, await signToken(a, {}, { kid: "b" }))).rejection, "jwt/unknown_key");
});

Deno.test("jwt: keys from a file (PEM, JWK Set)", async () => {
  const a = await testKey("ES256", "a");
  const b = await testKey("EdDSA", "b");
  const pemFile = await Deno.makeTempFile({ suffix: ".pem" });
  const setFile = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(pemFile, a.pem);
    await Deno.writeTextFile(setFile, JSON.stringify({ keys: [a.jwk, b.jwk] }));
    const fromPem = middlewareFrom("jwt", { keys: [{ file: pemFile, algorithms: ["ES256"] }] });
    assert.equal((await run(fromPem, await signToken(a))).passed, true);
    const fromSet = middlewareFrom("jwt", { keys: [{ file: setFile, algorithms: ["ES256", "EdDSA"] }] });
    assert.equal((await run(fromSet, await signToken(a, {}, { kid: "a" }))).passed, true);
    assert.equal((await run(fromSet, await signToken(b, {}, { kid: "b" }))).passed, true);
    assert.throws(
      () => middlewareFrom("jwt", { keys: [{ file: pemFile + ".missing", algorithms: ["ES256"] }] }),
      /cannot read/,
    );
  } finally {
    await Deno.remove(pemFile);
    await Deno.remove(setFile);
  }
});
