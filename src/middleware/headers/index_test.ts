import assert from "node:assert/strict";
import { headers, securityHeaders } from "./index.ts";
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

Deno.test("headers: rename keeps every value in place", () => {
  const { ctx } = testContext();
  const m = headers({ response: { rename: { "X-Old": "x-new" } } });
  const h = new HeaderList();
  h.append("X-Old", "1");
  h.append("a", "b");
  h.append("x-old", "2");
  m.response!(ctx, { status: 200, headers: h, bodyLength: 0 });
  assert.deepEqual(h.entries(), [["x-new", "1"], ["a", "b"], ["x-new", "2"]]);
});

Deno.test("security_headers: preset values, upstream's kept unless override, HSTS on https only", () => {
  const opts = {
    hsts: { max_age: 31_536_000_000, include_subdomains: true, preload: false },
    content_type_options: true,
    frame_options: true as boolean | string,
    referrer_policy: "no-referrer" as boolean | string,
    content_security_policy: false as boolean | string,
    override: false,
  };
  const m = securityHeaders(opts);
  const plain = testContext();
  const h = new HeaderList();
  h.append("x-frame-options", "SAMEORIGIN");
  m.response!(plain.ctx, { status: 200, headers: h, bodyLength: 0 });
  assert.deepEqual(Object.fromEntries(h.entries()), {
    "x-frame-options": "SAMEORIGIN",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
  });
  const tls = testContext();
  tls.ctx.scheme = "https";
  const h2 = new HeaderList();
  h2.append("x-frame-options", "SAMEORIGIN");
  securityHeaders({ ...opts, override: true }).response!(tls.ctx, {
    status: 200,
    headers: h2,
    bodyLength: 0,
  });
  assert.equal(h2.get("x-frame-options"), "DENY");
  assert.equal(h2.get("strict-transport-security"), "max-age=31536000; includeSubDomains");
});
