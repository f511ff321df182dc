import assert from "node:assert/strict";
import { nameMatches } from "./tls.ts";

Deno.test("SNI wildcard names cover exactly one label", () => {
  assert.ok(nameMatches("*.example.com", "api.example.com"));
  assert.ok(!nameMatches("*.example.com", "example.com"));
  assert.ok(!nameMatches("*.example.com", "a.b.example.com"));
  assert.ok(nameMatches("example.com", "example.com"));
});
