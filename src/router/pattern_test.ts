import assert from "node:assert/strict";
import { parsePattern } from "./pattern.ts";

Deno.test("parsePattern", async (t) => {
  const cases: [string, string[], string | null, string][] = [
    // [pattern, tokens ("{name}" for params), catch-all, prefix]
    ["/", ["/"], null, ""],
    ["/api/users", ["/api/users"], null, "/api/users"],
    ["/exact/", ["/exact/"], null, "/exact"],
    ["/users/{id}", ["/users/", "{id}"], null, "/users"],
    ["/users/:id/posts", ["/users/", "{id}", "/posts"], null, "/users"],
    ["/api/v1/*", ["/api/v1/"], "*", "/api/v1"],
    ["/files/{path...}", ["/files/"], "path", "/files"],
    ["/*", ["/"], "*", ""],
    ["/t/{t}/api/*", ["/t/", "{t}", "/api/"], "*", "/t"],
    ["/caf%c3%a9/%7euser", ["/café/~user"], null, "/café/~user"],
    ["/a b", ["/a%20b"], null, "/a%20b"],
    ["/a%2fb", ["/a%2Fb"], null, "/a%2Fb"],
  ];
  for (const [pattern, tokens, catchAll, prefix] of cases) {
    await t.step(pattern, () => {
      const p = parsePattern(pattern);
      assert.deepEqual(p.tokens.map((x) => x.kind === "static" ? x.text : `{${x.name}}`), tokens);
      assert.equal(p.catchAll, catchAll);
      assert.equal(p.prefix, prefix);
    });
  }
});
