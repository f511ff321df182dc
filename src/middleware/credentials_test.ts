import assert from "node:assert/strict";
import { HeaderList } from "../core/headers.ts";
import { cookieValues, headerValues, queryValues, removeCookie, rewriteQueryParam } from "./credentials.ts";

Deno.test("credentials: header fields one by one", () => {
  const h = HeaderList.from([["X-Api-Key", "a"], ["other", "b"], ["x-api-key", "c"]]);
  assert.deepEqual(headerValues(h, "x-api-key"), ["a", "c"]);
  assert.deepEqual(headerValues(h, "none"), []);
});

Deno.test("credentials: query parameters compared decoded; bad encoding is null", () => {
  assert.deepEqual(queryValues("a=1&api_key=k%2B1&b", "api_key"), ["k+1"]);
  assert.deepEqual(queryValues("api%5Fkey=x&api_key=y", "api_key"), ["x", "y"]);
  assert.deepEqual(queryValues("api_key", "api_key"), [""]);
  assert.deepEqual(queryValues("", "api_key"), []);
  assert.equal(queryValues("api_key=%zz", "api_key"), null);
});

Deno.test("credentials: a parameter removed or masked in a target, every spelling of it", () => {
  assert.equal(rewriteQueryParam("/p?a=1&api_key=x&b=2", "api_key", null), "/p?a=1&b=2");
  assert.equal(rewriteQueryParam("/p?api%5Fkey=x", "api_key", null), "/p");
  assert.equal(rewriteQueryParam("/p?a=1&api_key=x", "api_key", "[REDACTED]"), "/p?a=1&api_key=[REDACTED]");
  assert.equal(rewriteQueryParam("/p?a=1", "api_key", null), "/p?a=1");
  assert.equal(rewriteQueryParam("/p", "api_key", null), "/p");
});

Deno.test("credentials: cookies found and removed across Cookie fields", () => {
  const h = HeaderList.from([["cookie", 'a=1; sid="tok"'], ["cookie", "sid=two; b=2"]]);
  assert.deepEqual(cookieValues(h, "sid"), ["tok", "two"]);
  removeCookie(h, "sid");
  assert.deepEqual(h.entries(), [["cookie", "a=1; b=2"]]);
  const only = HeaderList.from([["cookie", "sid=x"]]);
  removeCookie(only, "sid");
  assert.equal(only.size, 0);
});
