import assert from "node:assert/strict";
import { resolveClientIp } from "./client_ip.ts";
import { CidrSet } from "./cidr.ts";

const trusted = new CidrSet(["10.0.0.0/8", "::1/128"]);

Deno.test("resolveClientIp: the peer unless it is a trusted proxy", () => {
  assert.equal(resolveClientIp("203.0.113.9", trusted, "198.51.100.1", undefined), "203.0.113.9");
  assert.equal(resolveClientIp("10.1.1.1", null, "198.51.100.1", undefined), "10.1.1.1");
});

Deno.test("resolveClientIp: right-most untrusted X-Forwarded-For entry, spoofed left entries ignored", () => {
  assert.equal(
    resolveClientIp("10.1.1.1", trusted, "1.2.3.4, 198.51.100.1, 10.2.2.2", undefined),
    "198.51.100.1",
  );
  assert.equal(resolveClientIp("::1", trusted, "198.51.100.7", undefined), "198.51.100.7");
  // Every hop trusted: the left-most.
  assert.equal(resolveClientIp("10.1.1.1", trusted, "10.9.9.9, 10.2.2.2", undefined), "10.9.9.9");
  // A malformed entry stops the walk at the last good address.
  assert.equal(
    resolveClientIp("10.1.1.1", trusted, "198.51.100.1, garbage, 10.2.2.2", undefined),
    "10.2.2.2",
  );
  assert.equal(resolveClientIp("10.1.1.1", trusted, "", undefined), "10.1.1.1");
});

Deno.test("resolveClientIp: Forwarded for= when there is no X-Forwarded-For", () => {
  assert.equal(
    resolveClientIp("10.1.1.1", trusted, undefined, 'for="[2001:db8::1]:4711";proto=https, for=10.3.3.3'),
    "2001:db8::1",
  );
  assert.equal(
    resolveClientIp("10.1.1.1", trusted, undefined, "for=192.0.2.60:8080;by=10.0.0.1"),
    "192.0.2.60",
  );
  assert.equal(resolveClientIp("10.1.1.1", trusted, undefined, "for=unknown"), "10.1.1.1");
});
