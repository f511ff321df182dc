import assert from "node:assert/strict";
import { isValidRequestId, newRequestId, requestIdFrom } from "./request_id.ts";

Deno.test("newRequestId: unique, valid, per-isolate prefix", () => {
  const ids = new Set<string>();
  for (let i = 0; i < 100_000; i++) ids.add(newRequestId());
  assert.equal(ids.size, 100_000);
  const [a, b] = [newRequestId(), newRequestId()];
  assert.match(a, /^[0-9a-f]{16}-[0-9a-f]+$/);
  assert.equal(a.split("-")[0], b.split("-")[0]);
  assert.ok(isValidRequestId(a));
});

Deno.test("isValidRequestId: 1-128 visible ASCII characters", () => {
  assert.ok(isValidRequestId("abc-DEF_123.~!"));
  assert.ok(isValidRequestId("x".repeat(128)));
  assert.ok(!isValidRequestId("x".repeat(129)));
  assert.ok(!isValidRequestId(""));
  assert.ok(!isValidRequestId(null));
  assert.ok(!isValidRequestId(undefined));
  assert.ok(!isValidRequestId("has space"));
  assert.ok(!isValidRequestId("line\nbreak"));
  assert.ok(!isValidRequestId("tab\t"));
  assert.ok(!isValidRequestId("ünï"));
  assert.ok(!isValidRequestId("del\x7f"));
});

Deno.test("requestIdFrom keeps valid ids and replaces invalid ones", () => {
  assert.equal(requestIdFrom("client-id-1"), "client-id-1");
  const generated = requestIdFrom("bad id");
  assert.notEqual(generated, "bad id");
  assert.ok(isValidRequestId(generated));
  assert.ok(isValidRequestId(requestIdFrom(null)));
});
