import assert from "node:assert/strict";
import { parseSize } from "./size.ts";

const bytes = (s: string | number) => {
  const r = parseSize(s);
  assert.ok(r.ok, `expected ${s} to parse`);
  return r.bytes;
};

Deno.test("size: units are 1024-based and case-insensitive", () => {
  assert.equal(bytes("1024B"), 1024);
  assert.equal(bytes("512KB"), 512 * 1024);
  assert.equal(bytes("16MB"), 16 * 1024 * 1024);
  assert.equal(bytes("1GB"), 1024 ** 3);
  assert.equal(bytes("64KiB"), 65536);
  assert.equal(bytes("2MiB"), 2 * 1024 ** 2);
  assert.equal(bytes("1GiB"), 1024 ** 3);
  assert.equal(bytes("16mb"), 16 * 1024 * 1024);
  assert.equal(bytes("8 kb"), 8192);
});

Deno.test("size: bare integers are bytes", () => {
  assert.equal(bytes(4096), 4096);
  assert.equal(bytes("4096"), 4096);
  assert.equal(bytes(0), 0);
});

Deno.test("size: invalid sizes", () => {
  for (const bad of ["", "MB", "1.5MB", "-1KB", "10TB", "ten", 1.5, -3]) {
    const r = parseSize(bad);
    assert.ok(!r.ok, `expected ${bad} to fail`);
  }
});
