/**
 * QUIC variable-length integers (RFC 9000 §16): the two top bits of the first
 * byte give the length (1, 2, 4 or 8 bytes), the rest is the value, big-endian.
 * Values are JS numbers: HTTP/3 never needs more than 2^53 (stream ids, lengths,
 * setting values), and frame types above that are unknown types to skip anyway.
 */

/** The largest value a varint can carry that a JS number still holds exactly. */
export const MAX_VARINT = Number.MAX_SAFE_INTEGER;

/** Bytes needed to encode `v`. */
export function varintLength(v: number): 1 | 2 | 4 | 8 {
  if (v < 0x40) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x40000000) return 4;
  return 8;
}

/** Writes `v` at `pos` in `out`; returns the position after it. */
export function writeVarint(out: Uint8Array, pos: number, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > MAX_VARINT) throw new RangeError(`varint out of range: ${v}`);
  const n = varintLength(v);
  if (n === 1) {
    out[pos] = v;
  } else if (n === 2) {
    out[pos] = 0x40 | (v >>> 8);
    out[pos + 1] = v & 0xff;
  } else if (n === 4) {
    out[pos] = 0x80 | (v >>> 24);
    out[pos + 1] = (v >>> 16) & 0xff;
    out[pos + 2] = (v >>> 8) & 0xff;
    out[pos + 3] = v & 0xff;
  } else {
    // Split in two 32-bit halves: bit operators truncate to 32 bits.
    const hi = Math.floor(v / 0x100000000);
    const lo = v >>> 0;
    out[pos] = 0xc0 | (hi >>> 24);
    out[pos + 1] = (hi >>> 16) & 0xff;
    out[pos + 2] = (hi >>> 8) & 0xff;
    out[pos + 3] = hi & 0xff;
    out[pos + 4] = lo >>> 24;
    out[pos + 5] = (lo >>> 16) & 0xff;
    out[pos + 6] = (lo >>> 8) & 0xff;
    out[pos + 7] = lo & 0xff;
  }
  return pos + n;
}

/** `v` as its own byte array. */
export function encodeVarint(v: number): Uint8Array {
  const out = new Uint8Array(varintLength(v));
  writeVarint(out, 0, v);
  return out;
}

/**
 * Reads a varint at `pos`: its value and the position after it, or null when
 * `buf` ends first (more bytes needed). 62-bit values beyond 2^53 come back
 * rounded (see the module comment).
 */
export function readVarint(buf: Uint8Array, pos: number): { value: number; next: number } | null {
  if (pos >= buf.length) return null;
  const first = buf[pos];
  const n = 1 << (first >> 6);
  if (pos + n > buf.length) return null;
  let v = first & 0x3f;
  for (let i = 1; i < n; i++) v = v * 256 + buf[pos + i];
  return { value: v, next: pos + n };
}
