import assert from "node:assert/strict";
import { ADDR_KEY_SIZE, addrKey, formatSockKey, reverseKey, SOCK_KEY_SIZE, sockKey } from "./keys.ts";

Deno.test("ebpf keys: a socket key is local then remote, IPv4 mapped, ports little-endian", () => {
  const k = sockKey({ hostname: "127.0.0.1", port: 8080 }, { hostname: "127.0.0.2", port: 40000 })!;
  assert.equal(k.length, SOCK_KEY_SIZE);
  assert.deepEqual([...k.subarray(0, 16)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
  assert.deepEqual([...k.subarray(16, 32)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2]);
  assert.deepEqual([...k.subarray(32)], [0x90, 0x1f, 0, 0, 0x40, 0x9c, 0, 0]);
  assert.equal(formatSockKey(k), "127.0.0.1:8080 > 127.0.0.2:40000");
});

Deno.test("ebpf keys: a dual-stack socket's mapped address keys like the IPv4 socket", () => {
  const v4 = sockKey({ hostname: "127.0.0.1", port: 1 }, { hostname: "127.0.0.1", port: 2 })!;
  const v6 = sockKey({ hostname: "::ffff:127.0.0.1", port: 1 }, { hostname: "[::ffff:127.0.0.1]", port: 2 })!;
  assert.deepEqual(v6, v4);
});

Deno.test("ebpf keys: the peer's key is the reverse", () => {
  const a = sockKey({ hostname: "::1", port: 8080 }, { hostname: "::1", port: 50000 })!;
  const b = sockKey({ hostname: "::1", port: 50000 }, { hostname: "::1", port: 8080 })!;
  assert.deepEqual(reverseKey(a), b);
  assert.equal(formatSockKey(a), "[::1]:8080 > [::1]:50000");
  assert.equal(sockKey({ hostname: "localhost", port: 1 }, { hostname: "::1", port: 2 }), null);
});

Deno.test("ebpf keys: address keys, with the wildcards of each family", () => {
  const any4 = addrKey("0.0.0.0", 80)!;
  assert.equal(any4.length, ADDR_KEY_SIZE);
  assert.deepEqual([...any4.subarray(0, 16)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]);
  assert.deepEqual(addrKey("", 80), any4);
  assert.deepEqual([...addrKey(null, 80)!.subarray(0, 16)], new Array(16).fill(0));
  assert.deepEqual([...addrKey("::", 80)!.subarray(0, 16)], new Array(16).fill(0));
  assert.deepEqual([...addrKey("10.1.2.3", 443)!.subarray(16)], [0xbb, 0x01, 0, 0]);
  assert.equal(addrKey("api.internal", 80), null);
});
