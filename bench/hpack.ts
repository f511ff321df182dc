/**
 * HPACK micro-benchmark: ns per encode and decode of a typical 10-field request
 * header block, on warm tables (the steady state of a long-lived connection,
 * where most fields are one-byte table references) and on fresh tables (the
 * first request of a connection, all literals).
 *
 *   deno run bench/hpack.ts
 */
import { HpackDecoder, HpackEncoder } from "../src/http2/hpack.ts";
import { huffmanDecode, huffmanEncode, huffmanEncodeInto } from "../src/http2/huffman.ts";

const ITERATIONS = 200_000;

/** A browser-like request; :path and x-request-id change per request, as they do in real traffic. */
function request(i: number): string[] {
  return [
    ":method",
    "GET",
    ":scheme",
    "https",
    ":authority",
    "api.example.com",
    ":path",
    `/v1/users/${i % 1000}/orders?limit=20`,
    "user-agent",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "accept",
    "application/json",
    "accept-encoding",
    "gzip, deflate, br",
    "accept-language",
    "en-US,en;q=0.9",
    "cookie",
    "session=3f9a0c2e7b1d4e6f8a9b0c1d2e3f4a5b; theme=dark",
    "x-request-id",
    `7d3c${(i * 2654435761 >>> 0).toString(16).padStart(8, "0")}-9a1b-4c2d`,
  ];
}

/** Runs `fn` ITERATIONS times after a warm-up and returns ns per call. */
function time(fn: (i: number) => number): number {
  let sink = 0;
  for (let i = 0; i < ITERATIONS / 4; i++) sink += fn(i);
  const t = performance.now();
  for (let i = 0; i < ITERATIONS; i++) sink += fn(i);
  const ns = ((performance.now() - t) * 1e6) / ITERATIONS;
  if (sink === -1) console.log(sink); // keeps the work observable
  return ns;
}

const inputs = Array.from({ length: 1024 }, (_, i) => request(i));

// Warm tables: one encoder, one decoder, fed in order as a connection would be.
const encWarm = new HpackEncoder(), decWarm = new HpackDecoder();
const encodeWarm = time((i) => encWarm.encode(inputs[i & 1023]).length);
// The decoder must see blocks in the order one encoder produced them: replay a recorded stream.
const stream: Uint8Array[] = [];
{
  const e = new HpackEncoder();
  for (let i = 0; i < ITERATIONS * 1.25 + 1; i++) stream.push(e.encode(inputs[i & 1023]));
}
let k = 0;
const decodeWarm = time(() => decWarm.decode(stream[k++]).length);

const coldBlock = new HpackEncoder().encode(inputs[0]);
const encodeCold = time((i) => new HpackEncoder().encode(inputs[i & 1023]).length);
const decodeCold = time(() => new HpackDecoder().decode(coldBlock).length);

const ua = inputs[0][9];
const uaHuff = huffmanEncode(ua);
const huffOut = new Uint8Array(256);
// Into a reused buffer, as the encoder does: huffmanEncode() would add an ArrayBuffer allocation (~1 µs).
const huffEnc = time(() => huffmanEncodeInto(ua, huffOut, 0));
const huffDec = time(() => huffmanDecode(uaHuff).length);

console.log(`HPACK, 10-field request block (${ITERATIONS} iterations, deno ${Deno.version.deno})`);
console.log(
  `  warm tables:  encode ${encodeWarm.toFixed(0)} ns  decode ${decodeWarm.toFixed(0)} ns  (block ${
    stream[5000].length
  } bytes)`,
);
console.log(
  `  fresh tables: encode ${encodeCold.toFixed(0)} ns  decode ${
    decodeCold.toFixed(0)
  } ns  (block ${coldBlock.length} bytes)`,
);
console.log(
  `  huffman, ${ua.length}-byte user-agent: encode ${huffEnc.toFixed(0)} ns  decode ${huffDec.toFixed(0)} ns`,
);
