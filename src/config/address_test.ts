import assert from "node:assert/strict";
import { parseAddress } from "./address.ts";

Deno.test("address: listener forms", () => {
  assert.deepEqual(parseAddress(":8080", false), { ok: true, value: { hostname: "", port: 8080 } });
  assert.deepEqual(parseAddress("0.0.0.0:8080", false), {
    ok: true,
    value: { hostname: "0.0.0.0", port: 8080 },
  });
  assert.deepEqual(parseAddress("[::1]:8080", false), { ok: true, value: { hostname: "::1", port: 8080 } });
  assert.deepEqual(parseAddress("localhost:8080", false), {
    ok: true,
    value: { hostname: "localhost", port: 8080 },
  });
});

Deno.test("address: rejects malformed addresses", () => {
  for (
    const bad of ["8080", "::1:8080", "host:", "host:http", "host:70000", ":0", "[::1:8080", "bad host:80"]
  ) {
    assert.equal(parseAddress(bad, false).ok, false, bad);
  }
  assert.equal(parseAddress(":8080", true).ok, false);
  assert.equal(parseAddress("http://api:8080", true).ok, false);
});
