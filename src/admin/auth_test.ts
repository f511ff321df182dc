import assert from "node:assert/strict";
import { parseBasic, parseBearer, timingSafeEqual } from "./auth.ts";

Deno.test("parseBasic", () => {
  assert.deepEqual(parseBasic("Basic " + btoa("u:p:w")), { user: "u", password: "p:w" });
  assert.deepEqual(parseBasic("basic   " + btoa("u:")), { user: "u", password: "" });
  // UTF-8 credentials.
  const utf8 = btoa(String.fromCharCode(...new TextEncoder().encode("jürgen:pässword")));
  assert.deepEqual(parseBasic("Basic " + utf8), { user: "jürgen", password: "pässword" });
  assert.equal(parseBasic(undefined), null);
  assert.equal(parseBasic("Basic"), null);
  assert.equal(parseBasic("Basic %%%"), null);
  assert.equal(parseBasic("Basic " + btoa("nocolon")), null);
  assert.equal(parseBasic("Digest abc"), null);
});

Deno.test("timingSafeEqual", () => {
  assert.ok(timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2])));
  assert.ok(!timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3])));
  assert.ok(!timingSafeEqual(new Uint8Array([1]), new Uint8Array([1, 2])));
});

Deno.test("parseBearer", () => {
  assert.equal(parseBearer("Bearer abc.DEF-123"), "abc.DEF-123");
  assert.equal(parseBearer("bearer   abc "), "abc");
  assert.equal(parseBearer(undefined), null);
  assert.equal(parseBearer("Bearer"), null);
  assert.equal(parseBearer("Bearer a b"), null);
  assert.equal(parseBearer("Basic " + btoa("u:p")), null);
});
