import assert from "node:assert/strict";
import wabtInit from "wabt";
import { decodePairs, encodePairs, pairsView } from "./header_maps.ts";
import { PluginVM, type SharedStores } from "./vm.ts";
import { detectAbi, LogLevel } from "./abi.ts";
import { getLogLevel, setLogLevel } from "../observability/logger.ts";

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

Deno.test("proxy_get_log_level reports Loom's level; proxy_log below it is dropped undecoded", async () => {
  const wabt = await wabtInit();
  const m = wabt.parseWat(
    "level.wat",
    `(module
      (import "env" "proxy_get_log_level" (func $level (param i32) (result i32)))
      (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "malloc") (param i32) (result i32) (i32.const 1024))
      (func (export "level") (result i32) (drop (call $level (i32.const 8))) (i32.load (i32.const 8)))
      ;; A debug message pointing far outside memory: only decoding it would trap.
      (func (export "debug_oob") (result i32) (call $log (i32.const 1) (i32.const 0x7ffffff0) (i32.const 8))))`,
  );
  const module = new WebAssembly.Module(new Uint8Array(m.toBinary({}).buffer));
  m.destroy();
  const host = {
    pluginName: "t",
    rootId: "",
    vmId: "",
    vmConfig: new Uint8Array(0),
    pluginConfig: new Uint8Array(0),
    timeout: 50,
    property: () => undefined,
    tickPeriod: () => {},
    httpCall: () => null,
    shared: {} as SharedStores,
  };
  const vm = new PluginVM(module, "0.2.1", host);
  const ex = vm.instance.exports as Record<string, () => number>;
  const prev = getLogLevel();
  try {
    setLogLevel("info");
    assert.equal(ex.level(), LogLevel.INFO);
    assert.equal(ex.debug_oob(), 0);
    setLogLevel("debug");
    assert.equal(ex.level(), LogLevel.DEBUG);
    setLogLevel("error");
    assert.equal(ex.level(), LogLevel.ERROR);
  } finally {
    setLogLevel(prev);
  }
});
