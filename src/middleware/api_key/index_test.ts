import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { HeaderList } from "../../core/headers.ts";
import type { Middleware } from "../../core/middleware.ts";
import { parseConfig } from "../../config/load.ts";
import { testContext } from "../test_context.ts";
import { middlewareFrom } from "../jwt/test_keys.ts";
import { API_KEY_CONSUMER_VAR, sameHash } from "./index.ts";

const sha = (s: string) => createHash("sha256").update(s).digest("hex");

async function run(mw: Middleware, headers: [string, string][] = [], query = "") {
  const { ctx, sent } = testContext();
  for (const [k, v] of headers) ctx.headers.append(k, v);
  ctx.query = query;
  ctx.target = query === "" ? "/p" : `/p?${query}`;
  let passed = false;
  await mw.request!(ctx, () => {
    passed = true;
    return Promise.resolve();
  });
  return { ctx, passed, status: sent.status, rejection: ctx.rejection, body: sent.body };
}

Deno.test("api_key: plain keys are hashed at load; the normalised config holds no plain key", () => {
  const r = parseConfig(
    `listeners: [{name: l, address: ":1", protocol: http}]
middleware:
  - api_key:
      keys:
        - { name: a, key: "plain-secret-1" }
        - { name: b, key: "SHA256:${sha("other").toUpperCase()}" }
        - { name: c, key: 123456 }
`,
    "t.yaml",
    {},
  );
  assert.ok(r.ok);
  if (!r.ok) return;
  const text = JSON.stringify(r.config);
  assert.ok(!text.includes("plain-secret-1"));
  const keys = (r.config.middleware[0].options as { keys: { key: string }[] }).keys.map((k) => k.key);
  assert.deepEqual(keys, [
    `sha256:${sha("plain-secret-1")}`,
    `sha256:${sha("other")}`,
    `sha256:${sha("123456")}`,
  ]);
});

Deno.test("api_key: header key accepted; missing, unknown, expired, two keys → 401 with distinct reasons", async () => {
  const mw = middlewareFrom("api_key", {
    keys: [
      { name: "alice", key: "alice-key-0001", metadata: { "x-plan": "gold" } },
      { name: "old", key: `sha256:${sha("old-key-0001")}`, expires: "2020-01-01T00:00:00Z" },
      { name: "later", key: "later-key-0001", expires: "2999-01-01T00:00:00Z" },
    ],
  });
  const ok = await run(mw, [["x-api-key", "alice-key-0001"]]);
  assert.equal(ok.passed, true);
  assert.equal(ok.ctx.vars.get(API_KEY_CONSUMER_VAR), "alice");
  assert.equal((await run(mw, [["X-API-Key", "later-key-0001"]])).passed, true);
  const cases: [[string, string][], string][] = [
    [[], "api_key/missing"],
    [[["x-api-key", "nope"]], "api_key/invalid"],
    [[["x-api-key", "old-key-0001"]], "api_key/expired"],
    [[["x-api-key", "alice-key-0001"], ["x-api-key", "alice-key-0001"]], "api_key/ambiguous"],
  ];
  for (const [headers, reason] of cases) {
    const r = await run(mw, headers);
    assert.equal(r.status, 401, reason);
    assert.equal(r.rejection, reason);
    assert.ok(!r.body.includes("key-0001"), "no key in the answer");
  }
});

Deno.test("api_key: query parameter; masked in the log path; key and spoofed metadata stripped upstream", async () => {
  const mw = middlewareFrom("api_key", {
    query: "api_key",
    keys: [{ name: "alice", key: "alice-key-0001", metadata: { "x-plan": "gold" } }, {
      key: "anon-key-0001",
    }],
  });
  const r = await run(mw, [], "a=1&api_key=alice-key-0001");
  assert.equal(r.passed, true);
  assert.equal(r.ctx.target, "/p?a=1&api_key=[REDACTED]");
  const h = HeaderList.from([["x-consumer", "spoofed"], ["x-plan", "spoofed"], ["x-api-key", "whatever"]]);
  const head = { method: "GET", target: "/p?a=1&api_key=alice-key-0001", authority: "a", headers: h };
  mw.upstreamRequest!(r.ctx, head);
  assert.equal(head.target, "/p?a=1");
  assert.deepEqual(h.entries(), [["x-consumer", "alice"], ["x-plan", "gold"]]);
  // A key without name or metadata: the spoofable names are still dropped.
  const anon = await run(mw, [["x-api-key", "anon-key-0001"]]);
  assert.equal(anon.passed, true);
  const h2 = HeaderList.from([["x-consumer", "spoofed"], ["x-plan", "spoofed"]]);
  mw.upstreamRequest!(anon.ctx, { method: "GET", target: "/p", authority: "a", headers: h2 });
  assert.equal(h2.size, 0);
  // Header and query both carrying a key: ambiguous.
  assert.equal(
    (await run(mw, [["x-api-key", "anon-key-0001"]], "api_key=alice-key-0001")).rejection,
    "api_key/ambiguous",
  );
  assert.equal((await run(mw, [], "api_key=%zz")).rejection, "api_key/ambiguous");
  const refused = await run(mw, [], "api_key=typo-of-a-real-key");
  assert.equal(refused.rejection, "api_key/invalid");
  assert.equal(refused.ctx.target, "/p?api_key=[REDACTED]", "masked even when refused");
});

Deno.test("api_key: strip false keeps the key; header '' reads the query only", async () => {
  const mw = middlewareFrom("api_key", {
    header: "",
    query: "k",
    strip: false,
    name_header: "",
    keys: [{ key: "kkkk" }],
  });
  assert.equal((await run(mw, [["x-api-key", "kkkk"]])).rejection, "api_key/missing");
  const r = await run(mw, [], "k=kkkk");
  assert.equal(r.passed, true);
  const head = { method: "GET", target: "/p?k=kkkk", authority: "a", headers: new HeaderList() };
  mw.upstreamRequest!(r.ctx, head);
  assert.equal(head.target, "/p?k=kkkk");
});

Deno.test("api_key: keys from a YAML file, re-read at each build; errors never show a key", async () => {
  const file = await Deno.makeTempFile({ suffix: ".yaml" });
  try {
    await Deno.writeTextFile(file, `- { name: f1, key: file-key-0001, metadata: { x-tier: "2" } }\n`);
    const a = middlewareFrom("api_key", { file, keys: [{ key: "inline-0001" }] });
    assert.equal((await run(a, [["x-api-key", "file-key-0001"]])).passed, true);
    assert.equal((await run(a, [["x-api-key", "inline-0001"]])).passed, true);
    await Deno.writeTextFile(file, `keys:\n  - { key: file-key-0002, expires: 2999-01-01T00:00:00Z }\n`);
    const b = middlewareFrom("api_key", { file });
    assert.equal((await run(b, [["x-api-key", "file-key-0001"]])).rejection, "api_key/invalid");
    assert.equal((await run(b, [["x-api-key", "file-key-0002"]])).passed, true);
    await Deno.writeTextFile(file, `- { key: secret-in-file, bogus: 1 }\n`);
    assert.throws(
      () => middlewareFrom("api_key", { file }),
      (e: Error) => /unknown field "bogus"/.test(e.message) && !e.message.includes("secret-in-file"),
    );
    await Deno.writeTextFile(file, `- { key: dup-0001 }\n`);
    assert.throws(
      () => middlewareFrom("api_key", { file, keys: [{ key: "dup-0001" }] }),
      /file entry 0 is the same key as keys\[0\]/,
    );
    await Deno.writeTextFile(file, `- key: "unterminated secret-in-file\n`);
    assert.throws(
      () => middlewareFrom("api_key", { file }),
      (e: Error) => !e.message.includes("secret-in-file"),
    );
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("api_key: sameHash compares whole 64-digit digests", () => {
  const a = sha("a");
  assert.equal(sameHash(a, sha("a")), true);
  assert.equal(sameHash(a, sha("b")), false);
  assert.equal(sameHash(a, a.slice(0, 63) + (a[63] === "0" ? "1" : "0")), false);
  assert.equal(sameHash(a, a + "0"), false);
  assert.equal(sameHash("", ""), false);
});
