import assert from "node:assert/strict";
import { normalizePath, splitTarget } from "./path.ts";

Deno.test("normalizePath", async (t) => {
  const cases: [string, string | null, string][] = [
    // [raw, expected, why]
    ["/", "/", "root"],
    ["/api/users", "/api/users", "plain"],
    ["/api/users/", "/api/users/", "trailing slash kept"],
    ["/caf%C3%A9", "/café", "UTF-8 decoded"],
    ["/caf%c3%a9", "/café", "lower-case hex"],
    ["/%F0%9F%98%80", "/😀", "4-byte UTF-8"],
    ["/%41%7e%2D", "/A~-", "unreserved decoded"],
    ["/a%2Fb", "/a%2Fb", "encoded slash kept"],
    ["/a%2fb", "/a%2Fb", "encoded slash upper-cased, kept"],
    ["/a%5cb", "/a%5Cb", "encoded backslash kept"],
    ["/a%252Fb", "/a%252Fb", "%25 kept: no double decoding"],
    ["/a%3Fb%23c%20d", "/a%3Fb%23c%20d", "reserved and space stay encoded"],
    ["/a/./b", "/a/b", "dot"],
    ["/a/b/../c", "/a/c", "dot-dot"],
    ["/a/..", "/", "dot-dot to root"],
    ["/a/b/..", "/a/", "trailing dot-dot leaves slash"],
    ["/a/.", "/a/", "trailing dot leaves slash"],
    ["/a/../../admin", "/admin", "never above root"],
    ["/..", "/", "dot-dot at root"],
    ["/public/../admin", "/admin", "traversal"],
    ["/public/%2e%2e/admin", "/admin", "encoded traversal"],
    ["/public/%2E%2E/admin", "/admin", "encoded traversal upper"],
    ["/public/.%2e/admin", "/admin", "mixed traversal"],
    ["/public/%2e/x", "/public/x", "encoded dot"],
    ["/public/..%2Fadmin", "/public/..%2Fadmin", "encoded slash is no separator"],
    ["/.well-known/x", "/.well-known/x", "dot prefix not a dot segment"],
    ["/a/..b/c", "/a/..b/c", "..b is a name"],
    ["/a//b", "/a/b", "double slash merged"],
    ["//a///b//", "/a/b/", "many slashes merged"],
    ["//", "/", "only slashes"],
    ["/a%zz", null, "invalid escape"],
    ["/a%4", null, "truncated escape"],
    ["/a%", null, "bare percent"],
    ["/a%4/b", null, "escape cut by slash"],
    ["/a%00b", null, "NUL"],
    ["/a%0Ab", null, "encoded LF"],
    ["/a%7F", null, "encoded DEL"],
    ["/a\u0001b", null, "raw control"],
    ["/a\tb", null, "raw tab"],
    ["/%C3", null, "truncated UTF-8"],
    ["/%C3%28", null, "bad continuation"],
    ["/%C0%AF", null, "overlong"],
    ["/%E0%80%AF", null, "3-byte overlong"],
    ["/%ED%A0%80", null, "surrogate"],
    ["/%F4%90%80%80", null, "above U+10FFFF"],
    ["/%80", null, "lone continuation"],
    ["/%C2%85", null, "C1 control"],
    ["api/users", null, "no leading slash"],
    ["", null, "empty"],
    ["*", null, "asterisk form"],
  ];
  for (const [raw, want, why] of cases) {
    await t.step(`${why}: ${JSON.stringify(raw)}`, () => assert.equal(normalizePath(raw), want));
  }
});

Deno.test("normalizePath leaves already-normal paths unchanged", () => {
  // (String identity is not observable in JS; the bench covers the no-allocation path.)
  for (const p of ["/", "/api/v1/users/42", "/a.b/c.", "/x/.y", "/x/..y/", "/café"]) {
    assert.equal(normalizePath(p), p);
  }
});

Deno.test("splitTarget", async (t) => {
  const cases: [string, string, string][] = [
    ["/a/b", "/a/b", ""],
    ["/a/b?", "/a/b", ""],
    ["/a/b?x=1&y=2", "/a/b", "x=1&y=2"],
    ["/a?b?c", "/a", "b?c"],
    ["/a#frag", "/a", ""],
    ["/a?q=1#frag", "/a", "q=1"],
    ["http://example.com/p?q=1", "/p", "q=1"],
    ["https://example.com", "/", ""],
    ["http://example.com?q", "/", "q"],
  ];
  for (const [target, path, query] of cases) {
    await t.step(target, () => assert.deepEqual(splitTarget(target), { path, query }));
  }
});
