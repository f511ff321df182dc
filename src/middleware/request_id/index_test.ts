import assert from "node:assert/strict";
import { requestIdHeader } from "./index.ts";
import { testContext } from "../test_context.ts";
import { HeaderList } from "../../core/headers.ts";

Deno.test("request_id: the id goes on the response in the configured header", () => {
  const mw = requestIdHeader("X-Correlation-ID");
  const { ctx } = testContext();
  ctx.id = "abc-1";
  const head = { status: 200, headers: new HeaderList(), bodyLength: 0 };
  head.headers.append("x-correlation-id", "from-upstream");
  mw.response!(ctx, head);
  assert.deepEqual(head.headers.entries(), [["x-correlation-id", "abc-1"]]);
  // No id (never routed): nothing added.
  const other = testContext().ctx;
  const h2 = { status: 404, headers: new HeaderList(), bodyLength: 0 };
  mw.response!(other, h2);
  assert.equal(h2.headers.get("x-correlation-id"), undefined);
});
