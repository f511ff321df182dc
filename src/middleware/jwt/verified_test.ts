import assert from "node:assert/strict";
import { VerifiedTokens } from "./verified.ts";
import type { VerifyKey } from "./keys.ts";

const key = (id: string): VerifyKey => ({ kid: id, byAlg: new Map(), id });

Deno.test("verified tokens: hits within the window (leeway included) and while the key is usable", () => {
  const live = new Set<VerifyKey>();
  const k = key("a");
  live.add(k);
  const cache = new VerifiedTokens(10, 5, (x) => live.has(x));
  cache.add("t", { sub: "u", nbf: 100, exp: 200 }, k);
  assert.equal(cache.get("t", 94), undefined, "before nbf - leeway");
  cache.add("t", { sub: "u", nbf: 100, exp: 200 }, k);
  assert.deepEqual(cache.get("t", 95), { sub: "u", nbf: 100, exp: 200 });
  assert.ok(cache.get("t", 204));
  assert.equal(cache.get("t", 205), undefined, "exp + leeway passed");
  assert.equal(cache.size, 0, "a stale entry goes");
  cache.add("t", { sub: "u" }, k);
  assert.ok(Object.isFrozen(cache.get("t")));
  live.delete(k);
  assert.equal(cache.get("t"), undefined, "its key rotated out");
});

Deno.test("verified tokens: bounded, oldest out; size 0 stores nothing", () => {
  const cache = new VerifiedTokens(2, 0, () => true);
  const k = key("a");
  cache.add("a", {}, k);
  cache.add("b", {}, k);
  cache.add("c", {}, k);
  assert.equal(cache.size, 2);
  assert.equal(cache.get("a"), undefined);
  assert.ok(cache.get("c"));
  const none = new VerifiedTokens(0, 0, () => true);
  none.add("a", {}, k);
  assert.equal(none.size, 0);
});
