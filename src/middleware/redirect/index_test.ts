import assert from "node:assert/strict";
import { authorityPort, compileLocation, redirect, replacePrefix } from "./index.ts";
import type { RedirectConfig } from "../../config/route_actions.ts";
import { testContext } from "../test_context.ts";

/** A context for `target` on `authority` (as the gateway would fill it after routing). */
function routed(target: string, authority: string, rest = "", scheme: "http" | "https" = "http") {
  const t = testContext();
  const q = target.indexOf("?");
  t.ctx.target = target;
  t.ctx.path = q === -1 ? target : target.slice(0, q);
  t.ctx.query = q === -1 ? "" : target.slice(q + 1);
  t.ctx.authority = authority;
  t.ctx.host = authority.startsWith("[")
    ? authority.slice(0, authority.indexOf("]") + 1)
    : authority.split(":")[0];
  t.ctx.scheme = scheme;
  t.ctx.pathRest = rest;
  t.ctx.params = rest === "" ? {} : { "*": rest };
  return t;
}

Deno.test("redirect: Location from parts, the rest taken from the request", () => {
  const cases: [Omit<RedirectConfig, "code">, string, string, string, string][] = [
    // [parts, request target, authority, catch-all rest, Location]
    [{ scheme: "https" }, "/a?x=1", "example.com", "a", "https://example.com/a?x=1"],
    [{ scheme: "https" }, "/a", "example.com:8080", "a", "https://example.com/a"],
    [{ scheme: "http" }, "/a", "example.com:8443", "a", "http://example.com/a"],
    [{ port: 8443 }, "/a", "example.com", "a", "http://example.com:8443/a"],
    [{ port: 80 }, "/a", "example.com:8080", "a", "http://example.com/a"],
    [{ scheme: "https", port: 443 }, "/a", "example.com:80", "a", "https://example.com/a"],
    [{ scheme: "https", port: 80 }, "/a", "example.com", "a", "https://example.com:80/a"],
    [{ hostname: "other.example" }, "/a", "example.com:8080", "a", "http://other.example:8080/a"],
    [{}, "/a/b?q", "[::1]:9000", "a/b", "http://[::1]:9000/a/b?q"],
    [{ path: "/new" }, "/old/x?k=v", "h", "x", "http://h/new?k=v"],
    [{ path: "/new/{*}" }, "/old/x/y", "h", "x/y", "http://h/new/x/y"],
    [{ prefix_path: "/v2" }, "/api/x/y", "h", "x/y", "http://h/v2/x/y"],
    [{ prefix_path: "/v2/" }, "/api/x", "h", "x", "http://h/v2/x"],
    [{ prefix_path: "/" }, "/api/x", "h", "x", "http://h/x"],
    [{ prefix_path: "/v2" }, "/api", "h", "", "http://h/v2"],
    [{ prefix_path: "/v2" }, "/api/", "h", "", "http://h/v2/"],
    [{ prefix_path: "/" }, "/api", "h", "", "http://h/"],
    [{ prefix_path: "/v2" }, "/api/a b", "h", "a b", "http://h/v2/a%20b"],
  ];
  for (const [parts, target, authority, rest, want] of cases) {
    const { ctx } = routed(target, authority, rest);
    assert.equal(compileLocation({ ...parts, code: 302 })(ctx), want, JSON.stringify([parts, target]));
  }
});

Deno.test("redirect: the url form keeps the query unless it has its own", () => {
  const { ctx } = routed("/old/7?a=1", "h");
  ctx.params = { id: "7" };
  assert.equal(compileLocation({ url: "/new/{id}", code: 301 })(ctx), "/new/7?a=1");
  assert.equal(compileLocation({ url: "/new/{id}?b=2", code: 301 })(ctx), "/new/7?b=2");
  ctx.query = "";
  assert.equal(compileLocation({ url: "https://e.com/{id}", code: 301 })(ctx), "https://e.com/7");
});

Deno.test("redirect: answers the status with Location; a Host unfit for a Location is a 400", async () => {
  let t = routed("/x?y", "example.com:81", "x");
  await redirect({ scheme: "https", code: 308 }).request!(t.ctx, () => Promise.reject(new Error("next")));
  assert.equal(t.sent.status, 308);
  assert.equal(t.sent.headers.get("location"), "https://example.com/x?y");
  t = routed("/x", "evil.com/x@h", "x");
  await redirect({ port: 1, code: 302 }).request!(t.ctx, () => Promise.reject(new Error("next")));
  assert.equal(t.sent.status, 400);
  assert.equal(t.ctx.rejection, "redirect/bad_host");
  // With the host given, the request's is not used.
  t = routed("/x", "evil.com/x@h", "x");
  await redirect({ hostname: "ok.example", code: 302 }).request!(
    t.ctx,
    () => Promise.reject(new Error("next")),
  );
  assert.equal(t.sent.headers.get("location"), "http://ok.example/x");
});

Deno.test("redirect: authorityPort and replacePrefix", () => {
  assert.equal(authorityPort("a:8080"), 8080);
  assert.equal(authorityPort("a"), 0);
  assert.equal(authorityPort("[::1]"), 0);
  assert.equal(authorityPort("[::1]:443"), 443);
  assert.equal(authorityPort("a:99999"), 0);
  assert.equal(authorityPort("a:"), 0);
  assert.equal(replacePrefix("/api/x", "x", "/v1"), "/v1/x");
  assert.equal(replacePrefix("/api", "", ""), "/");
});
