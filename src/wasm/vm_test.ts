import assert from "node:assert/strict";
import { decodePairs, encodePairs, pairsView } from "./vm.ts";
import { detectAbi } from "./abi.ts";

Deno.test("pairs encoding: the reference host's layout, round trip", () => {
  const b = encodePairs([["a", "bc"], [":path", ""]]);
  const dv = new DataView(b.buffer);
  assert.equal(dv.getUint32(0, true), 2);
  assert.deepEqual([
    dv.getUint32(4, true),
    dv.getUint32(8, true),
    dv.getUint32(12, true),
    dv.getUint32(16, true),
  ], [
    1,
    2,
    5,
    0,
  ]);
  assert.equal(new TextDecoder().decode(b.subarray(20)), "a\0bc\0:path\0\0");
  assert.deepEqual(decodePairs(b), [["a", "bc"], [":path", ""]]);
  assert.deepEqual(decodePairs(new Uint8Array(0)), []);
  assert.equal(decodePairs(b.subarray(0, b.length - 2)), null);
  assert.equal(decodePairs(new Uint8Array([9, 0, 0, 0, 0])), null);
  // Up to 4 bytes is an empty map, as in the reference host (the spec allows a single 0x00 byte).
  assert.deepEqual(decodePairs(new Uint8Array([0])), []);
  assert.deepEqual(decodePairs(new Uint8Array([9, 0, 0, 0])), []);
});

Deno.test("pairsView: replace keeps the first position and drops duplicates", () => {
  const list: [string, string][] = [["a", "1"], ["b", "2"], ["a", "3"]];
  const v = pairsView(list);
  v.replace("a", "x");
  assert.deepEqual(list, [["a", "x"], ["b", "2"]]);
  v.add("c", "4");
  v.remove("b");
  assert.deepEqual(v.pairs(), [["a", "x"], ["c", "4"]]);
  assert.equal(v.get("c"), "4");
});

Deno.test("ABI detection from the exported marker", () => {
  assert.equal(detectAbi(["memory", "proxy_abi_version_0_1_0"]), "0.1.0");
  assert.equal(detectAbi(["proxy_abi_version_0_2_0"]), "0.2.0");
  assert.equal(detectAbi(["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"]), "0.2.1");
  assert.equal(detectAbi(["proxy_on_request_headers"]), null);
});
