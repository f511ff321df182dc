import assert from "node:assert/strict";
import { compileRedirect, compileRewrite, encodePath, stripPrefix } from "./rewrite.ts";

Deno.test("compileRewrite substitutes and re-encodes", async (t) => {
  const cases: [string, Record<string, string>, string, string][] = [
    // [template, params, rest, expected]
    ["/v2/users/{id}", { id: "42" }, "", "/v2/users/42"],
    ["/files/{path}", { path: "a/b/c" }, "a/b/c", "/files/a/b/c"],
    ["/files/{*}", {}, "a/b", "/files/a/b"],
    ["/files/{path...}", { path: "x/y" }, "x/y", "/files/x/y"],
    ["/static", {}, "", "/static"],
    ["/u/{id}", { id: "a%2Fb" }, "", "/u/a%2Fb"],
    ["/u/{id}", { id: "a?b#c d" }, "", "/u/a%3Fb%23c%20d"],
    ["/u/{id}", { id: "café" }, "", "/u/caf%C3%A9"],
    ["/u/{id}", { id: "😀" }, "", "/u/%F0%9F%98%80"],
    ["/u/{id}", { id: "100%" }, "", "/u/100%25"],
    ["/u/{id}", { id: "a:b@c;d=e" }, "", "/u/a:b@c;d=e"],
    ["/u/{id}/{*}", { id: "1" }, "", "/u/1/"],
    ["/u/{missing}", {}, "", "/u/"],
  ];
  for (const [tpl, params, rest, want] of cases) {
    await t.step(
      `${tpl} ${JSON.stringify(params)}`,
      () => assert.equal(compileRewrite(tpl)(params, rest), want),
    );
  }
});

Deno.test("compileRewrite rejects bad templates", async (t) => {
  const bad: [string, string[] | undefined][] = [
    ["v2/{id}", undefined],
    ["/v2/{id", undefined],
    ["/v2/id}", undefined],
    ["/v2/{1x}", undefined],
    ["/v2/{other}", ["id"]],
  ];
  for (const [tpl, names] of bad) {
    await t.step(tpl, () => assert.throws(() => compileRewrite(tpl, names)));
  }
  assert.equal(compileRewrite("/v2/{id}", ["id"])({ id: "1" }, ""), "/v2/1");
});

Deno.test("compileRedirect encodes per URL part", async (t) => {
  const cases: [string, Record<string, string>, string, string][] = [
    ["https://new.example.com/u/{id}", { id: "a b" }, "", "https://new.example.com/u/a%20b"],
    ["/search?q={id}&x=1", { id: "a&b=c+d#" }, "", "/search?q=a%26b%3Dc%2Bd%23&x=1"],
    ["https://{t}.example.com/", { t: "evil.com/x@" }, "", "https://evil.com%2Fx%40.example.com/"],
    ["/{*}", {}, "/evil.com", "/evil.com"],
    ["{*}", {}, "//evil.com", "/evil.com"],
    ["/docs/{*}", {}, "a/b", "/docs/a/b"],
  ];
  for (const [tpl, params, rest, want] of cases) {
    await t.step(tpl, () => assert.equal(compileRedirect(tpl)(params, rest), want));
  }
});

Deno.test("stripPrefix", async (t) => {
  const cases: [string, string, string][] = [
    ["/api/v1/users", "/api/v1", "/users"],
    ["/api/v1", "/api/v1", "/"],
    ["/api/v1/", "/api/v1", "/"],
    ["/api/v1/users", "/api/v1/", "/users"],
    ["/api/v10", "/api/v1", "/api/v10"],
    ["/other", "/api", "/other"],
    ["/x", "", "/x"],
    ["/x", "/", "/x"],
  ];
  for (const [path, prefix, want] of cases) {
    await t.step(`${path} - ${prefix}`, () => assert.equal(stripPrefix(path, prefix), want));
  }
});

Deno.test("encodePath keeps normalised paths wire-safe", () => {
  assert.equal(encodePath("/a/b"), "/a/b");
  assert.equal(encodePath("/café/a%2Fb"), "/caf%C3%A9/a%2Fb");
  assert.equal(encodePath("/a%3Fb"), "/a%3Fb");
  assert.equal(encodePath("/a\uD800b"), "/a%EF%BF%BDb");
});
