/**
 * QPACK (RFC 9204) with the static table only. Loom advertises
 * SETTINGS_QPACK_MAX_TABLE_CAPACITY = 0 and QPACK_BLOCKED_STREAMS = 0, so a
 * peer may never insert into or reference a dynamic table: encoder and decoder
 * streams carry nothing, and a field section that references dynamic entries
 * is QPACK_DECOMPRESSION_FAILED. Field names and values are byte strings
 * (latin1), as in src/http2/hpack.ts, whose Huffman code QPACK shares.
 */
import { huffmanDecodeRange, huffmanEncodedLength, huffmanEncodeInto } from "../http2/huffman.ts";
import { H3Error, H3ProtocolError } from "./frame.ts";

/** RFC 9204 Appendix A: the 99 static table entries, by index. */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""],
  [":path", "/"],
  ["age", "0"],
  ["content-disposition", ""],
  ["content-length", "0"],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["referer", ""],
  ["set-cookie", ""],
  [":method", "CONNECT"],
  [":method", "DELETE"],
  [":method", "GET"],
  [":method", "HEAD"],
  [":method", "OPTIONS"],
  [":method", "POST"],
  [":method", "PUT"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "103"],
  [":status", "200"],
  [":status", "304"],
  [":status", "404"],
  [":status", "503"],
  ["accept", "*/*"],
  ["accept", "application/dns-message"],
  ["accept-encoding", "gzip, deflate, br"],
  ["accept-ranges", "bytes"],
  ["access-control-allow-headers", "cache-control"],
  ["access-control-allow-headers", "content-type"],
  ["access-control-allow-origin", "*"],
  ["cache-control", "max-age=0"],
  ["cache-control", "max-age=2592000"],
  ["cache-control", "max-age=604800"],
  ["cache-control", "no-cache"],
  ["cache-control", "no-store"],
  ["cache-control", "public, max-age=31536000"],
  ["content-encoding", "br"],
  ["content-encoding", "gzip"],
  ["content-type", "application/dns-message"],
  ["content-type", "application/javascript"],
  ["content-type", "application/json"],
  ["content-type", "application/x-www-form-urlencoded"],
  ["content-type", "image/gif"],
  ["content-type", "image/jpeg"],
  ["content-type", "image/png"],
  ["content-type", "text/css"],
  ["content-type", "text/html; charset=utf-8"],
  ["content-type", "text/plain"],
  ["content-type", "text/plain;charset=utf-8"],
  ["range", "bytes=0-"],
  ["strict-transport-security", "max-age=31536000"],
  ["strict-transport-security", "max-age=31536000; includesubdomains"],
  ["strict-transport-security", "max-age=31536000; includesubdomains; preload"],
  ["vary", "accept-encoding"],
  ["vary", "origin"],
  ["x-content-type-options", "nosniff"],
  ["x-xss-protection", "1; mode=block"],
  [":status", "100"],
  [":status", "204"],
  [":status", "206"],
  [":status", "302"],
  [":status", "400"],
  [":status", "403"],
  [":status", "421"],
  [":status", "425"],
  [":status", "500"],
  ["accept-language", ""],
  ["access-control-allow-credentials", "FALSE"],
  ["access-control-allow-credentials", "TRUE"],
  ["access-control-allow-headers", "*"],
  ["access-control-allow-methods", "get"],
  ["access-control-allow-methods", "get, post, options"],
  ["access-control-allow-methods", "options"],
  ["access-control-expose-headers", "content-length"],
  ["access-control-request-headers", "content-type"],
  ["access-control-request-method", "get"],
  ["access-control-request-method", "post"],
  ["alt-svc", "clear"],
  ["authorization", ""],
  ["content-security-policy", "script-src 'none'; object-src 'none'; base-uri 'none'"],
  ["early-data", "1"],
  ["expect-ct", ""],
  ["forwarded", ""],
  ["if-range", ""],
  ["origin", ""],
  ["purpose", "prefetch"],
  ["server", ""],
  ["timing-allow-origin", "*"],
  ["upgrade-insecure-requests", "1"],
  ["user-agent", ""],
  ["x-forwarded-for", ""],
  ["x-frame-options", "deny"],
  ["x-frame-options", "sameorigin"],
];

// Lookups for the encoder: the first index of each name, and of each exact name/value pair.
const NAME_INDEX = new Map<string, number>();
const PAIR_INDEX = new Map<string, number>();
STATIC_TABLE.forEach(([n, v], i) => {
  if (!NAME_INDEX.has(n)) NAME_INDEX.set(n, i);
  PAIR_INDEX.set(n + "\0" + v, i);
});

function fail(message: string): never {
  throw new H3ProtocolError(H3Error.QPACK_DECOMPRESSION_FAILED, message);
}

/** Bytes a prefixed integer (RFC 7541 §5.1) of `v` takes with an `n`-bit prefix. */
function intLength(v: number, n: number): number {
  const max = (1 << n) - 1;
  if (v < max) return 1;
  let len = 2;
  for (v -= max; v >= 128; v = Math.floor(v / 128)) len++;
  return len;
}

/** Writes a prefixed integer; `flags` are the bits above the prefix in the first byte. */
function writeInt(out: Uint8Array, pos: number, v: number, n: number, flags: number): number {
  const max = (1 << n) - 1;
  if (v < max) {
    out[pos++] = flags | v;
    return pos;
  }
  out[pos++] = flags | max;
  for (v -= max; v >= 128; v = Math.floor(v / 128)) out[pos++] = (v % 128) | 0x80;
  out[pos++] = v;
  return pos;
}

/** Reads a prefixed integer with an `n`-bit prefix at `pos`. */
function readInt(b: Uint8Array, pos: number, n: number): { value: number; next: number } {
  if (pos >= b.length) fail("truncated integer");
  const max = (1 << n) - 1;
  let v = b[pos++] & max;
  if (v < max) return { value: v, next: pos };
  let m = 1;
  for (;;) {
    if (pos >= b.length) fail("truncated integer");
    const c = b[pos++];
    v += (c & 0x7f) * m;
    m *= 128;
    if ((c & 0x80) === 0) break;
    // Field sections are small; anything near 2^53 is an attack or garbage.
    if (m > 2 ** 42) fail("integer too large");
  }
  return { value: v, next: pos };
}

/** A string literal's encoded size with an `n`-bit length prefix (Huffman when shorter). */
function strLength(s: string, n: number, huffman: boolean): { len: number; huff: boolean; bytes: number } {
  const h = huffman ? huffmanEncodedLength(s) : s.length;
  const huff = h < s.length;
  const bytes = huff ? h : s.length;
  return { len: intLength(bytes, n) + bytes, huff, bytes };
}

/** Writes a string literal whose H bit is the bit just above the `n`-bit length prefix. */
function writeStr(
  out: Uint8Array,
  pos: number,
  s: string,
  n: number,
  flags: number,
  huffman: boolean,
): number {
  const { huff, bytes } = strLength(s, n, huffman);
  pos = writeInt(out, pos, bytes, n, flags | (huff ? 1 << n : 0));
  if (huff) return huffmanEncodeInto(s, out, pos);
  for (let i = 0; i < s.length; i++) out[pos++] = s.charCodeAt(i) & 0xff;
  return pos;
}

/** Reads a string literal with an `n`-bit length prefix (H bit just above it). */
function readStr(b: Uint8Array, pos: number, n: number): { value: string; next: number } {
  if (pos >= b.length) fail("truncated string");
  const huff = (b[pos] & (1 << n)) !== 0;
  const len = readInt(b, pos, n);
  const end = len.next + len.value;
  if (end > b.length) fail("truncated string");
  if (huff) {
    try {
      return { value: huffmanDecodeRange(b, len.next, end), next: end };
    } catch (e) {
      fail(`bad Huffman string: ${(e as Error).message}`);
    }
  }
  let v = "";
  for (let i = len.next; i < end; i++) v += String.fromCharCode(b[i]);
  return { value: v, next: end };
}

/** Options for encoding a field section. */
export interface EncodeOptions {
  /** Huffman-code literals when that is shorter (default true). */
  huffman?: boolean;
}

/**
 * Encodes a field section (flat [name, value, ...], names already lower-case)
 * with static-table references and literals; never references a dynamic table.
 */
export function encodeFieldSection(fields: readonly string[], opts: EncodeOptions = {}): Uint8Array {
  const huffman = opts.huffman ?? true;
  // Plan first (sizes), then write into one exact buffer.
  let size = 2; // Required Insert Count = 0, Delta Base = 0
  const plan: number[] = []; // per field: static index (of the pair or the name), -1 for a literal name
  const exact: boolean[] = []; // per field: the index is the whole pair
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i], value = fields[i + 1];
    const pair = PAIR_INDEX.get(name + "\0" + value);
    if (pair !== undefined) {
      plan.push(pair);
      exact.push(true);
      size += intLength(pair, 6);
      continue;
    }
    const ni = NAME_INDEX.get(name);
    plan.push(ni ?? -1);
    exact.push(false);
    if (ni !== undefined) size += intLength(ni, 4) + strLength(value, 7, huffman).len;
    else size += strLength(name, 3, huffman).len + strLength(value, 7, huffman).len;
  }
  const out = new Uint8Array(size);
  out[0] = 0;
  out[1] = 0;
  let pos = 2;
  for (let f = 0; f < plan.length; f++) {
    const idx = plan[f];
    const name = fields[2 * f], value = fields[2 * f + 1];
    if (exact[f]) {
      // Indexed field line, static (1 T=1 index:6).
      pos = writeInt(out, pos, idx, 6, 0xc0);
    } else if (idx >= 0) {
      // Literal with name reference, N=0, static (0 1 N T=1 index:4).
      pos = writeInt(out, pos, idx, 4, 0x50);
      pos = writeStr(out, pos, value, 7, 0, huffman);
    } else {
      // Literal with literal name, N=0 (0 0 1 N H namelen:3).
      pos = writeStr(out, pos, name, 3, 0x20, huffman);
      pos = writeStr(out, pos, value, 7, 0, huffman);
    }
  }
  return out;
}

/** Options for decoding a field section. */
export interface DecodeOptions {
  /**
   * RFC 9114 §4.2.2 size limit (sum of name + value + 32 per field). Beyond it
   * decoding stops and `oversized` is set, so the caller can answer 431.
   */
  maxSize?: number;
}

/** A decoded field section. */
export interface FieldSection {
  /** Flat [name, value, ...] in wire order. */
  fields: string[];
  /** The section exceeded `maxSize` (fields is then incomplete). */
  oversized: boolean;
}

/**
 * Decodes a field section that may use the static table and literals only.
 * Dynamic references, a nonzero Required Insert Count or malformed input are
 * QPACK_DECOMPRESSION_FAILED (an H3ProtocolError).
 */
export function decodeFieldSection(b: Uint8Array, opts: DecodeOptions = {}): FieldSection {
  const max = opts.maxSize ?? Infinity;
  const ric = readInt(b, 0, 8);
  // With a table capacity of 0 the only valid encoded Required Insert Count is 0 (RFC 9204 §4.5.1.1).
  if (ric.value !== 0) fail("field section references the dynamic table");
  const base = readInt(b, ric.next, 7); // Delta Base: meaningless without a dynamic table
  let pos = base.next;
  const fields: string[] = [];
  let size = 0;
  while (pos < b.length) {
    const c = b[pos];
    let name: string, value: string;
    if ((c & 0x80) !== 0) {
      // Indexed field line.
      if ((c & 0x40) === 0) fail("indexed field line references the dynamic table");
      const i = readInt(b, pos, 6);
      const e = STATIC_TABLE[i.value];
      if (e === undefined) fail(`static index ${i.value} out of range`);
      [name, value] = e;
      pos = i.next;
    } else if ((c & 0x40) !== 0) {
      // Literal with name reference.
      if ((c & 0x10) === 0) fail("literal references a dynamic table name");
      const i = readInt(b, pos, 4);
      const e = STATIC_TABLE[i.value];
      if (e === undefined) fail(`static index ${i.value} out of range`);
      name = e[0];
      const v = readStr(b, i.next, 7);
      value = v.value;
      pos = v.next;
    } else if ((c & 0x20) !== 0) {
      // Literal with literal name.
      const n = readStr(b, pos, 3);
      const v = readStr(b, n.next, 7);
      name = n.value;
      value = v.value;
      pos = v.next;
    } else {
      // 0001xxxx indexed post-base, 0000xxxx literal with post-base name: both dynamic.
      fail("post-base reference to the dynamic table");
    }
    size += name.length + value.length + 32;
    if (size > max) return { fields, oversized: true };
    fields.push(name, value);
  }
  return { fields, oversized: false };
}
