import assert from "node:assert/strict";
import { coreDecodes, coreRead, decodeAscii } from "./deno_core.ts";

Deno.test("deno core: this Deno has the internals the hot path uses", () => {
  // Deno 2.9.6 (the pinned runtime) has both; losing either would silently slow every request.
  assert.equal(typeof coreRead, "function");
  assert.equal(coreDecodes, true);
});

Deno.test("deno core: decodeAscii gives TextDecoder's string for every ASCII byte", () => {
  const all = new Uint8Array(128).map((_, i) => i);
  assert.equal(decodeAscii(all), new TextDecoder().decode(all));
  const head = new TextEncoder().encode("GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal(decodeAscii(head.subarray(4, 10)), "/a?b=c");
  assert.equal(decodeAscii(new Uint8Array(0)), "");
});
