import assert from "node:assert/strict";
import { argon2id, bcrypt } from "hash-wasm";
import {
  BASIC_AUTH_USER_VAR,
  basicAuth,
  basicToken,
  decodeCredentials,
  type PasswordVerifier,
} from "./index.ts";
import { HashVerifier, verifyHash } from "./verify.ts";
import type { BasicAuthOptions } from "../../config/middleware/basic_auth.ts";
import { hashKind, parseUsersFile } from "../../config/middleware/basic_auth.ts";
import { testContext } from "../test_context.ts";

const salt = () => crypto.getRandomValues(new Uint8Array(16));
/** Cheap hashes: the format is what matters here. */
const bcryptOf = (pw: string) => bcrypt({ password: pw, salt: salt(), costFactor: 4, outputType: "encoded" });
const argonOf = (pw: string) =>
  argon2id({
    password: pw,
    salt: salt(),
    parallelism: 1,
    iterations: 1,
    memorySize: 64,
    hashLength: 32,
    outputType: "encoded",
  });

const b64 = (s: string) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));
const basic = (user: string, pw: string) => "Basic " + b64(`${user}:${pw}`);

function options(o: Partial<BasicAuthOptions>): BasicAuthOptions {
  return {
    realm: "test",
    users: {},
    user_header: "x-auth-user",
    strip_authorization: true,
    cache_ttl: 60_000,
    cache_size: 1024,
    max_pending: 64,
    ...o,
  };
}

/** A verifier that counts calls (inline hash-wasm underneath). */
function counting(): PasswordVerifier & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    verify(hash, password) {
      calls.push(hash);
      return verifyHash(hash, password);
    },
  };
}

async function run(m: ReturnType<typeof basicAuth>, headers: [string, string][]) {
  const { ctx, sent } = testContext();
  for (const [n, v] of headers) ctx.headers.append(n, v);
  let passed = false;
  await m.request!(ctx, () => {
    passed = true;
    return Promise.resolve();
  });
  return { ctx, sent, passed };
}

Deno.test("basic_auth: bcrypt $2a$/$2b$/$2y$ and argon2id users; header, vars, Authorization stripped", async () => {
  const b = await bcryptOf("s3cret"); // hash-wasm writes $2a$
  const tail = b.slice(4);
  const users = {
    a: b,
    b: "$2b$" + tail,
    y: "$2y$" + tail,
    argon: await argonOf("pässwörd"),
  };
  for (const h of Object.values(users)) {
    assert.equal(hashKind(h), h.startsWith("$argon") ? "argon2id" : "bcrypt");
  }
  const m = basicAuth(options({ users }), { verifier: counting() });
  for (const [user, pw] of [["a", "s3cret"], ["b", "s3cret"], ["y", "s3cret"], ["argon", "pässwörd"]]) {
    const r = await run(m, [["authorization", basic(user, pw)], ["x-auth-user", "forged"]]);
    assert.ok(r.passed, user);
    assert.equal(r.ctx.headers.get("x-auth-user"), user);
    assert.equal(r.ctx.headers.getJoined("x-auth-user"), user, "the client's copy is replaced");
    assert.equal(r.ctx.headers.get("authorization"), undefined);
    assert.equal(r.ctx.vars.get(BASIC_AUTH_USER_VAR), user);
  }
});

Deno.test("basic_auth: 401 with the challenge and a reason for missing, malformed and wrong credentials", async () => {
  const m = basicAuth(options({ users: { ada: await bcryptOf("pw") }, realm: "my realm" }), {
    verifier: counting(),
  });
  const cases: [string, [string, string][]][] = [
    ["missing", []],
    ["malformed", [["authorization", "Bearer abc"]]],
    ["malformed", [["authorization", "Basic"]]],
    ["malformed", [["authorization", "Basic !!!not-base64"]]],
    ["malformed", [["authorization", "Basic " + btoa("no-colon")]]],
    ["malformed", [["authorization", "Basic " + btoa(":empty-user")]]],
    ["malformed", [["authorization", "Basic " + btoa("ada:\xff\xfe")]]], // not UTF-8
    ["malformed", [["authorization", basic("ada", "pw")], ["authorization", basic("ada", "pw")]]],
    ["invalid", [["authorization", basic("ada", "wrong")]]],
    ["invalid", [["authorization", basic("nobody", "pw")]]],
  ];
  for (const [reason, headers] of cases) {
    const r = await run(m, headers);
    assert.equal(r.passed, false, JSON.stringify(headers));
    assert.equal(r.sent.status, 401);
    assert.equal(r.sent.headers.get("www-authenticate"), 'Basic realm="my realm", charset="UTF-8"');
    assert.equal(r.ctx.rejection, "basic_auth/" + reason, JSON.stringify(headers));
  }
  // The scheme is case-insensitive.
  assert.ok((await run(m, [["authorization", "bAsIc " + b64("ada:pw")]])).passed);
});

Deno.test("basic_auth: an unknown user is checked against a real hash (same cost as a wrong password)", async () => {
  const hash = await bcryptOf("pw");
  const v = counting();
  const m = basicAuth(options({ users: { ada: hash } }), { verifier: v });
  // Even the right password of another user does not let an unknown name in.
  const r = await run(m, [["authorization", basic("eve", "pw")]]);
  assert.equal(r.passed, false);
  assert.deepEqual(v.calls, [hash]);
});

Deno.test("basic_auth: successes are cached by credentials (TTL, size bound); failures are not", async () => {
  let now = 1_000;
  const v = counting();
  const m = basicAuth(
    options({
      users: { ada: await bcryptOf("pw"), bob: await bcryptOf("pw2") },
      cache_ttl: 5_000,
      cache_size: 1,
    }),
    { verifier: v, now: () => now },
  );
  const ada: [string, string][] = [["authorization", basic("ada", "pw")]];
  assert.ok((await run(m, ada)).passed);
  assert.ok((await run(m, ada)).passed);
  assert.equal(v.calls.length, 1, "second request served from the cache");
  now += 5_001;
  assert.ok((await run(m, ada)).passed);
  assert.equal(v.calls.length, 2, "expired entry verified again");
  // cache_size 1: bob's success drops ada's.
  assert.ok((await run(m, [["authorization", basic("bob", "pw2")]])).passed);
  assert.ok((await run(m, ada)).passed);
  assert.equal(v.calls.length, 4);
  // A wrong password is verified each time.
  const bad: [string, string][] = [["authorization", basic("ada", "nope")]];
  await run(m, bad);
  await run(m, bad);
  assert.equal(v.calls.length, 6);
  // Another password for a cached user is not a cache hit.
  assert.equal((await run(m, [["authorization", basic("ada", "pw ")]])).passed, false);
});

Deno.test("basic_auth: cache_ttl 0 disables the cache; concurrent requests share one verification", async () => {
  const v = counting();
  const m = basicAuth(options({ users: { ada: await bcryptOf("pw") }, cache_ttl: 0 }), { verifier: v });
  const ada: [string, string][] = [["authorization", basic("ada", "pw")]];
  const rs = await Promise.all([run(m, ada), run(m, ada), run(m, ada)]);
  assert.ok(rs.every((r) => r.passed));
  assert.equal(v.calls.length, 1);
  assert.ok((await run(m, ada)).passed);
  assert.equal(v.calls.length, 2);
});

Deno.test("basic_auth: strip_authorization false and user_header '' leave the request alone", async () => {
  const m = basicAuth(
    options({ users: { ada: await bcryptOf("pw") }, strip_authorization: false, user_header: "" }),
    { verifier: counting() },
  );
  const r = await run(m, [["authorization", basic("ada", "pw")], ["x-auth-user", "kept"]]);
  assert.ok(r.passed);
  assert.equal(r.ctx.headers.get("authorization"), basic("ada", "pw"));
  assert.equal(r.ctx.headers.get("x-auth-user"), "kept");
  assert.equal(r.ctx.vars.get(BASIC_AUTH_USER_VAR), "ada");
});

Deno.test("basic_auth: max_pending bounds waiting verifications (503 busy); verifier errors are 503", async () => {
  const waiting: (() => void)[] = [];
  const slow: PasswordVerifier = {
    verify: () => new Promise((resolve) => waiting.push(() => resolve(false))),
  };
  const m = basicAuth(options({ users: { ada: await bcryptOf("pw") }, max_pending: 2 }), { verifier: slow });
  const first = [
    run(m, [["authorization", basic("ada", "a")]]),
    run(m, [["authorization", basic("ada", "b")]]),
  ];
  const third = await run(m, [["authorization", basic("ada", "c")]]);
  assert.equal(third.sent.status, 503);
  assert.equal(third.ctx.rejection, "basic_auth/busy");
  assert.equal(third.sent.headers.get("retry-after"), "1");
  for (const w of waiting) w();
  for (const r of await Promise.all(first)) assert.equal(r.sent.status, 401);
  const broken = basicAuth(options({ users: { ada: await bcryptOf("pw") } }), {
    verifier: { verify: () => Promise.reject(new Error("boom")) },
  });
  const r = await run(broken, [["authorization", basic("ada", "pw")]]);
  assert.equal(r.sent.status, 503);
  assert.equal(r.ctx.rejection, "basic_auth/verifier_error");
});

Deno.test("basic_auth: users_file (comments, CRLF) merges with users; no users or a user twice is an error", async () => {
  const dir = Deno.makeTempDirSync();
  const file = `${dir}/htpasswd`;
  const hash = await bcryptOf("pw");
  Deno.writeTextFileSync(file, `# team\r\n\r\nbob:${hash}\r\n  carol:${await argonOf("pw3")}\n`);
  const m = basicAuth(options({ users: { ada: await bcryptOf("pw1") }, users_file: file }), {
    verifier: counting(),
  });
  assert.ok((await run(m, [["authorization", basic("bob", "pw")]])).passed);
  assert.ok((await run(m, [["authorization", basic("carol", "pw3")]])).passed);
  assert.ok((await run(m, [["authorization", basic("ada", "pw1")]])).passed);
  assert.throws(() => basicAuth(options({ users: { bob: hash }, users_file: file })), /"bob" is in both/);
  assert.throws(() => basicAuth(options({})), /no users/);
  assert.throws(() => basicAuth(options({ users_file: `${dir}/missing` })), /users_file .*missing/);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("basic_auth: users file and hash format errors name the line and the problem", () => {
  const r = parseUsersFile(
    [
      "ok:$2y$10$" + "a".repeat(53),
      "no-colon",
      "md5:$apr1$abc$def",
      "ok:$2y$10$" + "b".repeat(53),
      "weak:$2b$03$" + "c".repeat(53),
      "argon2i:$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    ].join("\n"),
    "pw.txt",
  );
  assert.deepEqual(r.users.map(([n]) => n), ["ok"]);
  assert.equal(r.errors.length, 5, r.errors.join("\n"));
  assert.match(r.errors[0], /^pw\.txt:2: expected "name:hash"/);
  assert.match(r.errors[1], /^pw\.txt:3: user "md5": unsupported password hash/);
  assert.match(r.errors[2], /^pw\.txt:4: user "ok" is listed twice/);
  assert.match(r.errors[3], /^pw\.txt:5: .*cost 3/);
  assert.match(r.errors[4], /^pw\.txt:6: .*argon2i and argon2d are not accepted/);
  const big = "$argon2id$v=19$m=2000000,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
  assert.match((hashKind(big) as { error: string }).error, /memory 2000000 KiB/);
});

Deno.test("basic_auth: token and credential decoding", () => {
  assert.equal(basicToken("Basic  YTpi "), "YTpi");
  assert.equal(basicToken("Basicx YTpi"), null);
  assert.equal(basicToken("Basic "), null);
  assert.deepEqual(decodeCredentials(btoa("a:b:c")), ["a", "b:c"]);
  assert.deepEqual(decodeCredentials(b64("zoë:pa ss")), ["zoë", "pa ss"]);
  assert.equal(decodeCredentials("%%%"), null);
});

Deno.test({
  name: "basic_auth: the verification worker checks bcrypt and argon2id off the event loop",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const v = new HashVerifier();
    try {
      const b = await bcryptOf("pw");
      const a = await argonOf("pw");
      assert.deepEqual(
        await Promise.all([v.verify(b, "pw"), v.verify(b, "px"), v.verify(a, "pw"), v.verify(a, "")]),
        [true, false, true, false],
      );
      // Past 72 bytes bcrypt reads no further (as htpasswd and PHP): no error, the same answer.
      const long = "é".repeat(36);
      const bl = await bcryptOf(long);
      assert.deepEqual(await Promise.all([v.verify(bl, long), v.verify(bl, long + "tail")]), [true, true]);
      assert.equal(await v.verify(b, ""), false);
      assert.equal(v.inFlight, 0);
    } finally {
      v.close();
    }
    // Inline mode (no worker) gives the same answers.
    const inline = new HashVerifier({ inline: true });
    assert.equal(await inline.verify(await bcryptOf("x"), "x"), true);
  },
});
