import assert from "node:assert/strict";
import { encodeVarint, readVarint, varintLength } from "./varint.ts";

const hex = (s: string) => Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));

Deno.test("varint: RFC 9000 A.1 examples decode", () => {
  assert.deepEqual(readVarint(hex("9d7f3e7d"), 0), { value: 494878333, next: 4 });
  assert.deepEqual(readVarint(hex("7bbd"), 0), { value: 15293, next: 2 });
  assert.deepEqual(readVarint(hex("25"), 0), { value: 37, next: 1 });
  // Not the shortest encoding, still valid.
  assert.deepEqual(readVarint(hex("4025"), 0), { value: 37, next: 2 });
  // 0xc2197c5eff14e88c = 151288809941952652 > 2^53: read rounded, as documented.
  assert.equal(readVarint(hex("c2197c5eff14e88c"), 0)!.next, 8);
});

Deno.test("varint: encodes the shortest form and round-trips at every boundary", () => {
  assert.deepEqual(encodeVarint(37), hex("25"));
  assert.deepEqual(encodeVarint(15293), hex("7bbd"));
  assert.deepEqual(encodeVarint(494878333), hex("9d7f3e7d"));
  for (
    const v of [
      0,
      63,
      64,
      16383,
      16384,
      1073741823,
      1073741824,
      2 ** 32,
      2 ** 40 + 5,
      Number.MAX_SAFE_INTEGER,
    ]
  ) {
    const b = encodeVarint(v);
    assert.equal(b.length, varintLength(v));
    assert.deepEqual(readVarint(b, 0), { value: v, next: b.length }, `value ${v}`);
  }
  assert.throws(() => encodeVarint(-1), RangeError);
  assert.throws(() => encodeVarint(1.5), RangeError);
});

Deno.test("varint: truncated input asks for more bytes", () => {
  assert.equal(readVarint(new Uint8Array(0), 0), null);
  assert.equal(readVarint(hex("9d7f3e"), 0), null);
  assert.deepEqual(readVarint(hex("ff25"), 1), { value: 37, next: 2 });
});
