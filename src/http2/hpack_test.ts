import assert from "node:assert/strict";
import { HpackDecoder, HpackEncoder, HpackError } from "./hpack.ts";
import { huffmanDecode, huffmanEncode, huffmanEncodedLength } from "./huffman.ts";

function hex(s: string): Uint8Array {
  const h = s.replace(/\s+/g, "");
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(i * 2, i * 2 + 2), 16);
  return out;
}

function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Dynamic table internals, reached around `private` to check sizes against the RFC. */
interface TableView {
  table: { size: number; count: number; maxSize: number; name(i: number): string; value(i: number): string };
}

function tableOf(x: HpackEncoder | HpackDecoder): TableView["table"] {
  return (x as unknown as TableView).table;
}

/** Table entries newest first, as RFC 7541 Appendix C prints them. */
function entries(x: HpackEncoder | HpackDecoder): string[][] {
  const t = tableOf(x);
  const out: string[][] = [];
  for (let i = 1; i <= t.count; i++) out.push([t.name(i), t.value(i)]);
  return out;
}

/** Deterministic PRNG (mulberry32) so fuzz failures reproduce. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** RFC 7541 §5.1 integer, for building hand-made blocks. */
function int(first: number, prefixBits: number, v: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (v < max) return [first | v];
  const out = [first | max];
  v -= max;
  while (v >= 128) {
    out.push((v % 128) | 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

function raw(s: string): number[] {
  return [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];
}

function assertHpackError(block: number[] | Uint8Array, pattern: RegExp, d = new HpackDecoder()): void {
  assert.throws(() => d.decode(Uint8Array.from(block)), (e: unknown) => {
    assert.ok(e instanceof HpackError, `expected HpackError, got ${e}`);
    assert.match(e.message, pattern);
    return true;
  });
}

// ---- RFC 7541 Appendix C ----

const GET_HTTP = [":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com"];
const REQUESTS = [
  GET_HTTP,
  [...GET_HTTP, "cache-control", "no-cache"],
  [
    ":method",
    "GET",
    ":scheme",
    "https",
    ":path",
    "/index.html",
    ":authority",
    "www.example.com",
    "custom-key",
    "custom-value",
  ],
];
const REQUEST_TABLES = [
  [[":authority", "www.example.com"]],
  [["cache-control", "no-cache"], [":authority", "www.example.com"]],
  [["custom-key", "custom-value"], ["cache-control", "no-cache"], [":authority", "www.example.com"]],
];
const REQUEST_SIZES = [57, 110, 164];

const DATE1 = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE2 = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOC = "https://www.example.com";
const COOKIE = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
const RESPONSES = [
  [":status", "302", "cache-control", "private", "date", DATE1, "location", LOC],
  [":status", "307", "cache-control", "private", "date", DATE1, "location", LOC],
  [
    ":status",
    "200",
    "cache-control",
    "private",
    "date",
    DATE2,
    "location",
    LOC,
    "content-encoding",
    "gzip",
    "set-cookie",
    COOKIE,
  ],
];
const RESPONSE_TABLES = [
  [["location", LOC], ["date", DATE1], ["cache-control", "private"], [":status", "302"]],
  [[":status", "307"], ["location", LOC], ["date", DATE1], ["cache-control", "private"]],
  [["set-cookie", COOKIE], ["content-encoding", "gzip"], ["date", DATE2]],
];
const RESPONSE_SIZES = [222, 222, 215];

Deno.test("C.2.1 literal with indexing", () => {
  const d = new HpackDecoder();
  const block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
  assert.deepEqual(d.decode(block), ["custom-key", "custom-header"]);
  assert.deepEqual(entries(d), [["custom-key", "custom-header"]]);
  assert.equal(tableOf(d).size, 55);
});

Deno.test("C.2.2 literal without indexing", () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("040c 2f73 616d 706c 652f 7061 7468")), [":path", "/sample/path"]);
  assert.equal(tableOf(d).count, 0);
});

Deno.test("C.2.3 literal never indexed", () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("1008 7061 7373 776f 7264 0673 6563 7265 74")), ["password", "secret"]);
  assert.equal(tableOf(d).count, 0);
});

Deno.test("C.2.4 indexed field", () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("82")), [":method", "GET"]);
  assert.equal(tableOf(d).count, 0);
});

function decodeSequence(
  d: HpackDecoder,
  blocks: string[],
  want: string[][],
  tables: string[][][],
  sizes: number[],
) {
  for (let i = 0; i < blocks.length; i++) {
    assert.deepEqual(d.decode(hex(blocks[i])), want[i], `block ${i + 1}`);
    assert.deepEqual(entries(d), tables[i], `table after block ${i + 1}`);
    assert.equal(tableOf(d).size, sizes[i], `table size after block ${i + 1}`);
  }
}

Deno.test("C.3 request sequence without Huffman", () => {
  decodeSequence(
    new HpackDecoder(),
    [
      "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      "8286 84be 5808 6e6f 2d63 6163 6865",
      "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ],
    REQUESTS,
    REQUEST_TABLES,
    REQUEST_SIZES,
  );
});

const C4 = [
  "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
  "8286 84be 5886 a8eb 1064 9cbf",
  "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
];

Deno.test("C.4 request sequence with Huffman", () => {
  decodeSequence(new HpackDecoder(), C4, REQUESTS, REQUEST_TABLES, REQUEST_SIZES);
});

Deno.test("C.4 encoder produces the RFC bytes and a matching table", () => {
  const e = new HpackEncoder();
  for (let i = 0; i < REQUESTS.length; i++) {
    assert.equal(toHex(e.encode(REQUESTS[i])), C4[i].replace(/\s+/g, ""), `block ${i + 1}`);
    assert.deepEqual(entries(e), REQUEST_TABLES[i]);
    assert.equal(tableOf(e).size, REQUEST_SIZES[i]);
  }
});

Deno.test("C.5 response sequence without Huffman, 256-byte table with evictions", () => {
  decodeSequence(
    new HpackDecoder(256),
    [
      "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a " +
      "3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      "4803 3330 37c1 c0bf",
      "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 " +
      "677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 " +
      "553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
    ],
    RESPONSES,
    RESPONSE_TABLES,
    RESPONSE_SIZES,
  );
});

Deno.test("C.6 response sequence with Huffman, 256-byte table with evictions", () => {
  decodeSequence(
    new HpackDecoder(256),
    [
      "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e " +
      "919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
      "4883 640e ffc1 c0bf",
      "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 " +
      "821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed " +
      "4ee5 b106 3d50 07",
    ],
    RESPONSES,
    RESPONSE_TABLES,
    RESPONSE_SIZES,
  );
});

Deno.test("C.5/C.6 responses round-trip through our encoder with a 256-byte table", () => {
  const e = new HpackEncoder(256), d = new HpackDecoder(256);
  for (let round = 0; round < 3; round++) {
    for (const fields of RESPONSES) {
      assert.deepEqual(d.decode(e.encode(fields)), fields);
      assert.deepEqual(entries(d), entries(e));
      assert.ok(tableOf(e).size <= 256);
    }
  }
});

// ---- Huffman ----

const HUFFMAN_VECTORS: [string, string][] = [
  ["www.example.com", "f1e3c2e5f23a6ba0ab90f4ff"],
  ["no-cache", "a8eb10649cbf"],
  ["custom-key", "25a849e95ba97d7f"],
  ["custom-value", "25a849e95bb8e8b4bf"],
  ["302", "6402"],
  ["private", "aec3771a4b"],
  [DATE1, "d07abe941054d444a8200595040b8166e082a62d1bff"],
  [LOC, "9d29ad171863c78f0b97c8e9ae82ae43d3"],
  ["307", "640eff"],
  ["gzip", "9bd9ab"],
  [COOKIE, "94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"],
  ["", ""],
];

Deno.test("huffman: RFC 7541 Appendix C strings", () => {
  for (const [s, h] of HUFFMAN_VECTORS) {
    assert.equal(toHex(huffmanEncode(s)), h, s);
    assert.equal(huffmanEncodedLength(s), h.length / 2, s);
    assert.equal(huffmanDecode(hex(h)), s, s);
  }
});

Deno.test("huffman: every byte value round-trips, alone and together", () => {
  let all = "";
  for (let c = 0; c < 256; c++) {
    const s = String.fromCharCode(c);
    all += s;
    for (const t of [s, s + s + s, "a" + s, s + "zz"]) {
      const enc = huffmanEncode(t);
      assert.equal(enc.length, huffmanEncodedLength(t));
      assert.equal(huffmanDecode(enc), t, `byte ${c}`);
    }
  }
  assert.equal(huffmanDecode(huffmanEncode(all)), all);
  const rev = all.split("").reverse().join("");
  assert.equal(huffmanDecode(huffmanEncode(rev)), rev);
});

Deno.test("huffman: random strings round-trip", () => {
  const rnd = prng(7);
  for (let n = 0; n < 3000; n++) {
    const len = Math.floor(rnd() * 300);
    // Mix of full-range bytes and printable ASCII, which has the short codes.
    const ascii = rnd() < 0.5;
    let s = "";
    for (let i = 0; i < len; i++) {
      s += String.fromCharCode(ascii ? 32 + Math.floor(rnd() * 95) : Math.floor(rnd() * 256));
    }
    const enc = huffmanEncode(s);
    assert.equal(enc.length, huffmanEncodedLength(s));
    assert.equal(huffmanDecode(enc), s);
  }
});

Deno.test("huffman: invalid input", () => {
  const bad = (b: number[], re: RegExp) =>
    assert.throws(
      () => huffmanDecode(Uint8Array.from(b)),
      (e: unknown) => e instanceof HpackError && re.test(e.message),
    );
  // "a" is 00011: padding must be 111, not 000.
  assert.equal(huffmanDecode(Uint8Array.from([0x1f])), "a");
  bad([0x18], /padding/);
  bad([0x1e], /padding/);
  // 8 or more bits of padding.
  bad([0x1f, 0xff], /padding/);
  bad([0xff], /padding/);
  // EOS (30 ones) in the string.
  bad([0xff, 0xff, 0xff, 0xff], /EOS/);
  bad([0x1f, 0xff, 0xff, 0xff, 0xfc], /EOS/);
  assert.throws(() => huffmanEncodedLength("\u0100"), TypeError);
});

// ---- Decoder errors ----

Deno.test("decoder: index 0 and indexes out of range", () => {
  assertHpackError([0x80], /index 0/);
  assertHpackError([0x40 | 0], /truncated/); // literal with a new name but no name
  assertHpackError([0xbe], /out of range/); // 62 with an empty dynamic table
  assertHpackError(int(0x80, 7, 100000), /out of range/);
  assertHpackError([0x7e, 0x01, 0x61], /out of range/); // literal, name index 62
  assertHpackError([0x0f, 0x2f, 0x01, 0x61], /out of range/); // without indexing, name index 62
  // Index 62 is valid once there is one entry, and 63 is not.
  const d = new HpackDecoder();
  d.decode(Uint8Array.from([0x40, ...raw("a"), ...raw("b")]));
  assert.deepEqual(d.decode(Uint8Array.from([0xbe])), ["a", "b"]);
  assertHpackError([0xbf], /out of range/, d);
});

Deno.test("decoder: truncated input", () => {
  assertHpackError([0xff], /truncated integer/);
  assertHpackError([0xff, 0x80], /truncated integer/);
  assertHpackError([0x40, 0x05, 0x61], /truncated string/);
  assertHpackError([0x40, ...raw("a")], /truncated string/);
  assertHpackError([0x04], /truncated string/);
  assertHpackError([0x44, 0x85, 0x61], /truncated string/);
  assertHpackError([0x40, 0x7f], /truncated integer/);
});

Deno.test("decoder: integer overflow and over-long integers", () => {
  assertHpackError([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f], /overflow/);
  assertHpackError([0xff, 0x80, 0x80, 0x80, 0x80, 0x08], /overflow/); // 127 + 2^31
  assertHpackError([0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], /too long/);
  assertHpackError([0x40, 0x7f, 0xff, 0xff, 0xff, 0xff, 0x7f], /overflow/); // string length
  // Redundant zero continuation bytes within the limit are legal.
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(Uint8Array.from([0x0f, 0x80, 0x80, 0x00, ...raw("x")])), ["accept-charset", "x"]);
  assert.deepEqual(d.decode(Uint8Array.from([0x0f, 0x80, 0x80, 0x80, 0x80, 0x00, ...raw("x")])), [
    "accept-charset",
    "x",
  ]);
  // The largest accepted integer, 2^31 - 1, is then out of range as an index.
  assertHpackError(int(0x80, 7, 0x7fffffff), /out of range/);
});

Deno.test("decoder: bad Huffman in a header block", () => {
  assertHpackError([0x40, 0x81, 0x18, 0x01, 0x62], /padding/);
  assertHpackError([0x40, 0x81, 0x1f, 0x84, 0xff, 0xff, 0xff, 0xff], /EOS/);
  assertHpackError([0x40, 0x81, 0x1f, 0x82, 0x1f, 0xff], /padding/);
});

Deno.test("decoder: dynamic table size updates", () => {
  assertHpackError(int(0x20, 5, 4097), /above the limit/);
  assertHpackError(int(0x20, 5, 257), /above the limit/, new HpackDecoder(256));
  assertHpackError([0x82, 0x20], /after a header field/);
  assertHpackError([0x82, ...int(0x20, 5, 100)], /after a header field/);

  const d = new HpackDecoder();
  d.decode(Uint8Array.from([0x40, ...raw("k1"), ...raw("v1"), 0x40, ...raw("k2"), ...raw("v2")]));
  assert.equal(tableOf(d).count, 2);
  // Two updates at the start (RFC 7541 §4.2: smallest, then final), then a field: all legal.
  assert.deepEqual(d.decode(Uint8Array.from([0x20, ...int(0x20, 5, 4096), 0x82])), [":method", "GET"]);
  assert.equal(tableOf(d).count, 0);
  assert.equal(tableOf(d).maxSize, 4096);
  // Shrinking evicts oldest first: each entry is 36 bytes.
  d.decode(Uint8Array.from([0x40, ...raw("k1"), ...raw("v1"), 0x40, ...raw("k2"), ...raw("v2")]));
  assert.deepEqual(d.decode(Uint8Array.from(int(0x20, 5, 40))), []);
  assert.deepEqual(entries(d), [["k2", "v2"]]);
  // An entry larger than the table empties it and is not added.
  d.decode(Uint8Array.from([0x40, ...raw("a-long-name"), ...raw("a-long-value")]));
  assert.equal(tableOf(d).count, 0);
  assert.equal(tableOf(d).size, 0);
});

// ---- Header list size ----

Deno.test("decoder: oversized header lists keep the table in sync", () => {
  const e = new HpackEncoder(), d = new HpackDecoder();
  const big = ["x-a", "1".repeat(100), "x-b", "2".repeat(100), "x-c", "3".repeat(100)];
  // Each field is 3 + 100 + 32 = 135 bytes.
  const b1 = e.encode(big);
  assert.deepEqual(d.decode(b1, 300), ["x-a", "1".repeat(100), "x-b", "2".repeat(100)]);
  assert.equal(d.oversized, true);
  // All three were indexed anyway, so the next block, which refers to them, decodes.
  const b2 = e.encode(big);
  assert.equal(b2.length, 3);
  assert.deepEqual(d.decode(b2), big);
  assert.equal(d.oversized, false);
  assert.deepEqual(d.decode(b2, 405), big);
  assert.equal(d.oversized, false);
  assert.deepEqual(d.decode(b2, 404), big.slice(0, 4));
  assert.equal(d.oversized, true);
  // An "HPACK bomb" of references to one large entry is cut off, not materialised.
  const bomb = new Uint8Array(10000).fill(0xbe);
  const out = d.decode(bomb, 16384);
  assert.equal(d.oversized, true);
  assert.ok(out.length <= 2 * 122);
  assert.deepEqual(d.decode(new Uint8Array(0), 0), []);
  assert.equal(d.oversized, false);
});

// ---- Encoder ----

Deno.test("encoder: table size updates are signalled at the next block", () => {
  const e = new HpackEncoder(), d = new HpackDecoder();
  d.decode(e.encode(["x-a", "1"]));
  e.setMaxTableSize(0);
  e.setMaxTableSize(100);
  const b = e.encode([":method", "GET"]);
  assert.equal(toHex(b), toHex(Uint8Array.from([0x20, ...int(0x20, 5, 100), 0x82])));
  assert.deepEqual(d.decode(b), [":method", "GET"]);
  assert.equal(tableOf(d).maxSize, 100);
  assert.equal(tableOf(d).count, 0);
  // Only once.
  assert.equal(toHex(e.encode([":method", "GET"])), "82");
  // Growing only: one update, nothing evicted.
  d.decode(e.encode(["x-a", "1"]));
  e.setMaxTableSize(4096);
  const b2 = e.encode(["x-a", "1"]);
  assert.equal(toHex(b2), toHex(Uint8Array.from([...int(0x20, 5, 4096), 0xbe])));
  assert.deepEqual(d.decode(b2), ["x-a", "1"]);
  // A table size of 0 disables indexing entirely.
  e.setMaxTableSize(0);
  const b3 = e.encode(["x-a", "1", "x-a", "1"]);
  assert.deepEqual(d.decode(b3), ["x-a", "1", "x-a", "1"]);
  assert.equal(tableOf(d).count, 0);
});

Deno.test("encoder: sensitive and high-cardinality fields are not indexed", () => {
  const e = new HpackEncoder(), d = new HpackDecoder();
  const fields = [
    "authorization",
    "Bearer abc",
    "cookie",
    "sid=1",
    "set-cookie",
    "a=b",
    ":path",
    "/x",
    "content-length",
    "12",
    "x-request-id",
    "0123456789",
    "date",
    DATE1,
  ];
  const b = e.encode(fields);
  assert.deepEqual(d.decode(b), fields);
  assert.equal(tableOf(e).count, 0);
  assert.equal(tableOf(d).count, 0);
  // authorization (static 23): never indexed with an indexed name, 4-bit prefix.
  assert.deepEqual(Array.from(b.subarray(0, 2)), [0x1f, 23 - 15]);
  // A long cookie is worth indexing; the second time it is one byte.
  const long = ["cookie", "session=" + "q".repeat(40)];
  assert.deepEqual(d.decode(e.encode(long)), long);
  assert.equal(e.encode(long).length, 1);
});

Deno.test("encoder: repeated fields are indexed and entries too large for the table are not", () => {
  const e = new HpackEncoder(), d = new HpackDecoder();
  const fields = [":authority", "api.example.com", "user-agent", "curl/8", "x-custom", "v"];
  const first = e.encode(fields);
  assert.deepEqual(d.decode(first), fields);
  const second = e.encode(fields);
  assert.equal(second.length, 3);
  assert.deepEqual(d.decode(second), fields);
  const huge = ["x-huge", "h".repeat(5000)];
  assert.deepEqual(d.decode(e.encode(huge)), huge);
  assert.equal(tableOf(e).count, 3);
  assert.deepEqual(d.decode(e.encode(fields)), fields);
  assert.throws(() => e.encode(["x", "\u20ac"]), TypeError);
});

Deno.test("hpack: a block that fails to encode leaves encoder and peer decoder in step", () => {
  const e = new HpackEncoder();
  const d = new HpackDecoder();
  const a = ["x-one", "1", "x-two", "2"];
  assert.deepEqual(d.decode(e.encode(a)), a);
  // Indexes x-three before reaching the bad value; the block is never sent.
  assert.throws(() => e.encode(["x-three", "3", "x-bad", "\u20ac"]), TypeError);
  const b = ["x-three", "3", "x-one", "1"];
  assert.deepEqual(d.decode(e.encode(b)), b);
  assert.deepEqual(d.decode(e.encode(b)), b);
});

// ---- Fuzz ----

const NAMES = [
  ":method",
  ":path",
  ":authority",
  ":scheme",
  ":status",
  "accept",
  "accept-encoding",
  "user-agent",
  "cookie",
  "set-cookie",
  "authorization",
  "content-type",
  "content-length",
  "date",
  "etag",
  "x-request-id",
  "grpc-timeout",
  "x-custom-a",
  "x-custom-b",
  "x-custom-c",
];
const VALUES = ["GET", "POST", "/", "/index.html", "200", "404", "gzip, deflate", "", "https", "text/html"];

function randomString(rnd: () => number, max: number): string {
  const len = Math.floor(rnd() * max);
  const binary = rnd() < 0.2;
  let s = "";
  for (let i = 0; i < len; i++) {
    s += String.fromCharCode(binary ? Math.floor(rnd() * 256) : 33 + Math.floor(rnd() * 94));
  }
  return s;
}

Deno.test("fuzz: encoder→decoder round trip over many blocks with table size updates", () => {
  for (const seed of [1, 2, 3, 4]) {
    const rnd = prng(seed);
    const limit = seed === 4 ? 256 : 4096;
    const e = new HpackEncoder(limit), d = new HpackDecoder(limit);
    // A pool of values so fields repeat and hit the dynamic table.
    const pool: string[][] = [];
    for (let i = 0; i < 200; i++) {
      const name = rnd() < 0.7
        ? NAMES[Math.floor(rnd() * NAMES.length)]
        : "x-" + randomString(rnd, 12).toLowerCase();
      const value = rnd() < 0.3
        ? VALUES[Math.floor(rnd() * VALUES.length)]
        : randomString(rnd, rnd() < 0.1 ? 600 : 40);
      pool.push([name, value]);
    }
    for (let block = 0; block < 2000; block++) {
      if (rnd() < 0.03) {
        const updates = 1 + Math.floor(rnd() * 3);
        for (let u = 0; u < updates; u++) e.setMaxTableSize(Math.floor(rnd() * (limit + 1)));
      }
      const fields: string[] = [];
      const n = Math.floor(rnd() * 20);
      for (let i = 0; i < n; i++) {
        const f = rnd() < 0.9 ? pool[Math.floor(rnd() * pool.length)] : [NAMES[0], randomString(rnd, 30)];
        fields.push(f[0], f[1]);
      }
      const enc = e.encode(fields);
      assert.deepEqual(d.decode(enc), fields, `seed ${seed} block ${block}`);
      assert.equal(d.oversized, false);
      assert.equal(tableOf(d).size, tableOf(e).size);
      assert.ok(tableOf(d).size <= tableOf(d).maxSize);
      if (block % 100 === 0) assert.deepEqual(entries(d), entries(e));
    }
  }
});

Deno.test("fuzz: random bytes never crash the decoder with anything but HpackError", () => {
  const rnd = prng(99);
  let ok = 0;
  for (let n = 0; n < 20000; n++) {
    const d = new HpackDecoder();
    const b = new Uint8Array(Math.floor(rnd() * 40));
    for (let i = 0; i < b.length; i++) b[i] = Math.floor(rnd() * 256);
    try {
      const out = d.decode(b);
      assert.equal(out.length % 2, 0);
      ok++;
    } catch (e) {
      assert.ok(e instanceof HpackError, String(e));
    }
  }
  assert.ok(ok > 0);
});
