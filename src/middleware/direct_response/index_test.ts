import assert from "node:assert/strict";
import { directResponse } from "./index.ts";
import { testContext } from "../test_context.ts";

Deno.test("direct_response: status, body and content type; a fresh head per answer", async () => {
  const answer = directResponse({ status: 503, body: "later" });
  const a = testContext();
  await answer(a.ctx);
  assert.equal(a.sent.status, 503);
  assert.equal(a.sent.body, "later");
  assert.equal(a.sent.headers.get("content-type"), "text/plain; charset=utf-8");
  a.sent.headers.set("x-edited", "1");
  const b = testContext();
  await answer(b.ctx);
  assert.equal(b.sent.headers.get("x-edited"), undefined);

  const c = testContext();
  await directResponse({ status: 500 })(c.ctx);
  assert.equal(c.sent.status, 500);
  assert.equal(c.sent.body, "");
  assert.equal(c.sent.headers.size, 0);

  const d = testContext();
  await directResponse({ status: 200, body: "{}", content_type: "application/json" })(d.ctx);
  assert.equal(d.sent.headers.get("content-type"), "application/json");
});
