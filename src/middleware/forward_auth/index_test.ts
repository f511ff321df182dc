import assert from "node:assert/strict";
import { FORWARD_AUTH_HEADERS_VAR, forwardAuth, type ForwardAuthOptions } from "./index.ts";
import type { MiddlewareEnv } from "../registry.ts";
import type { CallRequest, CallResponse } from "../../proxy/call.ts";
import { testContext } from "../test_context.ts";
import { setLogLevel } from "../../observability/logger.ts";

setLogLevel("error");

type Answer = CallResponse | Error;

function env(
  answer: Answer,
): MiddlewareEnv & { calls: { name: string; req: Omit<CallRequest, "authority">; t: number }[] } {
  const calls: { name: string; req: Omit<CallRequest, "authority">; t: number }[] = [];
  return {
    calls,
    hasUpstream: (n) => n === "auth",
    call: (name, req, t) => {
      calls.push({ name, req, t });
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
    },
  };
}

function options(o: Partial<ForwardAuthOptions> = {}): ForwardAuthOptions {
  return {
    upstream: "auth",
    path: "/check?x=1",
    method: "GET",
    timeout: 1500,
    on_error: "deny",
    request_headers: ["authorization", "cookie"],
    response_headers: ["x-user"],
    ...o,
  };
}

const answer = (status: number, headers: [string, string][] = [], body = ""): CallResponse => ({
  status,
  headers,
  body: new TextEncoder().encode(body),
  trailers: [],
});

async function run(o: ForwardAuthOptions, e: MiddlewareEnv, headers: [string, string][] = []) {
  const { ctx, sent } = testContext();
  ctx.method = "DELETE";
  ctx.target = "/api/items/7?force=1";
  ctx.authority = "shop.example:8443";
  ctx.scheme = "https";
  ctx.clientIp = "192.0.2.9";
  ctx.id = "rid-1";
  for (const [n, v] of headers) ctx.headers.append(n, v);
  let passed = false;
  await forwardAuth(o, e).request!(ctx, () => {
    passed = true;
    return Promise.resolve();
  });
  return { ctx, sent, passed };
}

Deno.test("forward_auth: the check carries the listed fields and X-Forwarded-*, never the body", async () => {
  const e = env(answer(200));
  await run(options(), e, [
    ["Authorization", "Bearer t"],
    ["cookie", "a=1"],
    ["cookie", "b=2"],
    ["x-other", "not sent"],
    ["x-forwarded-for", "6.6.6.6"],
  ]);
  assert.equal(e.calls.length, 1);
  const { name, req, t } = e.calls[0];
  assert.equal(name, "auth");
  assert.equal(t, 1500);
  assert.equal(req.method, "GET");
  assert.equal(req.path, "/check?x=1");
  assert.equal(req.body.length, 0);
  assert.deepEqual(req.headers, [
    ["Authorization", "Bearer t"],
    ["cookie", "a=1"],
    ["cookie", "b=2"],
    ["x-forwarded-method", "DELETE"],
    ["x-forwarded-uri", "/api/items/7?force=1"],
    ["x-forwarded-host", "shop.example:8443"],
    ["x-forwarded-proto", "https"],
    ["x-forwarded-for", "192.0.2.9"],
    ["x-request-id", "rid-1"],
  ]);
});

Deno.test("forward_auth: 2xx lets the request through with the auth service's fields replacing the client's", async () => {
  const e = env(answer(204, [["X-User", "ada"], ["x-user", "ada2"], ["x-secret", "no"]]));
  const r = await run(options(), e, [["x-user", "forged"]]);
  assert.ok(r.passed);
  assert.deepEqual(r.ctx.headers.entries().filter(([n]) => n.toLowerCase().startsWith("x-")), [
    ["X-User", "ada"],
    ["x-user", "ada2"],
  ]);
  assert.deepEqual(r.ctx.vars.get(FORWARD_AUTH_HEADERS_VAR), [["X-User", "ada"], ["x-user", "ada2"]]);
  // A 2xx without the field still removes the client's copy.
  const bare = await run(options(), env(answer(200)), [["x-user", "forged"]]);
  assert.ok(bare.passed);
  assert.equal(bare.ctx.headers.get("x-user"), undefined);
});

Deno.test("forward_auth: other answers go to the client as given, with a reason", async () => {
  const cases: [CallResponse, string][] = [
    [
      answer(401, [["www-authenticate", 'Bearer realm="x"'], ["content-type", "text/plain"]], "who are you"),
      "unauthorized",
    ],
    [answer(403, [["content-type", "application/json"]], '{"denied":true}'), "forbidden"],
    [answer(302, [["location", "https://login.example/?rd=x"], ["set-cookie", "s=1"]]), "redirect"],
    [answer(500, [], "oops"), "denied"],
  ];
  for (const [a, reason] of cases) {
    const r = await run(options(), env(a));
    assert.equal(r.passed, false);
    assert.equal(r.sent.status, a.status);
    assert.equal(r.sent.body, new TextDecoder().decode(a.body));
    for (const [n, v] of a.headers) assert.equal(r.sent.headers.get(n), v);
    assert.equal(r.sent.headers.get("x-request-id"), "rid-1");
    assert.equal(r.ctx.rejection, "forward_auth/" + reason);
  }
});

Deno.test("forward_auth: an unreachable or slow auth service: deny is 503, allow passes without its fields", async () => {
  const slow = await run(options(), env(new Error("http call timed out")));
  assert.equal(slow.sent.status, 503);
  assert.equal(slow.ctx.rejection, "forward_auth/timeout");
  const down = await run(options(), env(new Error("connection refused")));
  assert.equal(down.ctx.rejection, "forward_auth/unavailable");
  const open = await run(options({ on_error: "allow" }), env(new Error("http call timed out")), [[
    "x-user",
    "forged",
  ]]);
  assert.ok(open.passed);
  assert.equal(open.ctx.headers.get("x-user"), undefined);
});

Deno.test("forward_auth: gRPC clients get a gRPC status; an undefined upstream is a build error", async () => {
  const { ctx, sent } = testContext();
  ctx.grpc = 1;
  await forwardAuth(options(), env(answer(403, [], "no"))).request!(ctx, () => Promise.resolve());
  assert.equal(sent.status, 200);
  assert.equal(sent.headers.get("grpc-status"), "7");
  assert.throws(
    () => forwardAuth(options({ upstream: "nope" }), env(answer(200))),
    /upstream "nope" is not defined/,
  );
});
