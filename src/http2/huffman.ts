/**
 * The HPACK static Huffman code (RFC 7541 Appendix B).
 *
 * Strings are byte strings: one char per byte, char codes 0-255 (latin1). The
 * decoder is a byte-at-a-time state machine built once at module load: each
 * state is an internal node of the code tree (256 of them), and each input byte
 * moves to another node, emitting at most two symbols because the shortest code
 * is 5 bits. That is one table load per input byte and no allocation besides the
 * result string. The table is built from a 4-bit one (the nghttp2 approach);
 * the 8-bit table costs 256 KiB but decodes about 40% faster.
 */
import { Buffer } from "node:buffer";
import { HpackError } from "./hpack.ts";

/** Code of each symbol, right-aligned; symbol 256 is EOS. */
// deno-fmt-ignore
const CODES = new Uint32Array([
  0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7,
  0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec,
  0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3,
  0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb,
  0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa,
  0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
  0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
  0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc,
  0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62,
  0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
  0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72,
  0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22,
  0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26,
  0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7,
  0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78,
  0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc,
  0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9,
  0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
  0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
  0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef,
  0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde,
  0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec,
  0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef,
  0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1,
  0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec,
  0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed,
  0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2,
  0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5,
  0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
  0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4,
  0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea,
  0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
  0x3fffffff,
]);

/** Code length in bits of each symbol; symbol 256 is EOS. */
// deno-fmt-ignore
const LENS = new Uint8Array([
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
]);

// Decoder state machine. Entry for (state, byte) = next state (bits 0-7) | first
// symbol (bits 8-15) | second symbol (bits 16-23) | symbol count (bits 24-25) |
// FAIL. FAIL means the byte completed EOS, which RFC 7541 §5.2 makes an error.
const FAIL = 1 << 26;
const DECODE = new Int32Array(256 * 256);
/** 1 for states where the input may end: the bits since the last symbol are at most 7 ones (EOS padding). */
const ACCEPT = new Uint8Array(256);

(function buildDecoder() {
  // Tree of internal nodes: child >= 0 is an internal node, child < 0 is leaf -(symbol + 1).
  const child: number[] = [0, 0];
  let nodes = 1;
  for (let sym = 0; sym <= 256; sym++) {
    let node = 0;
    for (let bit = LENS[sym] - 1; bit >= 0; bit--) {
      const slot = node * 2 + ((CODES[sym] >>> bit) & 1);
      if (bit === 0) {
        if (child[slot] !== 0) throw new Error("huffman table: code collision");
        child[slot] = -(sym + 1);
      } else {
        if (child[slot] < 0) throw new Error("huffman table: code collision");
        if (child[slot] === 0) {
          child[slot] = nodes++;
          child.push(0, 0);
        }
        node = child[slot];
      }
    }
  }
  // A complete prefix code over 257 symbols has exactly 256 internal nodes and no empty slot.
  if (nodes !== 256 || child.includes(0)) throw new Error("huffman table: code is not complete");
  // Nodes reachable from the root by 1 bits only, depth <= 7: valid end-of-string padding.
  ACCEPT[0] = 1;
  for (let node = 0, depth = 0; depth < 7; depth++) {
    node = child[node * 2 + 1];
    ACCEPT[node] = 1;
  }
  // 4-bit steps: next node | symbol << 8 | NIBBLE_EMIT | FAIL (at most one symbol per nibble).
  const NIBBLE_EMIT = 1 << 16;
  const nibbles = new Int32Array(256 * 16);
  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let bit = 3; bit >= 0; bit--) {
        const next = child[node * 2 + ((nibble >>> bit) & 1)];
        if (next >= 0) {
          node = next;
          continue;
        }
        const sym = -next - 1;
        if (sym === 256) entry |= FAIL;
        else entry |= NIBBLE_EMIT | (sym << 8);
        node = 0;
      }
      nibbles[state * 16 + nibble] = entry | node;
    }
  }
  // Byte steps: two nibble steps, their symbols packed in order.
  for (let state = 0; state < 256; state++) {
    for (let b = 0; b < 256; b++) {
      const hi = nibbles[state * 16 + (b >>> 4)];
      const lo = nibbles[(hi & 0xff) * 16 + (b & 15)];
      let n = 0;
      let syms = 0;
      if ((hi & NIBBLE_EMIT) !== 0) syms |= ((hi >>> 8) & 0xff) << (8 + 8 * n++);
      if ((lo & NIBBLE_EMIT) !== 0) syms |= ((lo >>> 8) & 0xff) << (8 + 8 * n++);
      DECODE[state * 256 + b] = (lo & 0xff) | syms | (n << 24) | ((hi | lo) & FAIL);
    }
  }
})();

/**
 * Number of bytes `s` takes Huffman-encoded (with padding).
 * Throws a TypeError for a char code above 255: header strings here are byte strings.
 */
export function huffmanEncodedLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 255) throw new TypeError("header string has a char code above 255");
    bits += LENS[c];
  }
  return (bits + 7) >>> 3;
}

/**
 * Huffman-encodes `s` into `out` at `pos` and returns the end position. The caller
 * provides room for `huffmanEncodedLength(s)` bytes (which also validated `s`).
 */
export function huffmanEncodeInto(s: string, out: Uint8Array, pos: number): number {
  // `acc` holds `n` < 8 pending bits; a code longer than 24 bits is added in two
  // steps so the accumulator never needs more than 32 bits.
  let acc = 0;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) & 0xff;
    let code = CODES[c];
    let len = LENS[c];
    if (len > 24) {
      const hi = len - 16;
      acc = (acc << hi) | (code >>> 16);
      n += hi;
      while (n >= 8) out[pos++] = acc >>> (n -= 8);
      code &= 0xffff;
      len = 16;
    }
    acc = (acc << len) | code;
    n += len;
    while (n >= 8) out[pos++] = acc >>> (n -= 8);
  }
  // Pad with the high bits of EOS (all ones).
  if (n > 0) out[pos++] = (acc << (8 - n)) | (0xff >>> n);
  return pos;
}

/** Huffman-encodes a byte string. */
export function huffmanEncode(s: string): Uint8Array {
  const out = new Uint8Array(huffmanEncodedLength(s));
  huffmanEncodeInto(s, out, 0);
  return out;
}

// Decoded bytes go to a reused scratch buffer and become a string in one native
// latin1 conversion (exact latin1, unlike TextDecoder("latin1") which is windows-1252).
let scratch = Buffer.allocUnsafe(1024);
const SHORT_STRING = 12;

/**
 * Decodes the Huffman-coded bytes `src[start..end)` to a byte string. Throws
 * HpackError for an EOS symbol, padding longer than 7 bits or padding that is not all ones.
 */
export function huffmanDecodeRange(src: Uint8Array, start: number, end: number): string {
  // Every symbol takes at least 5 bits.
  const max = (((end - start) * 8) / 5) | 0;
  if (max > scratch.length) scratch = Buffer.allocUnsafe(Math.max(max, scratch.length * 2));
  const out = scratch;
  let o = 0;
  let state = 0;
  for (let i = start; i < end; i++) {
    const e = DECODE[(state << 8) | src[i]];
    const n = (e >>> 24) & 3;
    if (n !== 0) {
      out[o++] = e >>> 8;
      if (n === 2) out[o++] = e >>> 16;
    }
    if ((e & FAIL) !== 0) throw new HpackError("huffman: EOS symbol in string");
    state = e & 0xff;
  }
  if (ACCEPT[state] === 0) throw new HpackError("huffman: invalid padding");
  if (o > SHORT_STRING) return out.toString("latin1", 0, o);
  // Short strings: a char loop beats the native conversion's call overhead, and
  // V8 keeps strings this short flat.
  let r = "";
  for (let i = 0; i < o; i++) r += String.fromCharCode(out[i]);
  return r;
}

/** Decodes a Huffman-coded byte string. Throws HpackError on EOS or invalid padding. */
export function huffmanDecode(b: Uint8Array): string {
  return huffmanDecodeRange(b, 0, b.length);
}
