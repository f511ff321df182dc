import assert from "node:assert/strict";
import { decodeQueryComponent, LazyQuery, parseQuery } from "./query.ts";

Deno.test("parseQuery decodes keys and values, first value wins", () => {
  const q = parseQuery("a=1&b=x+y&c=%41%2B&a=2&flag&&e=&%zz=bad%zz");
  assert.deepEqual(Object.fromEntries(q), { a: "1", b: "x y", c: "A+", flag: "", e: "", "%zz": "bad%zz" });
  assert.equal(parseQuery("").size, 0);
});

Deno.test("decodeQueryComponent", () => {
  assert.equal(decodeQueryComponent("plain"), "plain");
  assert.equal(decodeQueryComponent("a+b"), "a b");
  assert.equal(decodeQueryComponent("caf%C3%A9"), "café");
  assert.equal(decodeQueryComponent("100%"), "100%");
});

Deno.test("LazyQuery parses once and resets per request", () => {
  const q = new LazyQuery();
  q.reset("a=1");
  assert.equal(q.get("a"), "1");
  assert.equal(q.get("b"), undefined);
  q.reset("b=2");
  assert.equal(q.get("a"), undefined);
  assert.equal(q.get("b"), "2");
});
