import assert from "node:assert/strict";
import { headers } from "./index.ts";
import { HeaderList } from "../../core/headers.ts";
import { testContext } from "../test_context.ts";
import { JWT_CLAIMS_VAR } from "../template.ts";

Deno.test("headers: remove, set, add in that order; variables filled per request", () => {
  const { ctx } = testContext();
  ctx.id = "req-1";
  ctx.route = { id: "api" };
  ctx.headers.append("x-user", "ada");
  ctx.query = "plan=gold&x=1";
  ctx.vars.set(JWT_CLAIMS_VAR, { sub: "u-7", roles: ["a", "b"] });
  const m = headers({
    request: {
      remove: ["X-Debug"],
      set: { "x-ip": "${client_ip}", "x-who": "${header.x-user}/${jwt.sub}/${query.plan}" },
      add: { "x-route": "${route_id}" },
    },
    response: { set: { "x-request": "${request_id}", "x-roles": "${jwt.roles}" } },
  });
  const h = new HeaderList();
  h.append("x-debug", "1");
  h.append("x-route", "first");
  m.upstreamRequest!(ctx, { method: "GET", target: "/", authority: "a", headers: h });
  assert.deepEqual(h.entries(), [
    ["x-route", "first"],
    ["x-ip", "127.0.0.1"],
    ["x-who", "ada/u-7/gold"],
    ["x-route", "api"],
  ]);
  const r = new HeaderList();
  m.response!(ctx, { status: 200, headers: r, bodyLength: 0 });
  assert.deepEqual(r.entries(), [["x-request", "req-1"], ["x-roles", '["a","b"]']]);
});

Deno.test("headers: an empty block hooks no phase", () => {
  const m = headers({ request: {}, response: undefined });
  assert.equal(m.upstreamRequest, undefined);
  assert.equal(m.response, undefined);
});
