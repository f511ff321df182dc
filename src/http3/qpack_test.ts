import assert from "node:assert/strict";
import { decodeFieldSection, encodeFieldSection, STATIC_TABLE } from "./qpack.ts";
import { H3Error, H3ProtocolError } from "./frame.ts";

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, "").match(/../g)!.map((b) => parseInt(b, 16)));
const failed = (e: unknown) => e instanceof H3ProtocolError && e.code === H3Error.QPACK_DECOMPRESSION_FAILED;

Deno.test("qpack: static table matches RFC 9204 Appendix A at sample indices", () => {
  assert.equal(STATIC_TABLE.length, 99);
  assert.deepEqual(STATIC_TABLE[0], [":authority", ""]);
  assert.deepEqual(STATIC_TABLE[17], [":method", "GET"]);
  assert.deepEqual(STATIC_TABLE[23], [":scheme", "https"]);
  assert.deepEqual(STATIC_TABLE[25], [":status", "200"]);
  assert.deepEqual(STATIC_TABLE[63], [":status", "100"]);
  assert.deepEqual(STATIC_TABLE[71], [":status", "500"]);
  assert.deepEqual(STATIC_TABLE[98], ["x-frame-options", "sameorigin"]);
});

Deno.test("qpack: RFC 9204 B.1 literal field line with static name reference", () => {
  const wire = hex("0000 510b 2f69 6e64 6578 2e68 746d 6c");
  assert.deepEqual(decodeFieldSection(wire), { fields: [":path", "/index.html"], oversized: false });
  assert.deepEqual(encodeFieldSection([":path", "/index.html"], { huffman: false }), wire);
});

Deno.test("qpack: indexed static lines, literal names and Huffman strings decode", () => {
  // :method GET (17), :scheme https (23), :path / (1) as indexed lines; :authority with a Huffman value
  // (RFC 7541 C.4.1's "www.example.com"); then a literal name "x-a" with the raw value "b".
  const wire = hex("0000 d1 d7 c1 508c f1e3c2e5f23a6ba0ab90f4ff 23 782d61 01 62");
  assert.deepEqual(decodeFieldSection(wire).fields, [
    ":method",
    "GET",
    ":scheme",
    "https",
    ":path",
    "/",
    ":authority",
    "www.example.com",
    "x-a",
    "b",
  ]);
});

Deno.test("qpack: encode/decode round-trip, with and without Huffman", () => {
  const fields = [
    ":status",
    "200",
    ":status",
    "201",
    "content-type",
    "application/json",
    "content-type",
    "application/x-custom",
    "x-loom-long-header-name-beyond-the-prefix",
    "v".repeat(300),
    "x-empty",
    "",
    "x-latin1",
    "caf\xe9",
  ];
  for (const huffman of [true, false]) {
    const b = encodeFieldSection(fields, { huffman });
    assert.deepEqual(decodeFieldSection(b).fields, fields);
  }
  // Exact pairs are one byte each: prefix (2) + :status 200 (1) + content-type application/json (1).
  assert.equal(encodeFieldSection([":status", "200", "content-type", "application/json"]).length, 4);
});

Deno.test("qpack: dynamic table references are QPACK_DECOMPRESSION_FAILED", () => {
  assert.throws(() => decodeFieldSection(hex("0200 80")), failed); // Required Insert Count != 0
  assert.throws(() => decodeFieldSection(hex("0000 80")), failed); // indexed, T=0
  assert.throws(() => decodeFieldSection(hex("0000 10")), failed); // indexed post-base
  assert.throws(() => decodeFieldSection(hex("0000 4001 61")), failed); // literal, dynamic name
  assert.throws(() => decodeFieldSection(hex("0000 0001 61")), failed); // literal, post-base name
});

Deno.test("qpack: malformed sections are QPACK_DECOMPRESSION_FAILED", () => {
  assert.throws(() => decodeFieldSection(hex("00")), failed); // no Delta Base
  assert.throws(() => decodeFieldSection(hex("0000 ff3f")), failed); // static index 126
  assert.throws(() => decodeFieldSection(hex("0000 5105 2f")), failed); // value cut short
  assert.throws(() => decodeFieldSection(hex("0000 5181 ff")), failed); // Huffman with bad padding (EOS bits)
  assert.throws(() => decodeFieldSection(hex("0000 ff")), failed); // integer cut short
});

Deno.test("qpack: maxSize stops decoding and flags the section oversized", () => {
  const b = encodeFieldSection(["x-big", "a".repeat(1000), "x-next", "1"]);
  assert.equal(decodeFieldSection(b, { maxSize: 500 }).oversized, true);
  assert.equal(decodeFieldSection(b, { maxSize: 2000 }).oversized, false);
});
